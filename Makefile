# Two entry points (see README): `make demo` and `make test`. Both create/reuse the venv first.
VENV ?= $(HOME)/.cache/tune3d/venv
PY := $(VENV)/bin/python
OUT ?= demo-out
# Always run the code in this checkout, whatever the venv's editable install points at.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
# Let Python cache tune3d's own bytecode: the CLI tests start many interpreters.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv demo test lint bench

venv:
	@scripts/ensure-venv $(VENV)

demo: venv
	$(PY) -m tune3d demo --out $(OUT)

lint: venv
	$(PY) -m ruff check tune3d tests benchmarks
	$(PY) -m ruff format --check tune3d tests benchmarks

test: venv lint
	@$(PY) -m pytest -q -n 2 --durations=15; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: venv
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
