# mcanim — developer entry points. `make demo` and `make test` set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
export MCANIM_ASSETS ?= $(abspath ../shared/assets)
DEMO_OUT ?= out/demo

.PHONY: setup demo demo-cpu demo-paper demo-assets train-demo eval-demo test mutate lint format typecheck clean system-deps gpu-wheels gpu-check

setup: $(STAMP)

# ffmpeg: the CLI used by tests to build videos with rotation metadata; encoding itself uses PyAV.
# chromium + chromium-driver: the headless browser the dataset browser's tests drive (Selenium
# is given both paths, so it never downloads a browser).
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q ffmpeg >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q ffmpeg >/dev/null; }; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }; }

$(STAMP): pyproject.toml constraints.txt | system-deps
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	# DeepSpeed's CPU collective op is compiled once here instead of at the first launch (~1 min).
	DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 $(PIP) install -q --no-build-isolation --no-cache-dir \
	  -c constraints.txt deepspeed
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	# Metric parity references whose PyPI metadata pulls torchvision (which must not be
	# installed: docs/evaluate.md); the code the tests use needs only torch, numpy and tqdm.
	$(PIP) install -q --no-deps lpips==0.1.4
	# torch-fidelity's wheel also installs a top-level `tests` package (its own) that would
	# shadow ours: it goes to a folder of its own (tests/model/reference_metrics.py).
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/refpkgs torch-fidelity==0.4.0
	# rtmlib: the independent DWPose pre/post-processing of tests/preprocess/test_dwpose_parity.py.
	# Its metadata pulls the non-headless opencv-python (clashes with opencv-python-headless);
	# what it imports (numpy, cv2, onnxruntime, tqdm) is installed above.
	$(PIP) install -q --no-deps rtmlib==0.0.16
	touch $(STAMP)

# The main job on real input. With the shared assets folder: two real videos, CPU preset
# (demo-cpu). Without it, on a machine with network: the paper preset (DWPose + PWC-Net +
# Depth Anything) with weights fetched by the weights manager into MCANIM_WEIGHTS and
# OpenCV's public sample video, written to DEMO_PAPER_OUT (demo-paper). Then the paper-style
# statistics and plots, and the dataset browser (OUT/browse/index.html; its path is printed).
demo:
	@if jobs/check_demo_assets.sh "$(MCANIM_ASSETS)" >/dev/null; then \
	  $(MAKE) --no-print-directory demo-cpu; \
	else \
	  echo "no shared assets at $(MCANIM_ASSETS): running the paper preset on fetched weights"; \
	  $(MAKE) --no-print-directory demo-paper; \
	fi

# The top-down CPU pose (about 8 frames/s alone on 2 cores; inside this job the two videos run at
# once, one per core, pose about 7 frames/s each; docs/pose.md) on the first 64 frames of each
# video (about 20 s): DEMO_FRAMES=0 for all of them.
DEMO_FRAMES ?= 64
demo-cpu: demo-assets $(STAMP)
	$(PY) -m preprocess --config jobs/preprocess/cpu.yaml --output $(DEMO_OUT) \
	  --input "$(MCANIM_ASSETS)/videos/vtest.avi" --input "$(MCANIM_ASSETS)/videos/dance_single.mp4" \
	  decode.max_frames=$(DEMO_FRAMES)
	$(PY) -m shards validate $(DEMO_OUT)
	$(PY) -m shards stats $(DEMO_OUT) --plots $(DEMO_OUT)/plots
	$(PY) -m shards browse $(DEMO_OUT) --out $(DEMO_OUT)/browse

DEMO_VIDEO_URL ?= https://raw.githubusercontent.com/opencv/opencv/4.x/samples/data/vtest.avi
DEMO_VIDEO ?= out/demo-inputs/vtest.avi
DEMO_PAPER_OUT ?= out/demo-paper

