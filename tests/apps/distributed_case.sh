#!/usr/bin/env bash
# usage: distributed_case.sh <mode> <attend> <fixture folder> <work folder>
# Data-parallel training as users run it: `attend launch` and workers started by hand
# with torchrun's variables, on the tiny IDX data set of bad_input_fixtures.sh.
#   train       launch --nproc 2: trains, rank-prefixed output, only rank 0 writes the
#               run folder (--rank-log gives rank 1 its own log), as many steps as
#               one process takes for the same --batch
#   killed      a worker killed (SIGKILL) mid-epoch: the other exits within seconds
#               naming the lost rank, launch exits 1 naming it, and the same command
#               with one process resumes from the last checkpoint
#   signalled   after a worker was killed, another ends by a signal launch did not send
#               (rank 0 held with SIGSTOP, rank 1 killed, then SIGUSR1 to rank 0): launch
#               names both, the first as the failure
#   nodes       two "machines": two launch --nnodes 2 on loopback with a TCPStore
#   mismatch    two workers started by hand with different --lr: both exit 1 naming
#               the option and the ranks, at start
#   unreachable a worker whose master never comes: exit 1 within the timeout, one line
#   worldsize   two workers with different WORLD_SIZE: both exit 1 naming both sizes
set -u
mode=$1 attend=$2 T=$3 work=$4
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT
rm -rf "$work"
mkdir -p "$work"
run=$work/run
pids=()
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.err "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  exit 1
}
# A port from this process's id, away from the usual ones.
port=$((20000 + $$ % 20000))
train_args() {  # the tiny RAM every case trains
  echo train ram --data "$T/idx" --val-count 8 --batch 6 --glimpses 2 --glimpse-size 6 --hidden 16 --log-every 1 \
    --run-dir "$run"
}
by_hand() {  # by_hand <world size of rank 0> <of rank 1> <options of rank 0> <of rank 1>: two workers
  # started with torchrun's variables, which must both exit 1
  local r
  for r in 0 1; do
    local world=$1 options=$3
    [ $r -eq 1 ] && world=$2 options=$4
    # shellcheck disable=SC2046,SC2086
    RANK=$r WORLD_SIZE=$world MASTER_PORT=$port "$attend" $(train_args) --epochs 1 --dist-timeout 30 $options \
      >"$work/w$r.out" 2>"$work/w$r.err" &
    pids+=($!)
  done
  wait_both 1
}
worker_of_rank() {  # worker_of_rank <launcher pid> <rank>: the pid of launch's worker with that RANK, or ""
  local child
  for child in $(pgrep -P "$1"); do
    tr '\0' '\n' <"/proc/$child/environ" 2>/dev/null | grep -qx "RANK=$2" && echo "$child" && return
  done
}
wait_both() {  # wait_both <exit code>: waits for the two background runs, which must exit with it
  local c0 c1
  wait "${pids[0]}"
  c0=$?
  wait "${pids[1]}"
  c1=$?
  pids=()
  [ "$c0" -eq "$1" ] && [ "$c1" -eq "$1" ] || fail "the two runs exited $c0 and $c1, expected $1 and $1"
}
one_line() {  # one_line <file> <extended regex>
  local lines
  lines=$(wc -l <"$1")
  [ "$lines" -eq 1 ] || fail "expected one line in $1, got $lines"
  grep -Eq "$2" "$1" || fail "$1 does not match: $2"
}

