# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
PYTHON312 ?= python3.12
# One stamp per install: `make demo` installs the core package and the demo data only,
# `make test` adds the test extra (PyTorch, timm, pytest) to the same environment.
CORE_STAMP := $(VENV)/.installed-core
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast install clean-venv wheelhouse rehearsal

$(CORE_STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	# Animal-MNIST (the demo data) declares TensorFlow and pandas it does not need.
	$(PY) -m pip install -q --no-deps animal-mnist
	touch $(CORE_STAMP)

$(TEST_STAMP): $(CORE_STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

install: $(CORE_STAMP)

# LiVT (MGP, then BFT with Bal-BCE) on Animal-MNIST-LT, on the CPU.
demo: $(CORE_STAMP)
	$(PY) -m livt_jax.main --config configs/demo.py \
	    --workdir $(WORKDIR) $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# The quick tier (markers in pytest.ini): no trainings, subprocess commands, installs,
# multi-process runs or GCS server.
test-fast: $(TEST_STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not e2e and not multiprocess and not gcs" tests

# The GPU benchmark kit (README, Speed). Wheels the lent GPU image lacks, for CPython 3.12
# manylinux x86-64, into wheelhouse/ (ignored; carried with the checkout). Needs the index.
wheelhouse:
	$(PYTHON) launch/wheelhouse.py wheelhouse

# The kit rehearsed on the CPU: a fresh Python 3.12 stand-in for the GPU image, the same
# offline install, every section at tiny sizes; the test checks results.json.
rehearsal: $(TEST_STAMP)
	test -f wheelhouse/requirements.txt || $(MAKE) wheelhouse
	LIVT_REHEARSAL=1 PYTHON312=$(PYTHON312) $(PY) -m pytest -q -s tests/test_device_bench_rehearsal.py

clean-venv:
	rm -rf $(VENV)
