# One-command set-up: every target installs what it needs first (system packages, venv, Python deps).
PY := .venv/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SYSTEM_PACKAGES := fortunes espeak-ng
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages test lint demo demo-all bench
install: .venv/.installed

system-packages:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; }

# constraints.txt pins torch to the CPU build; an unpinned torch pulls gigabytes of CUDA packages.
.venv/.installed: pyproject.toml constraints.txt | system-packages
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,demo]'
	touch $@

test: install
	.venv/bin/ruff check .
	$(OFFLINE) $(PY) -m pytest

lint: install
	.venv/bin/ruff check .

demo: install
	$(OFFLINE) $(PY) tasks/text_classification.py

demo-all: install
	$(OFFLINE) $(PY) demo/text_modes.py

# Step time, throughput, memory and data cost per task x mode vs a bare transformers.Trainer (~10 min on 2 cores).
bench: install
	$(OFFLINE) $(PY) bench/run.py
