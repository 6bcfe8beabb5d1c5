#!/usr/bin/env bash
# usage: data_signal_case.sh <INT|TERM> <attend> <fixture folder> <work folder>
# `attend data` stopped by a signal while it generates or writes: exit 130 with one
# line, no temporary file left in the output folder, no manifest.json (the set is
# incomplete), and every IDX file that is there is complete (it reads back).
set -u
sig=$1 attend=$2 source=$3/idx work=$4  # bad_input_fixtures.sh's 28x28 digits
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # attend then keeps its process id
rm -rf "$work"
mkdir -p "$work"
out=$work/out err=$work/stderr
pid=""
fail() {
  echo "FAIL: $*"
  echo "--- stderr"
  cat "$err"
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$out"
  exit 1
}
# About 25 s of work (two splits of 60,000 scenes of 100x100, fsynced).
"$attend" data cluttered --source "$source" --count 60000 --canvas 100 --sheet 0 --out "$out" \
  >"$work/stdout" 2>"$err" &
pid=$!
for _ in $(seq 300); do
  [ -d "$out" ] && break
  kill -0 "$pid" 2>/dev/null || fail "data ended before the signal"
  sleep 0.1
done
sleep 1.5
kill -0 "$pid" 2>/dev/null || fail "data ended before the signal"
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
lines=$(wc -l <"$err")
[ "$lines" -eq 1 ] || fail "expected one line on stderr, got $lines"
grep -Eq "^attend: interrupted: data: stopped before the data set was complete; .* has no manifest.json" "$err" ||
  fail "unexpected message"
left=$(find "$out" -name '*.tmp*' | wc -l)
[ "$left" -eq 0 ] || fail "$left temporary files left: $(find "$out" -name '*.tmp*')"
[ -e "$out/manifest.json" ] && fail "manifest.json written for an incomplete set"
for f in "$out"/*-ubyte; do
  [ -e "$f" ] || continue
  size=$(stat -c %s "$f")
  case "$f" in
    *images*) want=$((60000 * 100 * 100 + 16)) ;;
    *) want=$((60000 + 8)) ;;
  esac
  [ "$size" -eq "$want" ] || fail "$f is $size bytes, expected a complete $want"
done
echo "ok: SIG$sig -> exit 130, no temporary file, no manifest.json, $(ls "$out" | wc -l) complete files"
rm -rf "$out"
