#!/usr/bin/env bash
# usage: expect.sh <exit-code> <regex> <command...>
# Runs the command and checks its exit code, and that the regex matches its output
# (stdout for exit 0, stderr otherwise). For a failing command, stderr must be exactly
# one line: attend reports every problem on one line.
set -u
want=$1; regex=$2; shift 2
out=$(mktemp); err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
code=$?
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
[ "$code" -eq "$want" ] || fail "exit code $code, expected $want: $*"
if [ "$want" -eq 0 ]; then src=$out; else src=$err; fi
grep -Eq -- "$regex" "$src" || fail "output does not match /$regex/"
if [ "$want" -ne 0 ]; then
  lines=$(wc -l <"$err")
  [ "$lines" -eq 1 ] || fail "expected one line on stderr, got $lines"
fi
echo "ok: exit $code, /$regex/"
