#!/usr/bin/env bash
# make eval-demo: python -m train.evaluate on the make train-demo model and make demo's data.
# The model is TINY and RANDOM: the numbers only show that every stage runs. Without the
# published feature-network files in $MCANIM_WEIGHTS/metrics (see docs/evaluate.md) the
# LPIPS / FID / FID-VID / FVD networks are random-weight stand-ins, labelled "(stand-in)" in
# the report: those numbers are not metrics.
set -euo pipefail
data="${1:?usage: eval_demo.sh DEMO_OUT TRAIN_DEMO_OUT OUT}"
run="${2:?usage: eval_demo.sh DEMO_OUT TRAIN_DEMO_OUT OUT}"
out="${3:?usage: eval_demo.sh DEMO_OUT TRAIN_DEMO_OUT OUT}"
py=.venv/bin/python
for f in "$data/config.yaml" "$run/stage2/export/config.yaml" "$run/stage2/config.yaml"; do
  [ -f "$f" ] || { echo "eval-demo: missing $f (run make train-demo first)"; exit 2; }
done
weights="${MCANIM_WEIGHTS:-$HOME/.cache/mcanim/weights}/metrics"
stand_in=()
for f in alexnet-owt-7be5be79.pth alex.pth pt_inception-2015-12-05-6726825d.pth \
         resnet-50-kinetics.pth i3d_torchscript.pt; do
  if [ ! -f "$weights/$f" ]; then
    echo "eval-demo: $weights/$f missing: using STAND-IN feature networks (random weights)"
    stand_in=(--stand-in-features)
    break
  fi
done
echo "== eval-demo: TINY RANDOM-WEIGHT MODEL (the scores mean nothing; every stage runs) =="
# the clip the training run held out, its first 32 frames (two 16-frame segments), at 64x64,
# 2 DDIM steps; the same checkpoint once more with the flow guider's input zeroed at inference
# (a diagnostic, not the paper's Table 4, whose variants are trained without it: stage.guiders)
$py -m train.evaluate --checkpoint "$run/stage2/export" --data "$data" --out "$out" \
  --heldout-of "$run/stage2" --frames 32 --steps 2 --height 64 --width 64 --window 16 \
  --stride 8 --ablate none,flow "${stand_in[@]}" standard.size=64
echo "eval-demo done: $out/report.md, report.html, report.json, sheets/"
