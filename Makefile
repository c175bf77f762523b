# biv: every target sets itself up (virtual environment, system tools) on Debian/Ubuntu.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_TOOLS := osslsigncode p7zip-full msitools wixl nsis genisoimage squashfs-tools rpm cpio chromium
PYTEST_ARGS ?=

.PHONY: demo test lint bench corpus fuzz install system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: system-deps $(VENV)/.installed

# Installs the system tools biv's tests and demo use, when run as root on Debian/Ubuntu;
# otherwise says exactly what to install.
system-deps:
	@bash scripts/system-deps.sh $(SYSTEM_TOOLS)

demo: install
	$(BIN)/biv demo

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The real-world corpus (tests/corpus/manifest.toml): every package, large ones included,
# verified against itself, newer against older, and tampered; prints the table.
corpus: install
	$(BIN)/python tests/corpus/run.py

lint: $(VENV)/.installed
	$(BIN)/ruff check verifier tests benchmarks
	$(BIN)/ruff format --check verifier tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Coverage-guided fuzzing (atheris) of every parser of untrusted bytes, FUZZ_SECONDS per target
# (default 60); FUZZ_TARGETS picks some. Crashes land in .fuzz/crashes/TARGET/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= pe macho macho_fat elf der authenticode codesign zip tar asar refs policy
fuzz: install
	$(BIN)/pip install -q -e '.[fuzz]'
	@mkdir -p .fuzz; status=0; for t in $(FUZZ_TARGETS); do \
	  $(BIN)/python tests/fuzz/run.py $$t --seconds $(FUZZ_SECONDS) | tee -a .fuzz/summary.jsonl || status=1; \
	done; exit $$status

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/signing.py
	$(BIN)/python benchmarks/explain.py
	$(BIN)/python benchmarks/npm_deps.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
