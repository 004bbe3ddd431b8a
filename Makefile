# neurocvae: `make demo` runs the whole pipeline on the embedded synthetic cohort (CPU, minutes);
# `make test` runs every test. Both create (or reuse) a virtual environment and install into it.
#
# GPU machines: choose the torch build, e.g.
#   make install TORCH="torch==2.13.0" TORCH_INDEX="--index-url <your CUDA wheel index>"

PYTHON      ?= python3
VENV        ?= .venv
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_DIR    ?= outputs/demo

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

# torch first: with no torch present, MONAI's `torch>=2.8` would pull a CUDA build (GBs).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(BIN)/neurocvae-synth grid=ci seed=0 out_dir=$(DEMO_DIR)/cohort overwrite=true
	@echo "Demo report: $(DEMO_DIR)/cohort/report/report.md"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
