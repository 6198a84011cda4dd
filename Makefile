# make demo [DATA=<clip folder>]   train through notebooks/train.ipynb (papermill)
# make test                        the test suite (2 to 5 minutes on 2 CPU cores)
# make test-browser                JupyterLab and TensorBoard in headless Chromium (as root it
#                                  installs Debian's chromium when missing; about 1 minute)
# Each creates or reuses the virtual environment in $(VENV).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?=
DEFAULT_DATA := data/default
EPOCHS ?=

.PHONY: venv demo test test-browser lab clean-cache

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# With no DATA, the embedded default dataset is synthesized once (offline, eSpeak NG).
demo: venv
	@if [ -z "$(DATA)" ] && [ ! -d "$(DEFAULT_DATA)" ]; then \
		$(PY) -m workbench make-dataset $(DEFAULT_DATA); fi
	$(PY) -m workbench run-notebook --name demo \
		$(if $(DATA),data.root=$(DATA),data.root=$(DEFAULT_DATA) data.val_clips=3) \
		$(if $(EPOCHS),training.max_epochs=$(EPOCHS),)

test: venv
	$(PY) -m pytest -q

test-browser: venv
	VENV=$(VENV) bash .ci/browser-setup.sh
	$(PY) -m pytest -q -m browser

lab: venv
	$(PY) -m pip install -q -e '.[lab]'
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser

clean-cache:
	rm -rf .cache/features
