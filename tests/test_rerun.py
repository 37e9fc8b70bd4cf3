"""Reruns of only what changed: dry runs on a finished tiny pipeline.

The finished pipeline is the session's ``tiny_run`` (tests/conftest.py: the whole
default DAG on the tiny phantom cohort, run once). Each test works on its own copy
(``shutil.copytree`` keeps modification times, and ``.snakemake/`` metadata is
keyed by paths relative to the working directory), changes one thing and asks
Snakemake, with its default rerun triggers (mtime, params, input, software-env,
code), which jobs it would run:

* nothing changed -> nothing;
* a training setting (``training.overrides.gamma_l1``) -> the four trainings and
  what uses the models (synthesis, evaluation, figures, tables), no preprocessing;
* a seed added to ``training.seeds`` -> the new seed's trainings and syntheses only;
* ``synthesis.tta`` -> synthesis and what follows, no training;
* the CT skull threshold -> CT masking of every CT patient, registration of every
  paired patient and what follows; nothing before masking, no MR masking;
* one test patient's raw CT replaced (one voxel changed, newer time) -> that
  patient's chain from ingest on, and what depends on it (its synthesis, the
  evaluation, figures); no job of another patient and no training (a test
  patient does not feed training).

Note: Snakemake 9 reruns for a newer input only when its content changed: for
inputs under ``--max-checksum-file-size`` (1 MB) it compares the checksum it
recorded, so a bare ``touch`` of a small raw scan plans nothing. That is why the
raw CT is rewritten with a changed voxel, as a corrected scan would be.

Jobs are read from the dry run's job blocks (``rule NAME:`` ... ``wildcards: k=v``),
not from its summary table, so the tests see which patient each job is for.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.workflow_helpers import snakemake, write_config

pytestmark = pytest.mark.slow

#: rules that run before the CT's job (its inputs, or independent of it)
BEFORE_MASKING = {"phantom_volume", "phantom_dicom", "phantom_truth"}
PREPROCESSING = BEFORE_MASKING | {
    "prepare_ct", "prepare_mr", "register", "slices", "slices_ct", "slices_mr", "slices_png", "slices_pool",
}
#: the tiny cohort (tests/data/tiny_patients.tsv)
CT_PATIENTS = {"T1", "T2", "T3", "T4"}
PAIRED = {"T1", "T2", "T3"}
TEST_PATIENT = "T3"
TEST_PATIENT_RAW_CT = "results/phantom/T3/ct.mha"

JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\s*$")


def parse_dry_run(text: str) -> list[tuple[str, dict[str, str]]]:
    """Jobs of a ``snakemake -n`` log: [(rule, {wildcard: value})], in log order."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        m = JOB_HEADER.match(line)
        if m:
            jobs.append((m.group(1), {}))
            continue
        if jobs and line.startswith("    wildcards: "):
            pairs = line.split(":", 1)[1].strip()
            jobs[-1][1].update(kv.split("=", 1) for kv in pairs.split(", ") if "=" in kv)
    return jobs


def planned(workdir: Path) -> list[tuple[str, dict[str, str]]]:
    """Jobs a dry run with Snakemake's default rerun triggers would run in ``workdir``."""
    proc = snakemake(workdir, "-n", "--rerun-triggers", "mtime", "params", "input", "software-env", "code")
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return []
    jobs = parse_dry_run(text)
    assert jobs, f"dry run planned jobs but none could be parsed:\n{text[-3000:]}"
    return jobs


def rules_of(jobs: list[tuple[str, dict[str, str]]]) -> set[str]:
    return {r for r, _ in jobs}


def patients_of(jobs: list[tuple[str, dict[str, str]]], rule: str) -> set[str]:
    return {w.get("patient") for r, w in jobs if r == rule}


