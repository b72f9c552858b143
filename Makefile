# Two entry points a new user needs: `make demo` and `make test`.
# Both create .venv on first use and install the package into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/automl search studies/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-runs:
	rm -rf runs/
