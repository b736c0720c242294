# share-gateway: `make demo` shows the share story; `make test` runs every check.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint typecheck check-deploy kagent-adk unit bench soak fuzz clean
KAGENT_ADK := .kagent-adk

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## demo: a demo A2A agent + the gateway (SQLite, no Redis), walking through the share story
demo: $(VENV)/.installed
	$(PY) -m gateway demo

## test: lint, strict type check, the deployment check and the whole test suite (starts PostgreSQL if none runs)
test: lint typecheck check-deploy unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check gateway tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

## check-deploy: Helm chart, Kubernetes manifests, compose file, shell scripts and YAML checked by
## helm, kubernetes-validate, check-jsonschema, shellcheck and yamllint (pinned; installed into
## .deploy-tools/ on first use, which fails loudly if a tool cannot be had)
check-deploy: $(VENV)/.installed
	VENV=$(VENV) scripts/check-deploy.sh

## kagent-adk: kagent's real agent runtime in a venv of its own (it needs a2a-sdk 0.3), pinned
kagent-adk: $(KAGENT_ADK)/.installed
$(KAGENT_ADK)/.installed: scripts/kagent-adk-requirements.txt
	$(PYTHON) -m venv $(KAGENT_ADK)
	$(KAGENT_ADK)/bin/python -m pip install --quiet --no-deps -r scripts/kagent-adk-requirements.txt
	touch $@

unit: $(VENV)/.installed $(KAGENT_ADK)/.installed
	KAGENT_ADK_PYTHON=$(CURDIR)/$(KAGENT_ADK)/bin/python scripts/with-services.sh $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
	rm -rf .deploy-tools $(KAGENT_ADK)

## bench: gateway vs direct upstream vs nginx, one run (needs nginx, wrk, hey; installs them on Debian as root)
bench: $(VENV)/.installed
	scripts/bench-deps.sh
	scripts/with-services.sh $(PY) -m bench.run
	scripts/with-services.sh $(PY) -m bench.lookup_cost --redis $${SHARE_GATEWAY_TEST_REDIS:-redis://127.0.0.1:6379/0}
	scripts/with-services.sh $(PY) -m bench.revocation
	scripts/with-services.sh $(PY) -m bench.websocket

## soak: 10 minutes of mixed traffic with revocations and Redis restarts (RSS, fds, wrong allows)
soak: $(VENV)/.installed
	scripts/bench-deps.sh
	scripts/with-services.sh $(PY) -m bench.soak --minutes 10

## fuzz: the property tests with a large example budget (20,000 per property)
fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_properties.py
