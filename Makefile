# Two commands do everything on a fresh machine:
#   make demo       set up .venv if needed, then run the single-life study in miniature (~32 min)
#   make test       set up .venv if needed, then run the test suite
#   make demo-full  the longer study: a third life, the pairing ablation and a growing life (60 min)
#   make demo-objectives  one life learned by CroCo, DINOv2 and egomotion side by side (20 min)
#   make demo-ablation  the pairing ablation alone: one life, the paper's five pairing arms (22.5 min)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.slife-installed

.PHONY: setup demo demo-full demo-objectives demo-ablation test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	# the CPU build of torch lies on this machine's disk; any other spec pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# open3d needs libusb-1.0 to import (Debian: libusb-1.0-0)
	@$(PY) -c "import open3d" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null; \
	  else echo "open3d cannot import: install Debian's libusb-1.0-0 (sudo apt-get install libusb-1.0-0)"; exit 1; fi; }
	$(PY) -c "import open3d, pycolmap, av, webdataset, torch, skimage"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/slife demo --out runs/demo

demo-full: $(STAMP)
	$(VENV)/bin/slife demo --study full --out runs/demo-full

demo-objectives: $(STAMP)
	$(VENV)/bin/slife demo --study objectives --out runs/demo-objectives

demo-ablation: $(STAMP)
	$(VENV)/bin/slife demo --study ablation --out runs/demo-ablation

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs
