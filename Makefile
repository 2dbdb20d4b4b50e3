# padirec: `make run` runs the whole pipeline locally; `make test` runs the tests.
# The virtual environment is created (or refreshed when the pins change) on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/ml100k.yaml
IMAGE  ?= padirec:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
# Every install goes through the torch pin, so nothing can pull a CUDA build on a CPU machine.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: help venv lock clean run compile paper readme-results readme-paper test test-fast lint images push image-sizes deploy-image model-image bench-backbones bench-adapters bench-generation bench-conditioning bench-serving bench-hotspots bench-scale bench-data gpu-check run-folder

help: ## list the targets, by group
	@awk -F':.*## ' '/^##@ /{printf "\n%s\n", substr($$0, 5)} /^[a-z-]+:.*## /{printf "  make %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The hashed locks, then torch on its own (its CPU and CUDA builds are different files).
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements.lock -r requirements-dev.lock
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

##@ Set-up

venv: $(STAMP) ## create or refresh .venv from the pinned requirements

lock: ## re-resolve requirements.lock and requirements-dev.lock (with hashes) from the .in files; needs uv
	uv pip compile --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet requirements.in -o requirements.lock
	uv pip compile --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet requirements-dev.in -c requirements.lock -o requirements-dev.lock

clean: ## remove build outputs (keeps .venv and runs/)
	rm -rf dist build .pytest_cache .ruff_cache

##@ Pipeline

run: $(STAMP) ## run the whole pipeline locally on the default config (MovieLens-100K)
	$(PY) -m pipelines run --config $(CONFIG)

compile: $(STAMP) ## compile the pipeline to dist/padirec_pipeline.yaml (IMAGE=... to choose the image)
	$(PY) -m pipelines compile --out dist/padirec_pipeline.yaml --image $(IMAGE)

paper: $(STAMP) ## the paper's Table 1, Table 2 and Figure 3: 4 backbones x 3 seeds on ML-100K (docs/experiment.md; 1 h 27 min measured on 2 cores)
	$(PY) -m pipelines experiment table1 --config configs/paper.yaml --seeds 3

readme-results: $(STAMP) ## write the README's results section from the newest run folder (after make run)
	$(PY) tools/readme_results.py

readme-paper: $(STAMP) ## write the README's paper section (Tables 1, 2, Figure 3) from make paper's output
	$(PY) tools/readme_results.py --experiment runs/experiments/paper-ml-100k

##@ Quality

test: $(STAMP) ## run the test suite
	$(PY) -m pytest -q --durations=25

test-fast: $(STAMP) ## the tests without the slow end-to-end ones
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check padirec components pipelines tests benchmarks tools

##@ Images and cluster

images: ## build the CUDA and CPU images (needs a Docker engine; see images/build.sh for BASE, PIP_* and TORCH_WHEELS), tagged <version>-<commit>
	images/build.sh cuda $(IMAGE)
	images/build.sh cpu $(IMAGE)-cpu

push: ## tag and push both images of `make images` to a registry: make push REGISTRY=registry.example.com/team (DRY_RUN=1 prints the commands)
	images/push.sh $(if $(DRY_RUN),--dry-run) '$(REGISTRY)' $(IMAGE) $(IMAGE)-cpu

image-sizes: ## write the sizes that `make images` recorded (dist/image-sizes.tsv) into the README's table
	$(PY) -m tools.image_sizes dist/image-sizes.tsv README.md

deploy-image: ## set the image of the production overlay: make deploy-image IMAGE=registry.example.com/padirec:<version>-<commit>
	$(PY) manifests/set_image.py $(IMAGE)

model-image: $(STAMP) ## the serving image of a registered model from MLflow's build-docker Dockerfile (MODEL_URI, TRACKING_URI, MODEL_TAG, BASE, TORCH=cpu|cuda; docs/serving.md)
	$(PY) tools/model_image.py $(if $(MODEL_URI),--model-uri '$(MODEL_URI)') $(if $(TRACKING_URI),--tracking-uri '$(TRACKING_URI)') $(if $(MODEL_TAG),--tag '$(MODEL_TAG)') $(if $(BASE),--base '$(BASE)') --torch $(or $(TORCH),cpu)

##@ Benchmarks (benchmarks/README.md)

# The benchmarks that re-read a finished run take RUN=runs/<name>-<time>; by default the newest
# run folder (`make run` first), named on the first line they print.
RUN          ?= $(shell ls -td runs/*-*/ 2>/dev/null | head -1)
RUN_DIR       = $(RUN:%/=%)/
RUN_DATA      = $(firstword $(wildcard $(RUN_DIR)*/prepare-data/data))
RUN_BACKBONE  = $(firstword $(wildcard $(RUN_DIR)*/train-backbone/backbone))

SAY_RUN       = echo "run folder: $(RUN_DIR)$(if $(filter file,$(origin RUN)), (the newest; RUN=... picks another))"

run-folder:
	@$(if $(RUN),$(SAY_RUN),echo "no run folder: make run first, or give RUN=runs/<name>-<time>"; exit 2)

bench-backbones: $(STAMP) run-folder ## train the four backbones on MovieLens-100K (the run's data) and print the table
	$(PY) benchmarks/bench_backbones.py --data $(RUN_DATA)

bench-adapters: $(STAMP) run-folder ## batched vs sequential adapter training, and the default bank's wall time (the run's data and backbone)
	$(PY) benchmarks/bench_adapters.py --data $(RUN_DATA) --backbone $(RUN_BACKBONE)

bench-generation: $(STAMP) ## sampler x steps x samples: latency and validation Pearson/reward, on the run (--split valid); without one, on a bank of its own
	@$(if $(RUN),$(SAY_RUN),echo "no run folder: bench_generation.py's bank mode")
	$(PY) benchmarks/bench_generation.py $(if $(RUN),--run $(RUN_DIR))

bench-conditioning: $(STAMP) run-folder ## the five DiT conditioning strategies (paper RQ3) on the run
	$(PY) benchmarks/conditioning.py --run $(RUN_DIR) --out $(RUN_DIR)conditioning.json

bench-serving: $(STAMP) run-folder ## 2,000 requests from 8 clients to mlflow models serve on 127.0.0.1 (the run's system)
	$(PY) benchmarks/bench_serving.py --system $(firstword $(wildcard $(RUN_DIR)*/register-and-promote/system))

bench-hotspots: $(STAMP) ## the ML-1M-sized CPU hot spots (dropout masks, evaluator, validation, greedy lists), old vs new in one process
	$(PY) benchmarks/bench_hotspots.py

bench-scale: $(STAMP) ## the whole pipeline on ML-1M-format data: each step's wall time, peak memory, cost per unit (SCALE=1; STAGES=1 for the costly stages one by one, QUICK=1 for those at 0.25x, reduced)
	$(PY) benchmarks/bench_scale.py $(if $(SCALE),--scale $(SCALE)) $(if $(or $(STAGES),$(QUICK)),--stages) $(if $(QUICK),--quick) --threads $(or $(THREADS),0)

bench-data: $(STAMP) ## the data stage alone on month-partitioned Parquet at 10x and 20x ML-1M: wall time, peak memory (SCALES=10,20)
	$(PY) benchmarks/bench_data.py --scales $(or $(SCALES),10,20)

gpu-check: ## on a machine with one NVIDIA GPU, no Docker: CUDA torch in a fresh venv, the pipeline on cuda vs cpu (times, agreement), bench_scale
	scripts/gpu_check.sh
