#!/usr/bin/env bash
# usage: signal_case.sh <INT|TERM> <attend> <fixture folder> <work folder>
# A training stopped by SIGINT (Ctrl-C) or SIGTERM once it has started: attend exits
# 130 with one line saying where it saved, and the checkpoint it names loads and
# evaluates (`attend eval`). The fixture folder is bad_input_fixtures.sh's.
set -u
sig=$1 attend=$2 T=$3 work=$4
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # attend then keeps its process id
rm -rf "$work"
mkdir -p "$work"
err=$work/stderr
pid=""
fail() {
  echo "FAIL: $*"
  echo "--- stderr"
  cat "$err"
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  exit 1
}
# Long enough never to end by itself: 8 steps an epoch, a line of metrics.jsonl each.
"$attend" --threads 1 train ram --data "$T/idx" --epochs 100000 --batch 4 --val-count 0 --glimpses 2 \
  --glimpse-size 6 --hidden 16 --log-every 1 --run-dir "$work/run" >"$work/stdout" 2>"$err" &
pid=$!
for _ in $(seq 600); do
  [ -s "$work/run/metrics.jsonl" ] && break
  kill -0 "$pid" 2>/dev/null || fail "training ended before the signal"
  sleep 0.1
done
[ -s "$work/run/metrics.jsonl" ] || fail "training did not start within 60 s"
kill -"$sig" "$pid"
for _ in $(seq 600); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "still running 60 s after SIG$sig"
wait "$pid"
code=$?
pid=""
[ "$code" -eq 130 ] || fail "exit code $code after SIG$sig, expected 130"
# The progress lines are not attend's messages; exactly one line is, the last.
said=$(grep -c '^attend: ' "$err")
[ "$said" -eq 1 ] || fail "expected one 'attend: ' line on stderr, got $said"
last=$(tail -n 1 "$err")
echo "$last" | grep -Eq '^attend: interrupted: training saved at step [0-9]+ in .*/last[.]pt; run the same command again to resume$' ||
  fail "unexpected last line: $last"
"$attend" eval "$work/run/last.pt" >"$work/eval.out" 2>"$work/eval.err" ||
  fail "the saved last.pt does not evaluate: $(cat "$work/eval.err")"
echo "ok: SIG$sig -> exit 130, '$last', last.pt evaluates"
