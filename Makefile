# One venv, pinned by constraints.txt; every target runs `setup` first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: setup system test test-fast lab demo bench clean

setup: system $(STAMP)

# System packages: Chromium (the browser tests) and Node.js + npm (the Lab extension's build).
# Installed with apt when run as root and missing (a fresh container, CI); otherwise one line says
# what to install. `make test` stops there (its browser tests need them); other targets go on.
SYSTEM_COMMANDS := chromium:chromium node:nodejs npm:npm
system:
	@missing=""; for pair in $(SYSTEM_COMMANDS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make setup: installing$$missing (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "make setup: missing system packages:$$missing -- install them (Debian/Ubuntu: sudo apt-get install -y$$missing), then run make again" >&2; \
	  test -z "$(REQUIRE_SYSTEM)"; \
	fi

# Reinstall only when the pins or the package metadata change: a no-op in a second otherwise.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q "torch==2.13.0" -c constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[test,ray]"
	touch $(STAMP)

test: REQUIRE_SYSTEM = 1
test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: REQUIRE_SYSTEM = 1
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

# -- JupyterLab extension: js/ (TypeScript) -> wan_nb/labextension -> the venv ------------------
# The built extension is committed (installing the package needs no Node); it is rebuilt here
# only when its sources change, and copied into the venv, because an editable install copies
# shared data once, at install time. Without npm the committed build is used as it is.
LAB_SRC := $(wildcard js/src/*.ts js/style/*.css js/style/*.js) js/package.json js/tsconfig.json
LAB_DEPS := js/node_modules/.wan-nb-installed
LAB_BUILT := js/node_modules/.wan-nb-built
LAB_EXT := $(VENV)/share/jupyter/labextensions/wan-nb

.PHONY: labextension
setup: $(LAB_EXT)/install.json
labextension: $(LAB_EXT)/install.json

$(LAB_DEPS): js/package-lock.json
	if ! command -v npm >/dev/null; then echo "npm not found: the JupyterLab extension is not rebuilt (wan_nb/labextension is used as committed)"; \
	elif (cd js && npm ci --no-audit --no-fund --loglevel=error); then touch $@; \
	else echo "npm ci failed: the JupyterLab extension is not rebuilt (wan_nb/labextension is used as committed)"; fi

$(LAB_BUILT): $(LAB_SRC) $(LAB_DEPS) | $(STAMP)
	if test -f $(LAB_DEPS); then \
	  rm -rf wan_nb/labextension && cd js && npx tsc \
	  && PATH="$(abspath $(BIN)):$$PATH" jupyter-builder build . && touch node_modules/.wan-nb-built; fi

$(LAB_EXT)/install.json: $(LAB_BUILT) js/install.json $(STAMP)
	rm -rf $(LAB_EXT) && mkdir -p $(LAB_EXT)
	cp -R wan_nb/labextension/. $(LAB_EXT)/ && cp js/install.json $(LAB_EXT)/install.json
