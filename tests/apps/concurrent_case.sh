#!/usr/bin/env bash
# usage: concurrent_case.sh <second|stale> <attend> <fixture folder> <work folder>
# Two trainings on one run folder. second: while a first run trains, a second one on
# the same folder exits 1 at once with one line naming the folder and the first run's
# process id. stale: after the first run is killed (SIGKILL, its lock file left
# behind), a new run on the folder is not blocked. The fixture folder is
# bad_input_fixtures.sh's.
set -u
mode=$1 attend=$2 T=$3 work=$4
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # attend then keeps its process id
rm -rf "$work"
mkdir -p "$work"
run=$work/run
pid=""
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.err; do echo "--- $f"; cat "$f"; done
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  exit 1
}
train() {  # train <epochs> [options...]; exec: in the background $! is attend's process id
  local epochs=$1
  shift
  exec "$attend" --threads 1 train ram --data "$T/idx" --epochs "$epochs" --batch 4 --val-count 0 --glimpses 2 \
    --glimpse-size 6 --hidden 16 --log-every 1 --run-dir "$run" "$@"
}
train 100000 >"$work/first.out" 2>"$work/first.err" &
pid=$!
for _ in $(seq 600); do
  [ -s "$run/metrics.jsonl" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the first run ended before the second started"
  sleep 0.1
done
[ -s "$run/metrics.jsonl" ] || fail "the first run did not start within 60 s"
case $mode in
  second)
    (train 1) >"$work/second.out" 2>"$work/second.err"
    code=$?
    [ "$code" -eq 1 ] || fail "the second run exited $code, expected 1"
    lines=$(wc -l <"$work/second.err")
    [ "$lines" -eq 1 ] || fail "expected one line on the second run's stderr, got $lines"
    grep -Eq "^attend: error: $run: in use by another run \\(process $pid\\)" "$work/second.err" ||
      fail "the second run's line does not name the folder and process $pid"
    kill -TERM "$pid"
    wait "$pid"
    pid=""
    echo "ok: $(cat "$work/second.err")"
    ;;
  stale)
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
    pid=""
    (train 1 --no-resume) >"$work/third.out" 2>"$work/third.err"
    code=$?
    [ "$code" -eq 0 ] || fail "a run after a killed one exited $code, expected 0"
    grep -q "in use" "$work/third.err" && fail "the killed run's lock blocked the next run"
    echo "ok: a run after a killed one (SIGKILL) trains"
    ;;
  *)
    fail "unknown mode $mode"
    ;;
esac
