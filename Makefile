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

# The demo's cohort: scanner-space head size and no anatomy or texture of each subject's own,
# where the default model separates the default-strength patterns at the demo's size. On the
# realistic defaults of conf/synth.yaml (each subject's own anatomy and texture) the demo's
# brain-age-selected sets (126 targets, 10 of them with pattern A alone) are at its detection
# limit: it keeps one salient axis of the two needed, validation ARI 0.39 (cPCA -0.02), where
# the benchmark's 200 + 200 scans give 1.00 (`make demo DEMO_COHORT=` runs them).
DEMO_COHORT = head_size.space=native anatomy.rms_mm=0 anatomy.texture=0

# The demo's brain-age stage: a quarter-width SFCN on the 4 mm grid, trained on half the controls
# (the other half calibrates the bias correction, measures it, and is the background pool).
DEMO_BRAINAGE = net=sfcn_small optim=adam optim.optimizer.lr=0.001 trainer.max_epochs=25 \
	data.preprocessing.shape=[40,48,40] 'data.split_fractions={train:0.5,val:0.25,test:0.25}' \
	data.num_workers=0 data.cache_dir=$(DEMO_DIR)/cache trainer.enable_progress_bar=false

# The demo's contrastive stage: the default model on the selected sets, 4 mm grid, 30 epochs.
DEMO_TRAIN = data.preprocessing.shape=[40,48,40] data.cache_dir=$(DEMO_DIR)/cache \
	data.num_workers=0 trainer.max_epochs=30 trainer.enable_progress_bar=false

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

# torch first: with no torch present, MONAI's `torch>=2.8` would pull a CUDA build (GBs).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev,slurm,search,tensorboard,export]"
	touch $@

demo: install
	$(BIN)/neurocvae-synth grid=ci seed=0 groups.HC.count=600 $(DEMO_COHORT) out_dir=$(DEMO_DIR)/cohort overwrite=true
	$(BIN)/neurocvae-brainage data.manifest=$(DEMO_DIR)/cohort/manifest.csv \
		out_dir=$(DEMO_DIR)/brainage overwrite=true $(DEMO_BRAINAGE)
	rm -rf $(DEMO_DIR)/train
	$(BIN)/neurocvae-train data.target=$(DEMO_DIR)/brainage/target.csv \
		data.background=$(DEMO_DIR)/brainage/background.csv hydra.run.dir=$(DEMO_DIR)/train \
		$(DEMO_TRAIN)
	$(BIN)/neurocvae-eval run=$(DEMO_DIR)/train
	@echo "Cohort report: $(DEMO_DIR)/cohort/report/report.md"
	@echo "Brain age: $(DEMO_DIR)/brainage (metrics.json, plots, target.csv, background.csv)"
	@echo "Contrastive model: $(DEMO_DIR)/train (checkpoints/, logs/metrics.csv, separation.json)"
	@echo "Evaluation report: $(DEMO_DIR)/train/eval/report.md (in a browser: report.html)"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
