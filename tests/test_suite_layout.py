"""The suite's own layout: which test files run together on one pytest-xdist worker."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import WORKFLOW_FILES

TESTS = Path(__file__).resolve().parent


def test_workflow_files_are_the_files_that_need_the_tiny_run_or_slurm() -> None:
    """A test file that reads `tiny_run` or starts the SLURM cluster must be in WORKFLOW_FILES
    (else a second worker builds the tiny run again, or stops the cluster under the other's
    jobs); a file listed there that needs neither only unbalances the two workers."""
    needs = {
        p.stem for p in TESTS.glob("test_*.py") if p.stem != Path(__file__).stem
        if "tiny_run" in p.read_text() or "slurm_cluster" in p.read_text()
    }
    assert needs == set(WORKFLOW_FILES)
