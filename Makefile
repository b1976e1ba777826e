# Two commands matter (see README.md):  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo serve test test-fast lint bench clean

$(BIN)/callcue: pyproject.toml
	@echo "== installing CallCue into $(VENV) (first time: 2-4 minutes, about 1 GB of packages) =="
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[test]'
	@touch $@

# the pages' own assets (Chart.js, msgpack) come from npm: without them the charts stay blank
client_js/node_modules/.installed: client_js/package.json
	@command -v npm >/dev/null || { echo "npm not found: the pages need it for Chart.js and msgpack (apt-get install npm, or bash scripts/install-system-deps.sh as root)" >&2; exit 1; }
	@echo "== installing the pages' assets (npm, a few seconds) =="
	cd client_js && npm install --no-audit --no-fund --silent
	@touch $@

install: $(BIN)/callcue client_js/node_modules/.installed

demo: install
	$(BIN)/callcue demo --serve

serve: install
	$(BIN)/callcue serve

test: $(BIN)/callcue
	bash scripts/install-system-deps.sh
	$(MAKE) client_js/node_modules/.installed
	@echo "== running the test suite (12-20 minutes on 2 cores; the percentage on the right is progress) =="
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(BIN)/callcue
	$(BIN)/ruff check server bench tests
	$(BIN)/mypy

test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

bench: install
	$(BIN)/python bench/latency.py --spawn

clean:
	rm -rf $(VENV) var