@pytest.fixture
def finished(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished tiny pipeline (times and metadata kept)."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    return dst


def test_parse_dry_run_known_answer() -> None:
    log = (
        "Building DAG of jobs...\nJob stats:\njob  count\n---- -----\ningest 1\ntotal 2\n\n"
        "[Tue Nov 24 06:19:19 2026]\nrule ingest:\n    input: a\n    output: b\n    jobid: 3\n"
        "    reason: Updated input files: a\n    wildcards: patient=T3, modality=ct\n"
        "    resources: tmpdir=/tmp\n\n[Tue Nov 24 06:19:19 2026]\nlocalrule all:\n    input: b\n"
        "    jobid: 0\n"
    )
    assert parse_dry_run(log) == [("ingest", {"patient": "T3", "modality": "ct"}), ("all", {})]


def test_nothing_changed_plans_nothing(finished: Path) -> None:
    assert planned(finished) == []


def test_training_setting_reruns_training_and_after_only(finished: Path) -> None:
    write_config(finished, training={"overrides": {"gamma_l1": 50.0}})
    jobs = planned(finished)
    rules = rules_of(jobs)
    assert sum(r == "train" for r, _ in jobs) == 4, jobs  # paired, unpaired, mrgan, regression
    assert not rules & PREPROCESSING, f"preprocessing planned: {sorted(rules & PREPROCESSING)}"
    assert {"synthesize", "evaluate"} <= rules


def test_added_seed_trains_only_the_new_seed(finished: Path) -> None:
    write_config(finished, training={"seeds": [0, 1]})
    jobs = planned(finished)
    trained = [w for r, w in jobs if r == "train"]
    assert len(trained) == 4 and {w["seed"] for w in trained} == {"1"}, jobs
    synth = [w for r, w in jobs if r.startswith("synthesize")]
    assert len(synth) == 4 and {w["seed"] for w in synth} == {"1"}, jobs
    assert "evaluate" in rules_of(jobs) and not rules_of(jobs) & PREPROCESSING


def test_synthesis_tta_reruns_synthesis_and_after_only(finished: Path) -> None:
    write_config(finished, synthesis={"tta": True})
    jobs = planned(finished)
    rules = rules_of(jobs)
    assert sum(r.startswith("synthesize") for r, _ in jobs) == 4, jobs
    assert "train" not in rules and not rules & PREPROCESSING
    assert "evaluate" in rules


def test_skull_threshold_reruns_masking_and_after_for_every_patient(finished: Path) -> None:
    write_config(finished, skull_mask={"ct_skull_threshold_hu": 350})
    jobs = planned(finished)
    rules = rules_of(jobs)
    assert not rules & BEFORE_MASKING, f"stages before masking planned: {sorted(rules & BEFORE_MASKING)}"
    assert "prepare_mr" not in rules  # the MR masks do not use the CT threshold
    assert patients_of(jobs, "prepare_ct") == CT_PATIENTS
    assert patients_of(jobs, "register") == PAIRED
    assert CT_PATIENTS <= patients_of(jobs, "slices") | patients_of(jobs, "slices_ct")
    assert {"train", "synthesize", "evaluate"} <= rules


def test_changed_raw_ct_reruns_that_patients_chain_only(finished: Path) -> None:
    import SimpleITK as sitk

    raw = finished / TEST_PATIENT_RAW_CT
    assert raw.exists(), f"tiny cohort changed? {raw} missing"
    image = sitk.ReadImage(str(raw))
    index = tuple(s // 2 for s in image.GetSize())
    image[index] = image[index] + 1  # one voxel, +1 HU: a corrected scan
    sitk.WriteImage(image, str(raw))
    now = time.time() + 5  # safely newer than every output of the finished run
    os.utime(raw, (now, now))
    jobs = planned(finished)
    rules = rules_of(jobs)
    others = {(r, w.get("patient")) for r, w in jobs if w.get("patient") not in (None, TEST_PATIENT)}
    assert not others, f"jobs for other patients planned: {sorted(others)}"
    assert ("prepare_ct", {"patient": TEST_PATIENT}) in jobs
    assert ("prepare_mr", {"patient": TEST_PATIENT}) not in jobs
    for rule in ("prepare_ct", "register", "slices"):
        assert patients_of(jobs, rule) == {TEST_PATIENT}, (rule, jobs)
    assert "train" not in rules  # a test patient does not feed training
    assert {"phantom_volume", "phantom_dicom", "phantom_truth"}.isdisjoint(rules)
    assert "evaluate" in rules
