# cardvault developer tasks. Run `make` (or `make help`) for the list.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go

# Where a private PostgreSQL server keeps its files in dev mode.
DEV_DIR := .cardvault-dev

# Where `make ha` keeps its pg_auto_failover cluster (pg/) and dev KEK (vault/).
HA_DIR := .cardvault-ha

# The command that installs the PostgreSQL server binaries on Debian/Ubuntu.
PG_INSTALL := apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

# find_pg_bindir: a shell function printing the directory holding initdb and
# postgres, searched like vault/pglocal.FindBinDir: $PATH, `pg_config
# --bindir`, the highest /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin.
define FIND_PG_BINDIR
find_pg_bindir() { \
	local d; \
	has() { [ -n "$$1" ] && [ -x "$$1/initdb" ] && [ -x "$$1/postgres" ]; }; \
	if d=$$(command -v initdb 2>/dev/null); then \
		d=$$(dirname "$$(readlink -f "$$d")"); if has "$$d"; then echo "$$d"; return 0; fi; \
	fi; \
	if d=$$(pg_config --bindir 2>/dev/null) && has "$$d"; then echo "$$d"; return 0; fi; \
	for d in $$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5Vr) /usr/local/pgsql/bin; do \
		if has "$$d"; then echo "$$d"; return 0; fi; \
	done; \
	return 1; \
}
endef

.PHONY: help build install test dev postgres-check fmt clean bench

help: ## List the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{ printf "  %-16s %s\n", $$1, $$2 }'

build: ## Build bin/cardvault
	@echo "building cardvault (first run takes a few minutes)…"
	$(GO) build -o bin/cardvault ./cmd/cardvault

# GO_BIN_DIR: where `go install` puts binaries: GOBIN, else the first GOPATH entry's bin.
install: ## Install cardvault into $(go env GOBIN) or $(go env GOPATH)/bin, so `cardvault …` runs from any shell
	@echo "building cardvault (first run takes a few minutes)…"
	$(GO) install -buildvcs=auto ./cmd/cardvault
	@dir=$$($(GO) env GOBIN); \
	if [ -z "$$dir" ]; then gopath=$$($(GO) env GOPATH); dir="$${gopath%%:*}/bin"; fi; \
	echo "installed $$dir/cardvault"; \
	case ":$$PATH:" in \
		*":$$dir:"*) ;; \
		*) echo "$$dir is not on your PATH; add it: export PATH=\"\$$PATH:$$dir\"";; \
	esac

test: postgres-check ## Vet and run all tests (needs PostgreSQL; see postgres-check)
	$(GO) vet ./...
	$(GO) test -count=1 ./...

# How long `make fuzz` runs each fuzz target, and the targets, as
# package:FuzzName (go test allows one -fuzz target per run).
FUZZTIME ?= 10s
FUZZ_TARGETS := ./vault/card:FuzzParsePAN ./vault/card:FuzzParseExpiry ./vault/card:FuzzParseCard ./vault/card:FuzzContainsPANFindsDisguisedPANs ./httpapi:FuzzDecodeCDEImport ./forwarding:FuzzRewriteJSONMatchesStd

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s), one at a time; needs no database
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t#*:} ($${t%%:*}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

bench: build postgres-check ## Benchmark the vault against PostgreSQL's own insert and select (~2.5 min; BENCH_FLAGS=… adds flags; results in bin/bench/)
	bin/cardvault bench --out bin/bench $(BENCH_FLAGS)

.PHONY: soak
soak: postgres-check ## Soak: the real binary under mixed load for SOAK_DURATION (default 2m); fails on any error or RSS growth
	$(GO) test -tags soak -count=1 -v -run '^TestSoak$$' -timeout 10m ./cmd/cardvault

dev: postgres-check build ## Build bin/cardvault and run it in dev mode on 127.0.0.1:8080 (private PostgreSQL under .cardvault-dev/); ARGS='--stripe-simulator 1000' adds a simulated Stripe account
	bin/cardvault dev $(ARGS)

