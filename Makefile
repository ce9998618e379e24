# One command each on a fresh Debian machine:
#   make demo   installs what it needs, then runs `emotf demo` (no EMhub, no GPU)
#   make test   installs what the tests need, then runs the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint system venv clean-venv

system:
	bash scripts/install-system-deps.sh

$(BIN)/emotf: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,cluster]"
	touch $(BIN)/emotf

venv: $(BIN)/emotf

demo: system venv
	$(BIN)/emotf demo

test: system venv
	bash tests/emhub/setup_server.sh
	bash tests/cluster/slurm_up.sh $(CURDIR)/.slurm-state || { [ "$$(id -u)" != 0 ] || { echo "SLURM did not start: as root (CI) this fails make test" >&2; exit 1; }; echo "SLURM could not start (not root): its test will be skipped, with the reason"; }
	EMOTF_REQUIRE_EMHUB=1 EMOTF_REQUIRE_SLURM=$${EMOTF_REQUIRE_SLURM:-$$([ "$$(id -u)" = 0 ] && echo 1)} $(BIN)/pytest -q -rs

lint: venv
	$(BIN)/ruff check emotf tests benchmarks
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
