PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: a bare `torch` requirement resolves to a multi-GB CUDA build, while 2.13.0
# resolves to the CPU build kept on this machine's disk (pip's find-links).
TORCH ?= torch==2.13.0

.PHONY: install test test-fast demo lint bench clean

$(BIN)/tweetmill: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[train,report,dev]"
	# Hugging Face datasets in a venv of its own (its multiprocess needs a dill that Beam's pickler
	# forbids): the interop tests open the shards with it there (tests/test_interop.py).
	$(PY) -m venv $(VENV)/hf
	$(VENV)/hf/bin/pip install -q "datasets>=3"
	# MosaicML streaming in a venv of its own (it pins numpy<2.2 and wants torchvision, transformers,
	# cloud SDKs): the MDS export is read back with it (tests/test_export_mds.py). No dependencies from
	# pip: the few `import streaming` needs, and this venv's CPU torch (and transformers) through a .pth.
	$(PY) -m venv $(VENV)/mds
	$(VENV)/mds/bin/pip install -q --no-deps mosaicml-streaming==0.13.0
	$(VENV)/mds/bin/pip install -q "numpy<2.2" brotli python-snappy zstd "xxhash<4" pillow tqdm catalogue
	$(VENV)/mds/bin/python -c "import pathlib, sysconfig; p = sysconfig.get_paths()['purelib']; \
		pathlib.Path(p, 'tweetmill-torch.pth').write_text(p.replace('/mds/lib/', '/lib/', 1) + '\n')"
	touch $@

install: $(BIN)/tweetmill

test: install
	$(BIN)/python -m pytest -q tests

# The stage cores and everything else that needs no whole pipeline run (< 1 minute); `make test` runs
# these and the tests marked slow (end-to-end runs, emulators, subprocesses).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check pipeline transforms schemas gpu_train tests bench docs

demo: install
	rm -rf demo-out demo-runs
	$(BIN)/tweetmill run 'examples/sample/data/*' --output demo-out
	$(BIN)/tweetmill stats demo-out
	$(BIN)/tweetmill train demo-out --model tiny --steps 4 --batch-tokens 2048 --log-interval 1 \
		--device cpu --run-dir demo-runs
	$(BIN)/tweetmill generate demo-runs/latest --prompt "Good morning" --max-new-tokens 20 --device cpu

clean:
	rm -rf $(VENV) demo-out demo-runs *.egg-info
