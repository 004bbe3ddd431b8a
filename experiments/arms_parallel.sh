#!/usr/bin/env bash
# Train and evaluate neurocvae-benchmark runs as parallel processes (a machine with many cores,
# one GPU shared), then write the benchmark's table from the finished runs.
#   experiments/arms_parallel.sh OUT_DIR "ITEM …" [benchmark overrides …]
# An ITEM is an arm name (every seed of the preset) or arm@seed (that seed only). The table
# covers every arm named, at the seeds in the overrides (seeds=[…]) or the preset's, and trains
# nothing: an arm × seed there without a finished run is refused (tabulate_only=true). AGGREGATE=0
# skips it (write it later with neurocvae-benchmark and the same out_dir: finished runs are kept).
# e.g. JOBS=16 experiments/arms_parallel.sh outputs/bench "cvae@0 cvae@1 rae@0" seeds=[0]
set -euo pipefail
out=$1; items=$2; shift 2
bench=("${PYTHON:-python3}" -m neurocvae.cli.benchmark "out_dir=$out" "$@")
"${bench[@]}" seeds=[] > "$out.cohort.log" 2>&1 || true  # renders the cohort once, trains nothing
for item in $items; do echo "$item"; done | xargs -P "${JOBS:-8}" -I{} sh -c '
  arm=${1%@*}; seed=${1#*@}; shift; out=$1; shift
  if [ "$seed" = "$arm" ]; then "$@" "only=[$arm]"; else "$@" "only=[$arm]" "seeds=[$seed]"; fi \
    > "$out.$arm.$seed.log" 2>&1' _ {} "$out" "${bench[@]}"
if [ "${AGGREGATE:-1}" != 0 ]; then
  arms=$(for item in $items; do echo "${item%@*}"; done | sort -u | paste -sd,)
  "${bench[@]}" "only=[$arms]" tabulate_only=true
fi
