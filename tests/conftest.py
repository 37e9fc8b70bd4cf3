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
