# fcnlab: the two commands of the README, and their helpers.
#   make train   install (first time) and train FCN-8s on the embedded synthetic data
#   make test    install (first time, with the test extra) and run the default test suite
# The venv gets the CPU build of torch pinned by TORCH (on a GPU machine, install your CUDA build
# of torch into the venv first, or set TORCH="torch").

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# crf compiles pydensecrf2 (needs a C++ compiler, ~1 min); loggers = wandb + tensorboard;
# launchers = Hydra's joblib and submitit (SLURM) launchers; optuna = Hydra's Optuna sweeper
# (optuna 2.x, SQLAlchemy, alembic); export = onnx + onnxscript + onnxruntime.
# `make test EXTRAS=test` installs none of them: the tests that need one are skipped, naming it.
EXTRAS ?= test,crf,loggers,launchers,optuna,export
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: train test test-slow install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch in the same command, so the resolver never swaps in a multi-GB CUDA build.
	$(PIP) install --quiet "$(TORCH)" -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train.py $(ARGS)

# One pytest-xdist worker per core (tests/conftest.py splits torch's threads among them).
test: install
	$(PY) -m pytest -q -n auto $(ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(ARGS)

clean:
	rm -rf $(VENV) logs data
