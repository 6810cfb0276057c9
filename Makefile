# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo test install clean-venv

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# Animal-MNIST (the demo data) declares TensorFlow and pandas it does not need.
	$(PY) -m pip install -q --no-deps animal-mnist
	touch $(STAMP)

install: $(STAMP)

# LiVT (MGP, then BFT with Bal-BCE) on Animal-MNIST-LT, on the CPU.
demo: $(STAMP)
	$(PY) -m livt_jax.main --config configs/demo.py \
	    --workdir $(WORKDIR) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

clean-venv:
	rm -rf $(VENV)
