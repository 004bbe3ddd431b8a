#!/usr/bin/env bash
# Issue-15 figures on one GPU machine (16 cores), in one go, each part a neurocvae-benchmark
# folder under $WORK: `quick` (every arm of preset=ablation at seed 0, the default at seeds 0–2),
# `strength_*` (the default at seeds 0–2 on cohorts with weaker and stronger disease patterns)
# and `full` (the full preset's default arm). Each run's metrics come back in $OUT/runs.tgz;
# the tables are written from them afterwards: neurocvae-benchmark with the same out_dir and
# overrides (finished runs are kept) and experiments/detection_limit.py.
#   OUT=outputs/issue15 experiments/issue15_gpu.sh
set -uo pipefail
OUT=${OUT:-outputs/issue15}; WORK=${WORK:-/tmp/issue15}; LIMIT=${LIMIT:-480}
mkdir -p "$OUT" "$WORK"
cd "$(dirname "$0")/.."
run() { AGGREGATE=0 timeout "$LIMIT" experiments/arms_parallel.sh "$@"; }
# the quick preset's cohort (conf/preset/quick.yaml); its patterns scaled below
cohort='cohort=["grid=ci","seed=0","head_size.space=native","anatomy.rms_mm=0","anatomy.texture=0","groups.HC.count=200","groups.MDD.count=100","groups.diabetes.count=100","groups.dual.count=0"'
p() { echo "\"patterns.A.$1\",\"patterns.B.$1\""; }
declare -A strength=(
  [strength_025]="$(p intensity=0.2),$(p warp=0.15)"
  [strength_05]="$(p intensity=0.283),$(p warp=0.212)"
  [strength_3]="$(p intensity=0.6),$(p warp=0.33),$(p sigma_mm=12)"
  [strength_9]="$(p intensity=0.65),$(p warp=0.33),$(p sigma_mm=15)")
for name in "${!strength[@]}"; do
  JOBS=2 run "$WORK/$name" "cvae@0 cvae@1 cvae@2" preset=quick baselines=[pca,cpca] \
    "$cohort,${strength[$name]}]" > "$WORK/$name.out" 2>&1 &
done
JOBS=3 run "$WORK/full" "cvae@0 cvae@1 cvae@2" preset=full > "$WORK/full.out" 2>&1 &
items="cvae@1 cvae@2"
for arm in cvae cvae_no_tc cvae_no_penalty cvae_no_linear_start cvae_fixed_alpha \
    cvae_conv_decoder previous_default vae rae cvae_w2 mm_cvae aglinskas2022 m0_baseline \
    m1_gamma_0.01 m2_no_discriminator m3_cyclical_beta m4_rae; do items="$items $arm@0"; done
JOBS=7 run "$WORK/quick" "$items" preset=ablation > "$WORK/quick.out" 2>&1
wait
cd "$WORK" || exit 1
tar czf "$OUT/runs.tgz" */runs/*/*/eval/metrics.json */runs/*/*/eval/latents.csv \
  */runs/*/*/logs/metrics.csv */runs/*/*/.hydra/config.yaml quick/runs/cvae/seed0/eval \
  full/runs/cvae/seed0/eval 2>/dev/null
tar czf "$OUT/logs.tgz" *.log *.out 2>/dev/null
ls -la "$OUT"; du -sh "$OUT"/*
