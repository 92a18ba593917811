# The only two set-up commands a user needs: `make test` and `make demo`.
# Both create .venv and install everything (apt packages included) on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench-ledger clean system-deps

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/symphony demo

bench-ledger: $(STAMP)
	$(BIN)/symphony bench ledger

# py-libp2p compiles fastecdsa, which needs gcc and the GMP headers.
system-deps:
	@if ! dpkg -s libgmp-dev >/dev/null 2>&1; then \
		echo "installing libgmp-dev (needed to build fastecdsa for py-libp2p)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q libgmp-dev gcc; \
	fi

$(STAMP): pyproject.toml | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) bench-results .pytest_cache
