# Two commands matter (see README.md):  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo serve test bench clean

$(BIN)/callcue: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(BIN)/callcue

demo: install
	$(BIN)/callcue demo --serve

serve: install
	$(BIN)/callcue serve

test: install
	bash scripts/install-system-deps.sh
	if [ -f client_js/package.json ]; then cd client_js && npm install --no-audit --no-fund --silent; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/latency.py --spawn

clean:
	rm -rf $(VENV) var
