# `make demo` and `make test` bootstrap .venv on first run (and again when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The independent OCPP peer of tests/interop: ocpp-rpc from npm, exactly as the lock file says.
INTEROP       := tests/interop/node
INTEROP_STAMP := $(INTEROP)/node_modules/.installed
# axe-core, the accessibility rules the app's browser tests run on every screen, from npm likewise.
AXE       := tests/fleet/axe
AXE_STAMP := $(AXE)/node_modules/.installed

.PHONY: demo test lint typecheck pytest bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $(STAMP)

$(INTEROP_STAMP): $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(INTEROP_STAMP)

$(AXE_STAMP): $(AXE)/package.json $(AXE)/package-lock.json
	cd $(AXE) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(AXE_STAMP)

# `make demo SERVE=1` keeps the app with the story's data at http://127.0.0.1:$(PORT)/app/ until
# Ctrl-C; without SERVE the demo ends by itself (CI).
PORT ?= 8000
demo: $(STAMP)
	$(BIN)/chargepin demo $(if $(SERVE),--serve --port $(PORT))

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

typecheck: $(STAMP)
	$(BIN)/mypy

# The fleet tests run on SQLite and on a real PostgreSQL server on loopback, which
# .ci/postgres.sh installs (Debian package) and starts when it is not running yet; the interop
# tests need Node (>= 17.3) and ocpp-rpc, installed by `npm ci` from the registry.
# The suite runs on every core (at most 4 workers, so the PostgreSQL server's connections suffice);
# CHARGEPIN_TEST_WORKERS=0 runs it in one process. The web app's browser tests drive Debian's
# Chromium, which .ci/chromium.sh installs when it is missing (Playwright's download is not used),
# and axe-core, installed by `npm ci` like the interop peer.
pytest: $(STAMP) $(INTEROP_STAMP) $(AXE_STAMP)
	CHARGEPIN_TEST_POSTGRES="$$(bash .ci/postgres.sh)" \
	CHARGEPIN_TEST_CHROMIUM="$$(bash .ci/chromium.sh)" $(BIN)/pytest \
	  -n $${CHARGEPIN_TEST_WORKERS:-auto} --maxprocesses 4 --dist worksteal --durations=25

# Every screen of the web app at 360 px into docs/app/ and the gallery in README.md, in Debian's
# Chromium (the list of screens is src/chargepin/lab/app_screens.py, as for the axe test).
screenshots: $(STAMP)
	$(BIN)/chargepin lab screenshots --out docs/app --readme README.md \
	  --chromium "$$(bash .ci/chromium.sh)"

bench: $(STAMP)
	$(BIN)/chargepin bench pairing --json bench-pairing.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(INTEROP)/node_modules $(AXE)/node_modules