case $mode in
  train)
    "$attend" launch --nproc 2 -- $(train_args) --epochs 2 --rank-log --balance-shards >"$work/l.out" 2>"$work/l.err"
    code=$?
    [ "$code" -eq 0 ] || fail "launch exited $code"
    grep -q '^attend launch: 2 workers (ranks 0..1 of 2)' "$work/l.err" || fail "no launch line"
    grep -q '^\[rank 0\] training ram: 2 epochs of 4 steps' "$work/l.err" || fail "rank 0's progress is not prefixed"
    grep -q '^\[rank 0\] run folder ' "$work/l.out" || fail "rank 0's report is not on stdout"
    grep -q '^\[rank 1\]' "$work/l.err" "$work/l.out" && fail "rank 1 printed (it should stay quiet)"
    for f in last.pt best.pt metrics.jsonl eval.json validation.json rank-1.log; do
      [ -s "$run/$f" ] || fail "the run folder has no $f"
    done
    grep -q "epoch 2/2 done" "$run/rank-1.log" || fail "rank 1's log has no epoch line"
    grep -q "data-parallel over 2 ranks" "$run/rank-1.log" || fail "rank 1's log has no data-parallel line"
    grep -Eq "data-parallel over 2 ranks: .*, [0-9.]+ ms per step on its own part \(data, forward, backward\)" \
      "$run/rank-1.log" || fail "rank 1's data-parallel line does not time its own part"
    # --balance-shards: the ranks' speeds and the split of the last batch (of 6).
    split=$(sed -nE "s/.*ranks' speeds [0-9]+\/[0-9]+ examples\/s, last batch split ([0-9]+)\/([0-9]+)$/\1 \2/p" \
      "$run/rank-1.log")
    [ -n "$split" ] || fail "rank 1's data-parallel line has no speeds and split"
    [ "$(echo "$split" | awk '{ print ($1 >= 1 && $2 >= 1) ? $1 + $2 : 0 }')" -eq 6 ] ||
      fail "the last batch of 6 was split $split"
    # 24 training items, batch 6: 4 steps an epoch, as on one process.
    grep -q '"event":"end".*"step":8' "$run/metrics.jsonl" || fail "the run did not take 8 steps"
    "$attend" eval "$run/last.pt" --data "$T/idx" >"$work/e.out" 2>"$work/e.err" || fail "the checkpoint does not evaluate"
    echo "ok: 2 workers trained 8 steps; rank 0 wrote the run folder, rank 1 its log"
    ;;
  killed)
    "$attend" launch --nproc 2 -- $(train_args) --epochs 100000 --checkpoint-every 1 >"$work/l.out" 2>"$work/l.err" &
    launcher=$!
    pids+=("$launcher")
    for _ in $(seq 600); do
      [ -s "$run/last.pt" ] && break
      kill -0 "$launcher" 2>/dev/null || fail "launch ended before a checkpoint was written"
      sleep 0.1
    done
    [ -s "$run/last.pt" ] || fail "no checkpoint within 60 s"
    rank1=$(worker_of_rank "$launcher" 1)
    [ -n "$rank1" ] || fail "no worker with RANK=1"
    start=$(date +%s)
    kill -KILL "$rank1"
    wait "$launcher"
    code=$?
    took=$(($(date +%s) - start))
    pids=()
    [ "$code" -eq 1 ] || fail "launch exited $code, expected 1"
    [ "$took" -le 30 ] || fail "the others took $took s to stop"
    grep -Eq '^attend launch: rank 1 ended with signal 9' "$work/l.err" || fail "launch does not name rank 1"
    grep -Eq '^\[rank 0\] attend: error: rank 0: lost rank 1 during ' "$work/l.err" || fail "rank 0 does not name rank 1"
    grep -Eq '^attend: error: launch: rank 1 failed with signal 9' "$work/l.err" || fail "no final line naming rank 1"
    step=$(grep -c '"event":"step"' "$run/metrics.jsonl")
    # The same command on one process continues from the checkpoint.
    "$attend" launch --nproc 1 -- $(train_args) --epochs 200 >"$work/r.out" 2>"$work/r.err"
    code=$?
    [ "$code" -eq 0 ] || fail "the resumed run exited $code"
    grep -Eq '^\[rank 0\] training ram: 200 epochs of 4 steps, resumed at epoch' "$work/r.err" ||
      fail "the relaunched run did not resume"
    echo "ok: rank 1 killed after $step steps; launch exited 1 in $took s naming it; resumed on 1 process"
    ;;
  signalled)
    "$attend" launch --nproc 2 -- $(train_args) --epochs 100000 >"$work/l.out" 2>"$work/l.err" &
    launcher=$!
    pids+=("$launcher")
    rank0="" rank1=""
    for _ in $(seq 600); do
      rank0=$(worker_of_rank "$launcher" 0)
      rank1=$(worker_of_rank "$launcher" 1)
      [ -n "$rank0" ] && [ -n "$rank1" ] && grep -q 'step 1/' "$work/l.err" && break
      kill -0 "$launcher" 2>/dev/null || fail "launch ended before training"
      sleep 0.1
    done
    [ -n "$rank0" ] && [ -n "$rank1" ] || fail "no workers with RANK=0 and RANK=1"
    # Rank 0 cannot act on the loss of rank 1 while stopped; the SIGTERM launch sends
    # it waits behind SIGUSR1 (10 < 15: the lower signal is taken first when it is
    # continued), whose default action ends it without a core file.
    kill -STOP "$rank0"
    kill -KILL "$rank1"
    for _ in $(seq 300); do
      grep -q '^attend launch: rank 1 ended with signal 9' "$work/l.err" && break
      sleep 0.1
    done
    kill -USR1 "$rank0"
    kill -CONT "$rank0"
    wait "$launcher"
    code=$?
    pids=()
    [ "$code" -eq 1 ] || fail "launch exited $code, expected 1"
    grep -Eq '^attend launch: rank 1 ended with signal 9 \(Killed\); stopping the other workers$' "$work/l.err" ||
      fail "launch does not name rank 1 as the failure"
    grep -Eq '^attend launch: rank 0 then ended with signal 10 \(User defined signal 1\)$' "$work/l.err" ||
      fail "launch does not name rank 0's signal"
    grep -Eq '^attend: error: launch: rank 1 failed with signal 9' "$work/l.err" || fail "no final line naming rank 1"
    echo "ok: rank 1 killed, then rank 0 ended by SIGUSR1: launch named both and exited 1"
    ;;
  nodes)
    for node in 0 1; do
      "$attend" launch --nproc 1 --nnodes 2 --node-rank $node --master "127.0.0.1:$port" -- $(train_args) --epochs 1 \
        >"$work/n$node.out" 2>"$work/n$node.err" &
      pids+=($!)
    done
    wait_both 0
    grep -q '^attend launch: 1 worker (ranks 1..1 of 2), rendezvous at 127.0.0.1:'"$port" "$work/n1.err" ||
      fail "node 1 did not run rank 1"
    grep -q '^\[rank 0\] training ram: 1 epoch of 4 steps' "$work/n0.err" || fail "node 0 did not train"
    echo "ok: two launches of one worker each trained together through a TCPStore on port $port"
    ;;
  mismatch)
    by_hand 2 2 "--lr 0.001" "--lr 0.002"
    for r in 0 1; do
      one_line "$work/w$r.err" "^attend: error: rank $r: rank 1 runs another model or training than rank 0: run[.]training[.]lr is 0[.]001 on rank 0 but 0[.]002 on rank 1"
    done
    echo "ok: $(cat "$work/w0.err")"
    ;;
  unreachable)
    start=$(date +%s)
    RANK=1 WORLD_SIZE=2 MASTER_PORT=$port "$attend" $(train_args) --epochs 1 --dist-timeout 2 >"$work/w.out" 2>"$work/w.err"
    code=$?
    took=$(($(date +%s) - start))
    [ "$code" -eq 1 ] || fail "exited $code, expected 1"
    [ "$took" -le 20 ] || fail "took $took s with a 2 s timeout"
    one_line "$work/w.err" "^attend: error: cannot reach the master 127[.]0[.]0[.]1:$port within 2 s"
    echo "ok: $(cat "$work/w.err")"
    ;;
  worldsize)
    by_hand 2 3 "" ""
    one_line "$work/w0.err" "^attend: error: WORLD_SIZE is 2 on rank 0 but 3 on rank 1$"
    one_line "$work/w1.err" "^attend: error: WORLD_SIZE is 3 here but 2 on rank 0$"
    echo "ok: both workers named both world sizes"
    ;;
  *)
    fail "unknown mode $mode"
    ;;
esac
