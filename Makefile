# Set-up and entry points. Every target installs what it needs into .venv first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-slow bench reproduce report clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job on the embedded default data: original model, Retrain, MultiDelete, evaluation, tables.
run: install
	$(PYTHON) -m mdrun

test: install
	$(PYTHON) -m pytest -q

# Exit status 5 means that no test is marked slow at present.
test-slow: install
	$(PYTHON) -m pytest -q -m slow || [ $$? -eq 5 ]

# Cost of MultiDelete against Retrain, measured in one process.
bench: install
	$(PYTHON) scripts/bench.py

METHODS := multidelete,retrain,ft,neggrad,dtd,lcodec,ermktp,scrub,salun,bad_teacher,graddiff,random_pairing
SEEDS := 42,87,21

# Every method on the embedded default over three seeds, as one Hydra multirun; finished runs'
# original and retrained models and scores come from the cache, so a rerun resumes cheaply.
reproduce: install
	$(PYTHON) -m mdrun -m method=$(METHODS) seed=$(SEEDS)

report: install
	$(PYTHON) -m mdrun.report

clean:
	rm -rf outputs cache
