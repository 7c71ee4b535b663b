PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch: a bare `torch` requirement resolves to a multi-GB CUDA build.
TORCH_CPU ?= $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl) torch==2.13.0)
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu

.PHONY: install test demo lint bench clean

$(BIN)/tweetmill: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_CPU)" || $(BIN)/pip install -q torch==2.13.0 $(TORCH_INDEX)
	$(BIN)/pip install -q -e ".[train,report,dev]"
	touch $@

install: $(BIN)/tweetmill

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check pipeline transforms schemas gpu_train tests bench

demo: install
	rm -rf demo-out
	$(BIN)/tweetmill run 'examples/sample/*' --output demo-out
	$(BIN)/tweetmill stats demo-out

clean:
	rm -rf $(VENV) demo-out *.egg-info
