# Two commands do all the set-up on a fresh machine:
#   make run    Sluice on its embedded defaults (SQLite, SQLite broker, local objects)
#   make test   the whole test suite (PostgreSQL, Redis and a moto S3 server on loopback)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast bench bench-tools lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sluice up

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP) bench-tools
	$(BIN)/python -m bench

# pdftotext and pdftoppm are the bench's references for PDF text and rendering;
# without them (not root, no apt-get) it compares with pypdf and says so.
bench-tools:
	@command -v pdftotext >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { apt-get install -y -q poppler-utils >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null && apt-get install -y -q poppler-utils >/dev/null; }; } \
	  || echo "bench: pdftotext not installed; PDF text is compared with pypdf"; }

lint: $(STAMP)
	$(BIN)/ruff check pipeline workers watchers cli api tests bench

clean:
	rm -rf $(VENV) var inbox .pytest_cache
