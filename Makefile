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

.PHONY: setup demo demo-assets test lint format typecheck clean system-deps

setup: $(STAMP)

# ffmpeg: the CLI used by tests to build videos with rotation metadata; encoding itself uses PyAV.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q ffmpeg >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q ffmpeg >/dev/null; }; }

$(STAMP): pyproject.toml constraints.txt | system-deps
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	# DeepSpeed's CPU collective op is compiled once here instead of at the first launch (~1 min).
	DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 $(PIP) install -q --no-build-isolation --no-cache-dir \
	  -c constraints.txt deepspeed
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The main job on real input: two real videos from the shared assets, CPU preset, then the
# paper-style statistics and plots of what it wrote.
demo: demo-assets $(STAMP)
	$(PY) -m preprocess --config jobs/preprocess/cpu.yaml --output $(DEMO_OUT) \
	  --input "$(MCANIM_ASSETS)/videos/vtest.avi" --input "$(MCANIM_ASSETS)/videos/dance_single.mp4"
	$(PY) -m shards validate $(DEMO_OUT)
	$(PY) -m shards stats $(DEMO_OUT) --plots $(DEMO_OUT)/plots

# Checked before the (minutes-long) setup, so a missing file is reported at once.
demo-assets:
	@jobs/check_demo_assets.sh "$(MCANIM_ASSETS)"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
