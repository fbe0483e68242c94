# The two commands of the set-up contract: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/beamwatch demo -c examples/i04-demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/polled_sql.py
	$(BIN)/python bench/slack.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/cpu_per_update.py

soak: $(STAMP)  # an hour: 10k PVs at 2 Hz (bench/soak.py --help)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build *.egg-info