demo-paper: $(STAMP)
	$(PY) -m preprocess.weights fetch
	@test -f $(DEMO_VIDEO) || { mkdir -p $(dir $(DEMO_VIDEO)) && echo "fetching $(DEMO_VIDEO_URL)" && \
	  $(PY) -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' \
	    "$(DEMO_VIDEO_URL)" "$(DEMO_VIDEO)"; }
	$(PY) -m preprocess --config jobs/preprocess/paper.yaml --output $(DEMO_PAPER_OUT) \
	  --input "$(DEMO_VIDEO)" decode.max_frames=64
	$(PY) -m shards validate $(DEMO_PAPER_OUT)
	$(PY) -m shards stats $(DEMO_PAPER_OUT) --plots $(DEMO_PAPER_OUT)/plots
	$(PY) -m shards browse $(DEMO_PAPER_OUT) --out $(DEMO_PAPER_OUT)/browse

# Training on make demo's output (made first when missing): tiny stage 1 -> export -> tiny
# stage 2 -> export -> model.animate. The tiny model has random weights: plumbing, noise out.
train-demo: demo-assets $(STAMP)
	@test -f $(DEMO_OUT)/config.yaml || $(MAKE) --no-print-directory demo-cpu
	jobs/train_demo.sh $(DEMO_OUT) out/train_demo "$(MCANIM_ASSETS)"

# Evaluation of the train-demo model on the held-out demo clip (python -m train.evaluate):
# tiny random model, stand-in feature networks unless their files are in MCANIM_WEIGHTS.
eval-demo: $(STAMP)
	@test -f out/train_demo/stage2/export/config.yaml || $(MAKE) --no-print-directory train-demo
	jobs/eval_demo.sh $(DEMO_OUT) out/train_demo out/eval_demo

# Checked before the (minutes-long) setup, so a missing file is reported at once.
demo-assets:
	@jobs/check_demo_assets.sh "$(MCANIM_ASSETS)"

# Hypothesis derandomized (tests/conftest.py): the same examples on every run; a plain
# `pytest` (profile dev) explores random ones. Per-test time limits: pyproject.toml.
test: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q

# Mutation testing (mutmut) of the geometry layer, the extractors' pre/post-processing and the
# metrics against their fast unit tests: hours on 2 cores, not part of make test or CI.
# Scope: pyproject.toml [tool.mutmut]; score per file and every survivor in out/mutation/report.md
# (docs/testing.md). MUTATE_JOBS=N tests N mutants at once (default: one per CPU);
# MUTATE_SAMPLE=K a fixed 1-in-K subset of the mutants (compare two runs at the same K).
MUTATE_JOBS ?=
MUTATE_SAMPLE ?= 1
mutate: $(STAMP)
	$(PY) benchmarks/mutation.py --sample $(MUTATE_SAMPLE) $(if $(MUTATE_JOBS),--jobs $(MUTATE_JOBS))

# The GPU check (docs/gpu.md) for a GPU machine without network. gpu-wheels, here: the pinned
# wheels of benchmarks/gpu_wheels.txt (CPython 3.12 x86_64) and a pure-Python DeepSpeed wheel
# built from the version in constraints.txt, into GPU_WHEELS; fails above GPU_WHEELS_MAX_MIB.
# gpu-check, there: no venv, no network: unpacks the wheels that fit this interpreter into
# GPU_SITE and runs benchmarks/gpu_check.py with the project and GPU_SITE on PYTHONPATH
# (GPU_CHECK_ARGS: e.g. --dry-run, --out FILE, --assets DIR; python3 benchmarks/gpu_check.py --help).
GPU_WHEELS ?= out/gpu_wheels
GPU_SITE ?= out/gpu_site
GPU_WHEELS_MAX_MIB := 40
GPU_CHECK_ARGS ?=

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PIP) download -q --no-deps --only-binary=:all: --implementation cp --python-version 3.12 \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  -r benchmarks/gpu_wheels.txt -d $(GPU_WHEELS)
	DS_BUILD_OPS=0 $(PIP) wheel -q --no-deps --no-build-isolation -c constraints.txt \
	  -w $(GPU_WHEELS) deepspeed
	@$(PY) -c 'import pathlib, sys; d = pathlib.Path(sys.argv[1]); w = sorted(d.glob("*.whl")); \
	  n = sum(p.stat().st_size for p in w); lim = int(sys.argv[2]) * 2**20; \
	  print(f"{d}: {len(w)} wheels, {n / 2**20:.1f} MiB (limit {lim / 2**20:.0f} MiB)"); \
	  sys.exit(f"{d} is over the limit" if n > lim else 0)' $(GPU_WHEELS) $(GPU_WHEELS_MAX_MIB)

gpu-check:
	@mkdir -p $(GPU_SITE)
	@tag=$$($(PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	  found=0; for w in $(GPU_WHEELS)/*.whl; do \
	    test -f "$$w" || continue; found=1; \
	    case "$$(basename $$w)" in *-cp3*-cp3*) case "$$(basename $$w)" in *-$$tag-*) ;; \
	      *) echo "skipping $$w (not $$tag)"; continue;; esac;; esac; \
	    $(PYTHON) -m zipfile -e "$$w" $(GPU_SITE)/; done; \
	  test $$found = 1 || echo "no wheels in $(GPU_WHEELS) (make gpu-wheels where there is network)"
	PYTHONPATH=$(CURDIR):$(abspath $(GPU_SITE)) $(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# ruff, the type checker, and the import-layer contract (docs/design.md §2; also part of make test).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layering.py

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) out mutants .pytest_cache .mypy_cache .ruff_cache
