# Two commands on a fresh machine: `make run` and `make test` (both create .venv and install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PO := $(wildcard locales/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

.PHONY: install run test lint bench clean messages

install: $(STAMP) $(MO)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Translations are compiled at install so neither command needs an extra step.
locales/%/LC_MESSAGES/messages.mo: locales/%/LC_MESSAGES/messages.po $(STAMP)
	$(VENV)/bin/pybabel compile --use-fuzzy -i $< -o $@ -l $*

run: install
	$(PY) -m bot

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check bot handlers reports tests benchmarks
	$(VENV)/bin/mypy reports bot handlers

bench: install
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) benchmarks/report_speed.py

clean:
	rm -rf $(VENV) data/*.db*

# After changing user-visible strings: refresh the catalogs, then translate the new entries.
messages: install
	$(VENV)/bin/pybabel extract -F babel.cfg -k __ -k N_ -k N_plural:1,2 -c TRANSLATORS: --sort-by-file -w 100 -o locales/messages.pot .
	$(VENV)/bin/pybabel update --no-fuzzy-matching --ignore-obsolete -w 100 -i locales/messages.pot -d locales -D messages
