#!/bin/bash
# The cached additive decoding step against the memory-bandwidth limit, one ratio per
# process (this machine's bandwidth drifts by tens of percent within minutes, so a
# ratio is only meaningful within one process). Usage, from the repository root after
# building with -DATTEND_BUILD_BENCH=ON:
#   bench/additive_ratios.sh [processes=5] [build dir=build]
set -euo pipefail
runs=${1:-5}
bench=${2:-build}/bench/attention_bench
common=(--benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
        --benchmark_report_aggregates_only=true --benchmark_filter='AdditiveDecodeStep/1/|ReadBand')
for ((r = 1; r <= runs; ++r)); do
  for t in 1 2; do
    pin=()
    [ "$t" = 1 ] && pin=(taskset -c 0)
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=$t "${pin[@]}" "$bench" "${common[@]}" 2>&1 |
      grep median |
      awk -v t="$t" '/DecodeStep/{s=$2} /ReadBand/{l=$2} END{printf "threads %d step %d us limit %d us ratio %.2f\n", t, s, l, s/l}'
  done
done