postgres-check: ## Make sure tests can get PostgreSQL; installs the server binaries with apt-get if needed
	@$(FIND_PG_BINDIR); \
	if [ -n "$${VAULT_TEST_DATABASE_URL:-}$${VAULT_DATABASE_URL:-}" ]; then \
		echo "postgres-check: ok, using VAULT_TEST_DATABASE_URL / VAULT_DATABASE_URL"; exit 0; \
	fi; \
	port_open() { if command -v timeout >/dev/null; then timeout 2 bash -c '</dev/tcp/127.0.0.1/5432'; \
		else bash -c '</dev/tcp/127.0.0.1/5432'; fi; } 2>/dev/null; \
	if port_open; then \
		echo "postgres-check: ok, something answers on 127.0.0.1:5432"; exit 0; \
	fi; \
	if d=$$(find_pg_bindir); then \
		echo "postgres-check: ok, server binaries in $$d (tests start a private server)"; exit 0; \
	fi; \
	echo "postgres-check: no PostgreSQL server binaries and nothing on 127.0.0.1:5432"; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "postgres-check: installing: $(PG_INSTALL)"; \
		{ $(PG_INSTALL); } || { echo "postgres-check: installing postgresql failed" >&2; exit 1; }; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "postgres-check: installing with sudo: $(PG_INSTALL)"; \
		{ sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; } \
			|| { echo "postgres-check: installing postgresql failed" >&2; exit 1; }; \
	else \
		echo "postgres-check: install the server binaries, e.g.: sudo apt-get install postgresql" >&2; \
		echo "postgres-check: (or set VAULT_TEST_DATABASE_URL to a server where you may create databases)" >&2; \
		exit 1; \
	fi; \
	if d=$$(find_pg_bindir); then \
		echo "postgres-check: ok, server binaries in $$d"; \
	else \
		echo "postgres-check: postgresql was installed but initdb/postgres are still not found" >&2; exit 1; \
	fi

.PHONY: docs
docs: ## Regenerate docs/api.md from httpapi/openapi.yaml (a test fails while it is stale)
	$(GO) generate ./httpapi

.PHONY: ha-check ha ha-test

ha-check: postgres-check ## Make sure pg_auto_failover is installed for the server's PostgreSQL; installs it with apt-get if needed
	@$(FIND_PG_BINDIR); \
	d=$$(find_pg_bindir) || { echo "ha-check: no PostgreSQL server binaries (make postgres-check)" >&2; exit 1; }; \
	v=$$("$$d/pg_config" --version 2>/dev/null | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p'); \
	v=$${v:-$$(basename "$$(dirname "$$d")")}; \
	has_af() { command -v pg_autoctl >/dev/null 2>&1 && [ -f "$$("$$d/pg_config" --pkglibdir 2>/dev/null)/pgautofailover.so" ]; }; \
	if has_af; then echo "ha-check: ok, pg_autoctl and the pgautofailover extension for PostgreSQL $$v"; exit 0; fi; \
	pkgs="pg-auto-failover-cli postgresql-$$v-auto-failover"; \
	echo "ha-check: pg_auto_failover for PostgreSQL $$v is missing ($$pkgs)"; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "ha-check: installing: apt-get install $$pkgs"; \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkgs; } \
			|| { echo "ha-check: installing $$pkgs failed" >&2; exit 1; }; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		echo "ha-check: installing with sudo: apt-get install $$pkgs"; \
		{ sudo -n apt-get update && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$pkgs; } \
			|| { echo "ha-check: installing $$pkgs failed" >&2; exit 1; }; \
	else \
		echo "ha-check: install them, e.g.: sudo apt-get install $$pkgs" >&2; exit 1; \
	fi; \
	if has_af; then echo "ha-check: ok, pg_auto_failover installed"; else echo "ha-check: installed, but pg_autoctl or pgautofailover.so is still missing" >&2; exit 1; fi

ha: build ha-check ## Run cardvault dev on a local pg_auto_failover cluster (monitor, primary, 2 synchronous standbys under .cardvault-ha/); ARGS='…' adds dev flags
	$(GO) build -o bin/hadev ./cmd/cardvault/internal/hacluster/hadev
	bin/hadev --dir $(HA_DIR) --vault bin/cardvault -- $(ARGS)

ha-test: ha-check ## Fail the database over 3 ways under load (switchover, SIGKILL, failing disk); ~2 min; prints the unavailability of each
	$(GO) test -tags ha -count=1 -v -run '^TestHA' -timeout 15m ./cmd/cardvault/internal/hacluster/

fmt: ## Fail if any Go file needs gofmt
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

clean: ## Remove bin/, the dev database (.cardvault-dev/) and the HA cluster (.cardvault-ha/), and their /tmp copies when run as root
	@pidfile=$(HA_DIR)/pg/monitor/pgdata/postmaster.pid; \
	if [ -f "$$pidfile" ] && kill -0 "$$(head -1 "$$pidfile")" 2>/dev/null; then \
		echo "clean: the HA cluster in $(HA_DIR) is running; stop make ha first (Ctrl-C)" >&2; exit 1; \
	fi
	@for f in $(DEV_DIR)/relocated-to $(HA_DIR)/pg/relocated-to; do \
		[ -f "$$f" ] || continue; \
		d=$$(cat "$$f"); \
		case "$$d" in /tmp/cardvault-[0-9a-f]*) case "$$d" in */..*) ;; *) rm -rf -- "$$d";; esac;; esac; \
	done
	rm -rf bin $(DEV_DIR) $(HA_DIR)
