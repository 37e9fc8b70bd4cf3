"""Sharding a large cohort with Snakemake's own ``--batch`` over the Snakefile's `patient_slices` rule.

``snakemake --batch patient_slices=i/k patient_slices`` plans the preprocessing chain (prepare_ct,
prepare_mr, register, slices: four jobs per paired patient) of the i-th k-th of the patients in
sorted order, and nothing else; the final batch plans only its own patients once the earlier batches'
slice files exist. Planning time per batch at 20,000 patients: bench/results/dag_scale.md.
Two dry runs on a cohort of six placeholder patients (planning never reads a scan).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.workflow_helpers import make_planning_project, snakemake

PATIENTS = [f"P{i}" for i in range(1, 7)]


def _project(root: Path) -> None:
    """Six paired patients, every third held out."""
    make_planning_project(root, {pid: "paired_test" if i % 3 == 2 else "paired_train" for i, pid in enumerate(PATIENTS)})


def _planned(root: Path, batch: str) -> dict[str, set[str]]:
    """rule -> the patients of its jobs, in the dry run of one batch."""
    proc = snakemake(root, "-n", "--batch", f"patient_slices={batch}", "patient_slices")
    planned: dict[str, set[str]] = {}
    for rule, patient in re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: patient=(\S+)", proc.stdout, re.M):
        planned.setdefault(rule, set()).add(patient)
    return planned


def test_two_batches_shard_the_preprocessing_by_patient(tmp_path: Path) -> None:
    _project(tmp_path)
    first, second = set(PATIENTS[:3]), set(PATIENTS[3:])
    chain = {"prepare_ct", "prepare_mr", "register", "slices"}
    assert _planned(tmp_path, "1/2") == {rule: first for rule in chain}
    for pid in first:  # batch 1 done: its slice files exist
        (tmp_path / "results" / "slices").mkdir(parents=True, exist_ok=True)
        (tmp_path / "results" / "slices" / f"{pid}.npz").touch()
    assert _planned(tmp_path, "2/2") == {rule: second for rule in chain}
