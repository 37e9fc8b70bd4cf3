"""Shared test fixtures.

Real data lives in ``../shared/data`` beside the project root (never copied into
the repo); tests that need it use the ``shared_data`` fixture and skip cleanly
when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# `make test` runs the suite on two pytest-xdist workers (`-n 2`). Each test file stays on one
# worker (its module fixtures are built once), and the files of the workflow-level tests, which
# read the finished tiny run (`tiny_run`, session scope: made once per worker that uses it) or
# need the single-node SLURM cluster (one per machine), all go to one worker together.
# (xdist's own `--dist loadgroup` marks do nothing under pytest 9, whose node ids xdist can no
# longer suffix: hence a scheduler of our own.) tests/test_package_layout.py checks the list.
WORKFLOW_FILES = frozenset({
    "test_cross_validation", "test_docs", "test_quoted_paths", "test_report", "test_rerun",
    "test_rerun_scope", "test_retrain", "test_slurm", "test_workflow",
})
WORKFLOW_GROUP = "workflow-level tests"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Schedule whole test files, the workflow-level files as one unit (see WORKFLOW_FILES)."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkflowFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return WORKFLOW_GROUP if Path(path).stem in WORKFLOW_FILES else path

    return WorkflowFilesTogether(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is absent (a user's fresh clone)."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


# Slow by design (~50 s, the suite's largest single cost, paid once): the whole default DAG
# (phantom, preprocessing, four trainings, synthesis, evaluation, figures) on 5 tiny patients.
# Every workflow-level test (test_workflow, test_rerun, test_rerun_scope, test_retrain,
# test_report, test_docs, test_slurm) reads it or a copy of it instead of running its own.
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole default DAG, run once per session on the tiny phantom cohort.

    Returns the working directory (its ``results/`` holds every output). Tests that
    change files must work on a copy (``shutil.copytree``), not on this one.
    """
    from tests.workflow_helpers import make_tiny_workdir, snakemake

    workdir = tmp_path_factory.mktemp("tiny_run")
    make_tiny_workdir(workdir)
    snakemake(workdir, "--cores", "2")
    return workdir
