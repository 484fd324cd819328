# One venv, pinned by constraints.txt; every target runs `setup` first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: setup test test-fast lab demo bench clean

setup: $(STAMP)

# Reinstall only when the pins or the package metadata change: a no-op in a second otherwise.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "torch==2.13.0" -c constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[test,ray]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# Jupyter refuses to start as root unless told (containers, CI boxes): say so only there.
lab: setup
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

demo: setup
	$(BIN)/wan-nb generate "a red fox running through snow" --model tiny --out demo.mp4 --height 64 --width 64 --frames 17 --steps 8

bench: setup
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) wan_nb_runs
