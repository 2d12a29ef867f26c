# The front door. Every Python target depends on the .venv stamp, so a fresh machine sets itself up.
SHELL := /bin/bash
PY := .venv/bin/python
# pytest-xdist workers for make test: one per core (a file's tests stay on one worker: module fixtures)
TEST_WORKERS ?= auto
# A matching pair from the registry: the CPU-only torch 2.13.0 in pip's find-links breaks torchvision.
TORCH_PAIR := torch==2.14.1 torchvision==0.29.2

NAME ?= smoke
TRIALS ?=
WORKERS ?=
STORAGE ?=
TOP ?= 5
CONFIG ?=
EPOCHS ?=
ARGS ?= synth
PORT ?= 5000
DASHBOARD_PORT ?= 8080
SERVE_PORT ?= 5001
DEVICE ?=

.PHONY: help venv test test-fast lint bench bench-search bench-load bench-crohme bench-precision gpu-check data study worker storage-proxy ui dashboard serve export report replay train predict evaluate clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.venv/.stamp: pyproject.toml
	@# system site-packages: on a GPU machine the torch (>= 2.5) already there is used as it is.
	@test -x $(PY) || python3 -m venv --system-site-packages .venv
	@# torch first, from the registry only, as a matching pair; a GPU machine keeps a torch >= 2.5 it has.
	@$(PY) -c "import torch, torchvision" 2>/dev/null || env -u PIP_FIND_LINKS $(PY) -m pip install -q $(TORCH_PAIR)
	env -u PIP_FIND_LINKS $(PY) -m pip install -q -e ".[dev]"
	@touch $@

venv: .venv/.stamp ## create .venv with everything the project needs

test: .venv/.stamp ## run the test suite (uses ../shared/data when present) [TEST_WORKERS=auto|n]
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: .venv/.stamp ## the tests not marked slow
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: .venv/.stamp ## ruff check
	$(PY) -m ruff check .

bench: .venv/.stamp ## run the benchmarks, writing benchmarks/results.json
	$(PY) -m benchmarks

bench-search: .venv/.stamp ## search strategies vs equal-budget hand tuning on the CPU profile, 3 seeds [QUICK=1] (about 4 h on 2 cores; resumable trial by trial)
	$(PY) -m benchmarks search $(if $(QUICK),--quick)

bench-crohme: .venv/.stamp ## crohme-cpu's best vs hand tuning on CROHME 2013, two seeds (after make study NAME=crohme-cpu; resumable)
	$(PY) -m benchmarks crohme

bench-load: .venv/.stamp ## many workers on one study on the local PostgreSQL: direct, through the gRPC proxy, a quarter killed [WORKERS=16] (~15 min)
	$(PY) -m benchmarks load $(if $(WORKERS),--workers $(WORKERS))

bench-precision: .venv/.stamp ## the fast mode (bf16 + channels-last) against fp32: accuracy and speed, two seeds (~30 min; resumable)
	$(PY) -m benchmarks precision

gpu-check: .venv/.stamp ## on a GPU machine (<= 10 min): CUDA benches, largest model + resume, packed trials -> benchmarks/gpu_check.json
	$(PY) -m benchmarks.gpu_check $(if $(DRY),--dry-run)

data: .venv/.stamp ## prepare a dataset: make data ARGS="synth --out data/synth --n 2000"
	$(PY) -m data_prep $(ARGS)

study: .venv/.stamp ## run or resume a study: make study NAME=transformer [TRIALS=n] [WORKERS=k] [STORAGE=url] [DEVICE=cpu|cuda]
	$(PY) -m search study $(NAME) $(if $(TRIALS),--trials $(TRIALS)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(STORAGE),--storage $(STORAGE)) $(if $(DEVICE),--device $(DEVICE))

worker: .venv/.stamp ## join a running study from another machine: make worker NAME=… STORAGE=…
	$(PY) -m search worker $(NAME) $(if $(TRIALS),--trials $(TRIALS)) $(if $(STORAGE),--storage $(STORAGE)) $(if $(DEVICE),--device $(DEVICE))

storage-proxy: .venv/.stamp ## Optuna's gRPC proxy in front of a study database: make storage-proxy STORAGE=postgresql://… [PROXY_HOST=0.0.0.0] [PROXY_PORT=13000]; workers use STORAGE=grpc://host:port
	$(PY) -m search storage-proxy --storage $(STORAGE) --host $(or $(PROXY_HOST),127.0.0.1) --port $(or $(PROXY_PORT),13000)

ui: .venv/.stamp ## serve the MLflow UI for mlruns/ on 127.0.0.1:$(PORT)
	$(PY) -m search ui --port $(PORT)

dashboard: .venv/.stamp ## serve optuna-dashboard for a study's storage: make dashboard NAME=smoke [DASHBOARD_PORT=8080] [STORAGE=url]
	$(PY) -m search dashboard $(NAME) --port $(DASHBOARD_PORT) $(if $(STORAGE),--storage $(STORAGE))

serve: .venv/.stamp ## serve a registered model over HTTP: make serve NAME=transformer-cpu (its NAME-best, after make train on its export) [SERVE_PORT=5001]
	PATH="$(CURDIR)/.venv/bin:$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlruns/mlflow.db}" \
		$(PY) -m mlflow models serve -m "models:/$(NAME)-best/latest" --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

export: .venv/.stamp ## export the best trial's config: make export NAME=transformer [TOP=k] [PARETO=1]
	$(PY) -m search export $(NAME) --top $(TOP) $(if $(PARETO),--pareto) $(if $(STORAGE),--storage $(STORAGE))

report: .venv/.stamp ## self-contained HTML report: make report NAME=transformer
	$(PY) -m search report $(NAME) $(if $(STORAGE),--storage $(STORAGE))

replay: .venv/.stamp ## train a trial again from what its study recorded: make replay NAME=smoke TRIAL=n
	@test -n "$(TRIAL)" || { echo "make replay needs TRIAL=n, e.g. make replay NAME=smoke TRIAL=0"; exit 2; }
	$(PY) -m search replay $(NAME) --trial $(TRIAL) $(if $(STORAGE),--storage $(STORAGE))

train: .venv/.stamp ## train one config: make train CONFIG=studies/exports/transformer.best.yaml [EPOCHS=n]
	@test -n "$(CONFIG)" || { echo "make train needs CONFIG=path/to/config.yaml, e.g. CONFIG=studies/exports/smoke.best.yaml"; exit 2; }
	$(PY) -m training train $(CONFIG) $(if $(EPOCHS),--set trainer.epochs=$(EPOCHS))

clean: ## remove caches (keeps data/, mlruns/ and studies/)
	rm -rf .pytest_cache .ruff_cache **/__pycache__
