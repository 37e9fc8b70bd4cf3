# ct2mr: the two commands a user needs are `make demo` and `make test`.
# Both reuse the virtual environment built by the `venv` target (.venv/).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 2
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --printshellcmds

.PHONY: venv demo test lint dryrun report bench clean

venv: $(STAMP)

# torch is installed first, on its own: a bare `torch` requirement would pull
# several GB of CUDA wheels. GPU users: see README "GPU".
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Whole pipeline on the embedded phantom cohort (config/config.yaml), then the report.
demo: $(STAMP)
	$(SNAKEMAKE)
	$(SNAKEMAKE) --report results/report.html
	@echo "Report: results/report.html"

# TEST_WORKERS: pytest-xdist workers (2 by default, the CI's cores; 0 runs in one process).
# Each test file stays on one worker; the workflow-level test files share one (tests/conftest.py).
# PYTEST_ARGS: extra pytest options, e.g. make test PYTEST_ARGS="--durations=15 -x"
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) $(PYTEST_ARGS)

# the rule files' format (snakefmt, pinned in pyproject.toml; settings in [tool.snakefmt])
# and Snakemake's own best-practice checks
lint: $(STAMP)
	$(BIN)/snakefmt --check Snakefile workflow/rules/
	$(BIN)/snakemake --lint

dryrun: $(STAMP)
	$(BIN)/snakemake -n

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf results .snakemake
