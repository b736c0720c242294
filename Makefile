# share-gateway: `make demo` shows the share story; `make test` runs every check.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint typecheck unit bench soak fuzz clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## demo: a demo A2A agent + the gateway (SQLite, no Redis), walking through the share story
demo: $(VENV)/.installed
	$(PY) -m gateway demo

## test: lint, strict type check and the whole test suite (starts PostgreSQL if none runs)
test: lint typecheck unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check gateway tests bench

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

unit: $(VENV)/.installed
	scripts/with-services.sh $(PY) -m pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## bench: gateway vs direct upstream vs nginx, one run (needs nginx, wrk, hey; installs them on Debian as root)
bench: $(VENV)/.installed
	scripts/bench-deps.sh
	scripts/with-services.sh $(PY) -m bench.run
	scripts/with-services.sh $(PY) -m bench.lookup_cost --redis $${SHARE_GATEWAY_TEST_REDIS:-redis://127.0.0.1:6379/0}

## soak: 10 minutes of mixed traffic with revocations and Redis restarts (RSS, fds, wrong allows)
soak: $(VENV)/.installed
	scripts/bench-deps.sh
	scripts/with-services.sh $(PY) -m bench.soak --minutes 10

## fuzz: the property tests with a large example budget (20,000 per property)
fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_properties.py
