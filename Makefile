# Duet: every target sets up what it needs (a project virtualenv in .venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_SRC := $(wildcard protos/duet/v1/*.proto)

.PHONY: help venv postgres-binaries chromium geoip run demo test test-fast check format protos check-protos clean bench-edge bench-route bench-connect bench-match

help:
	@echo "make run          start the local cluster (PostgreSQL, routing, matchmaker, 3 edges) and the web client, place demo calls, serve until Ctrl-C"
	@echo "make demo         the same demo calls, then exit; last line is a JSON summary"
	@echo "make test         unit, property, integration and browser tests (starts its own PostgreSQL; installs chromium if missing)"
	@echo "make test-fast    the tests not marked slow"
	@echo "make geoip        install the default GeoIP database (DB-IP City Lite, ~48 MB download, once per machine)"
	@echo "make bench-edge   the edge's CPU per forwarded packet and its lossless calls per core, against a bare Python loop (BENCH_ARGS=--quick)"
	@echo "make bench-route  route lookups, recompute, push to 500 edges and failover on a 500-edge backbone (BENCH_ARGS=--quick)"
	@echo "make bench-connect match -> first frame for every pair of the 13 regions under WAN emulation, against end-to-end WebRTC (BENCH_ARGS=--quick)"
	@echo "make bench-match  matches/s and time to match with 10,000 waiting, committed to PostgreSQL, against a naive scan (BENCH_ARGS=--quick)"
	@echo "make check        lint and format check (ruff) and static types (mypy); part of make test"
	@echo "make format       apply ruff's fixes and formatting"
	@echo "make protos       regenerate the gRPC/protobuf Python code from protos/"
	@echo "make clean        remove the virtualenv and local state (.duet/, and PostgreSQL data kept outside it)"

$(STAMP): pyproject.toml setup.py
	@echo "setting up $(VENV) (pinned dependencies; first run only) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

venv: $(STAMP)

# PostgreSQL server binaries (initdb, pg_ctl, postgres): the services start a
# private cluster from them. Installed with apt-get when missing and possible.
postgres-binaries:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "PostgreSQL server binaries not found: installing them with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL server binaries (initdb, pg_ctl) not found: install them (Debian/Ubuntu: sudo apt-get install postgresql) or set DUET_DATABASE_URL"; exit 1; fi

# Debian's Chromium for the browser tests (tests/browser/, driven by Playwright, which
# never downloads a browser of its own here). Installed with apt-get when missing and
# possible; $DUET_CHROMIUM names another Chromium instead.
chromium:
	@if [ -n "$$DUET_CHROMIUM" ] || [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium not found: installing it with apt-get (the browser tests drive it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium (/usr/bin/chromium) not found: the browser tests need it (Debian/Ubuntu: sudo apt-get install chromium, or set DUET_CHROMIUM)"; exit 1; fi

# The default real GeoIP database (DB-IP City Lite, CC BY 4.0), once per machine into
# ~/.cache/duet/geoip ($$DUET_GEOIP_DIR): the routing service places clients with it.
geoip: $(STAMP)
	@$(BIN)/duet geoip install

protos: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=protos --grpc_python_out=protos --pyi_out=protos $(PROTO_SRC)

# Fails when the committed generated code differs from what protos/ generates.
check-protos: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp --pyi_out=$$tmp $(PROTO_SRC) && \
	for f in $$(cd $$tmp && find duet -name '*.py' -o -name '*.pyi'); do \
	  cmp -s $$tmp/$$f protos/$$f || { echo "generated code is stale: protos/$$f (run 'make protos' and commit)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated protobuf code is up to date"

# mypy resolves modules by folder, so it reads the installed layout (duet/routing, ...)
# from a tree of links to the repository's folders; its report names the real files.
TYPECHECK := $(VENV)/typecheck
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p $(TYPECHECK)/duet
	@ln -sfn ../../../protos/duet/__init__.py $(TYPECHECK)/duet/__init__.py
	@ln -sfn ../../../protos/duet/v1 $(TYPECHECK)/duet/v1
	@for d in routing edge services; do ln -sfn ../../../$$d $(TYPECHECK)/duet/$$d; done
	@echo "$(BIN)/mypy -p duet"
	@$(BIN)/mypy -p duet > $(TYPECHECK)/report.txt 2>&1; status=$$?; \
	  sed -e 's#^$(TYPECHECK)/duet/v1/#protos/duet/v1/#' -e 's#^$(TYPECHECK)/duet/__init__#protos/duet/__init__#' -e 's#^$(TYPECHECK)/duet/##' $(TYPECHECK)/report.txt; \
	  exit $$status
	@echo "$(BIN)/mypy bench"
	@$(BIN)/mypy bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

run: $(STAMP) postgres-binaries geoip
	$(BIN)/duet up

demo: $(STAMP) postgres-binaries geoip
	$(BIN)/duet demo

test: $(STAMP) postgres-binaries chromium geoip check-protos check
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) postgres-binaries chromium geoip check-protos check
	$(BIN)/python -m pytest -q -m "not slow"

# Synthetic calls through bench edge processes and the bare-loop floor (docs/benchmarks.md);
# the last line is a JSON summary. BENCH_ARGS=--quick for a shorter run.
bench-edge: $(STAMP)
	$(BIN)/python -m bench.edge $(BENCH_ARGS)

# Route choice and route pushes on a generated 500-edge / 5,000-link backbone against a
# Dijkstra per query (docs/benchmarks.md); the last line is a JSON summary. BENCH_ARGS=--quick.
bench-route: $(STAMP)
	$(BIN)/python -m bench.route $(BENCH_ARGS)

# Calls for every region pair on the emulated world, against the end-to-end baseline (docs/benchmarks.md);
# writes a heatmap and report to .duet/bench-connect/; the last line is a JSON summary. BENCH_ARGS=--quick: 2 pairs.
bench-connect: $(STAMP) postgres-binaries
	$(BIN)/python -m bench.connect $(BENCH_ARGS)

# The matchmaker with 10,000 waiting, matches committed to PostgreSQL, against a naive scan of the pool
# (docs/benchmarks.md); the last line is a JSON summary. BENCH_ARGS=--quick: 2,000 waiting, 500 newcomers.
bench-match: $(STAMP) postgres-binaries
	$(BIN)/python -m bench.match $(BENCH_ARGS)

# Also the PostgreSQL data that had to live outside the checkout (see README).
clean:
	@target=$$(readlink .duet/pg-relocated 2>/dev/null); case "$$target" in /var/tmp/duet-postgres/*) rm -rf "$$target";; esac
	rm -rf $(VENV) .duet
