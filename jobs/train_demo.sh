#!/usr/bin/env bash
# make train-demo: the whole chain on make demo's preprocessing output, on the CPU in minutes.
#   tiny stage 1 -> export -> tiny stage 2 from it -> export -> python -m model.animate
# The tiny model starts from RANDOM weights (python -m model.init --preset tiny) and trains a
# few steps: this proves the plumbing end to end; the animation it writes is noise.
set -euo pipefail
data="${1:?usage: train_demo.sh DEMO_OUT OUT ASSETS}"
out="${2:?usage: train_demo.sh DEMO_OUT OUT ASSETS}"
assets="${3:?usage: train_demo.sh DEMO_OUT OUT ASSETS}"
py=.venv/bin/python
ds=.venv/bin/deepspeed
reference="$assets/images/coco_wholebody/000000000785.jpg"
driving="$assets/videos/dance_single.mp4"
for f in "$reference" "$driving" "$data/config.yaml"; do
  [ -f "$f" ] || { echo "train-demo: missing $f (run make demo; MCANIM_ASSETS names the assets)"; exit 2; }
done
port() { $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "== train-demo: TINY RANDOM-WEIGHT MODEL (plumbing only: its output is noise) =="
$py -m model.init --preset tiny --out "$out/init"
echo "== stage 1: UNet + ReferenceNet + guiders =="
$ds --num_gpus 1 --master_port "$(port)" train/main.py --config jobs/train/tiny_stage1.yaml \
  data.root="$data" init_from="$out/init" output_dir="$out/stage1"
echo "== stage 2: motion modules on the stage-1 export =="
$ds --num_gpus 1 --master_port "$(port)" train/main.py --config jobs/train/tiny_stage2.yaml \
  data.root="$data" init_from="$out/stage1/export" output_dir="$out/stage2"
# The export records make demo's extractors (MoveNet, the feet heuristic, their settings) and
# model.animate uses them by default; --pose-model only points at this machine's copy.
echo "== animate: a reference image driven by a real dance video, with the stage-2 export =="
$py -m model.animate --checkpoint "$out/stage2/export" --reference "$reference" \
  --driving "$driving" --pose-model "$assets/models/movenet_multipose.onnx" \
  --out "$out/anim.mp4" --side-by-side "$out/anim_sbs.mp4" \
  --height 64 --width 48 --steps 4 --max-frames 16
echo "train-demo done: $out/anim.mp4 (and anim_sbs.mp4); validation videos in $out/stage*/validation,"
echo "TensorBoard: .venv/bin/tensorboard --logdir $out. The model is tiny and random: noise out."
