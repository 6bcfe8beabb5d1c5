#!/usr/bin/env bash
# Data-parallel training throughput on this machine (docs/distributed.md).
# usage: bench/distributed.sh [attend binary] [repeats]
#
# For the CNN (MNIST digits, 28x28, batch 128) and the RAM (60x60 clutter, 8 glimpses
# of 3 scales, batch 128), the training rate (examples per second, from the progress
# lines: the mean over the epochs after the first) of:
#   1p x 1t      one process, one thread
#   1p x 1t, 64  one process, one thread, batch 64 (a rank's share), its rate doubled: what
#                two ranks would reach if communication cost nothing and each core ran
#                as one does alone (the work every rank repeats, as the optimiser step,
#                is what keeps it below 2)
#   1p x 2t      one process, two threads
#   2p x 1t      attend launch --nproc 2 (one thread each), buckets of 1 MB sent during backward,
#                collectives waited for by polling (--dist-wait auto: the workers have a core each)
#   2p x 1t, b   the same, waiting asleep (--dist-wait block)
#   2p x 1t, 0   the same with one bucket all-reduced after backward (--bucket-mb 0)
#   2p x 1t, 256 the same with a global batch of 256: 128 per process, as in the
#                one-process runs (weak scaling, as data-parallel benchmarks usually report)
#   2 x 1p x 1t  two independent one-thread runs at once: the machine's ceiling for two
#                processes (their rates summed)
# and the gradient all-reduce of the data-parallel runs (bytes per step, the time per
# step waiting in collectives, and rank 0's own part of a step: its data, forward and
# backward, from attend's data-parallel line). Medians over the repeats, with their
# range; the repeats interleave the configurations.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
attend=${1:-$root/build/bin/attend}
repeats=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1

cnn=(train cnn --data "$root/data/mnist" --epochs 3)
ram=(train ram --scenes cluttered --canvas 60 --fragments 4 --glimpses 8 --glimpse-size 12 --scales 3 --epochs 6)

# The mean training rate of the epochs after the first (RAM epochs last 2 s each).
rate() {
  grep -E "epoch [0-9]+/[0-9]+ done" "$1" | tail -n +2 | sed -E 's/.* ([0-9.]+) ex\/s training.*/\1/' |
    awk '{ s += $1; n++ } END { printf "%.0f\n", s / n }'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

configs=(1p1t 1p1th 1p2t 2p1t 2p1tb 2p1t0 2p1tw pair)
# run_one <name> <model> <i>: one run of a configuration; its rate (and all-reduce
# figures) go to $work/<name>-<model>.rates (.mb, .waits).
run_one() {
  local name=$1 model=$2 i=$3
  local -n args=$model
  local out=$work/$name-$model-$i
  rm -rf "$out.run" "$out.run2"
  case $name in
    1p1t) "$attend" --threads 1 "${args[@]}" --batch 128 --run-dir "$out.run" 2>"$out.err" >/dev/null ;;
    1p1th) "$attend" --threads 1 "${args[@]}" --batch 64 --run-dir "$out.run" 2>"$out.err" >/dev/null ;;
    1p2t)
      OPENBLAS_NUM_THREADS=2 "$attend" --threads 2 "${args[@]}" --batch 128 --run-dir "$out.run" 2>"$out.err" \
        >/dev/null
      ;;
    2p1t) "$attend" launch --nproc 2 -- "${args[@]}" --batch 128 --run-dir "$out.run" 2>"$out.err" >/dev/null ;;
    2p1tb)
      "$attend" launch --nproc 2 -- "${args[@]}" --batch 128 --dist-wait block --run-dir "$out.run" 2>"$out.err" \
        >/dev/null
      ;;
    2p1t0)
      "$attend" launch --nproc 2 -- "${args[@]}" --batch 128 --bucket-mb 0 --run-dir "$out.run" 2>"$out.err" \
        >/dev/null
      ;;
    2p1tw) "$attend" launch --nproc 2 -- "${args[@]}" --batch 256 --run-dir "$out.run" 2>"$out.err" >/dev/null ;;
    pair)
      "$attend" --threads 1 "${args[@]}" --batch 128 --run-dir "$out.run" 2>"$out.err" >/dev/null &
      local p=$!
      "$attend" --threads 1 "${args[@]}" --batch 128 --run-dir "$out.run2" 2>"$out.err2" >/dev/null
      wait "$p"
      ;;
  esac
  if [ "$name" = 1p1th ]; then
    awk -v a="$(rate "$out.err")" 'BEGIN { print 2 * a }' >>"$work/$name-$model.rates"
  elif [ "$name" = pair ]; then
    awk -v a="$(rate "$out.err")" -v b="$(rate "$out.err2")" 'BEGIN { print a + b }' >>"$work/$name-$model.rates"
  else
    rate "$out.err" >>"$work/$name-$model.rates"
  fi
  if grep -q "data-parallel over" "$out.err"; then
    # both waits: for the buckets after backward and for the step's other collectives
    sed -nE 's/.* ([0-9.]+) ms per step waiting.*, ([0-9.]+) ms in the step.*/\1 \2/p' "$out.err" |
      awk '{ print $1 + $2 }' >>"$work/$name-$model.waits"
    sed -nE 's/.*, ([0-9.]+) MB all-reduced per step.*/\1/p' "$out.err" >"$work/$name-$model.mb"
    sed -nE 's/.*, ([0-9.]+) ms per step on its own part.*/\1/p' "$out.err" >>"$work/$name-$model.work"
  fi
}
echo "attend: $("$attend" --version)   machine: $(nproc) cores   repeats: $repeats"
printf '%-8s %-4s %10s %13s %10s %14s %14s\n' config model "ex/s" "range" "MB/step" "wait ms/step" "own ms/step"
# Repeats outside, configurations inside: the speed of this shared machine drifts over
# minutes, and interleaving gives every configuration the same share of it.
for model in cnn ram; do
  for i in $(seq "$repeats"); do
    for name in "${configs[@]}"; do run_one "$name" "$model" "$i"; done
  done
  for name in "${configs[@]}"; do
    r=$(median <"$work/$name-$model.rates")
    range=$(sort -g "$work/$name-$model.rates" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }')
    mb=$(cat "$work/$name-$model.mb" 2>/dev/null || true)
    w=$( [ -s "$work/$name-$model.waits" ] && median <"$work/$name-$model.waits" || true)
    o=$( [ -s "$work/$name-$model.work" ] && median <"$work/$name-$model.work" || true)
    printf '%-8s %-4s %10s %13s %10s %14s %14s\n' "$name" "$model" "$r" "$range" "${mb:--}" "${w:--}" "${o:--}"
  done
done
