# vit-course: two commands, each doing its own set-up on a machine with python3 and make
#   make lab    create .venv if missing, install the course, open JupyterLab on notebooks/
#   make test   the same set-up plus test extras, then unit tests and nbval over every notebook
#   make test-browser   only the browser tests: every learner notebook in JupyterLab in headless Chromium
#   make sync   bring each solution notebook and its paired text source (notebooks/solutions/NN_x.py) in step

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# JupyterLab refuses to run as root (containers, CI) unless told
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

# Offline by default: nothing is downloaded at run time. `make lab HF_HUB_OFFLINE=0` goes online
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= $(HF_HUB_OFFLINE)
export PIP_DISABLE_PIP_VERSION_CHECK = 1
# idle PyTorch threads sleep instead of spinning: a busy machine stays usable
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: lab test test-browser notebooks sync pair learner constraints doctor clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -c constraints.txt -e ".[test]"
	touch $@

lab: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ROOT) $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=300 $(PYTEST_ARGS)

# The learner notebooks in JupyterLab in the system's Chromium (skipped, saying how to enable, without it)
test-browser: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/browser -v $(PYTEST_ARGS)

# The solution notebooks and their paired plain-text sources (jupytext percent format, NN_x.py
# beside NN_x.ipynb): edit either, then `make sync` carries the change to the other (the newer
# file wins; outputs stay in the .ipynb). `make pair` writes every .py afresh from its .ipynb
# (and pairs a notebook that is not yet): use it after a merge changed the .ipynb files
SOLUTIONS := notebooks/solutions/[0-9][0-9]_*.ipynb
PAIRING := '{"jupytext": {"formats": "ipynb,py:percent"}}'

sync: $(VENV)/.installed-test
	$(BIN)/jupytext --sync $(SOLUTIONS)

pair: $(VENV)/.installed-test
	$(BIN)/jupytext --update-metadata $(PAIRING) $(SOLUTIONS)
	$(BIN)/jupytext --to py:percent $(SOLUTIONS)

# Sync the text sources, regenerate learner notebooks from the solutions, then re-execute both
# the way nbval runs them
notebooks: $(VENV)/.installed-test sync
	$(BIN)/python tools/make_learner.py
	$(BIN)/python tools/execute_notebooks.py notebooks/solutions/*.ipynb notebooks/*.ipynb

doctor: $(VENV)/.installed
	$(BIN)/vit-course doctor

constraints: $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	{ echo "# Exact versions known to work together, used by 'make lab' and 'make test' (pip -c)."; \
	  echo "# Regenerate with 'make constraints' after changing pyproject.toml."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
