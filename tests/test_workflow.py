"""The Snakemake workflow: planning, lint, bad input at start-up, and the whole DAG end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.workflow_helpers import make_tiny_workdir, planned_jobs, snakemake

STAGES = {
    "phantom_volume", "phantom_dicom", "phantom_truth", "ingest", "resample", "skull_mask_ct",
    "skull_mask_mr", "register", "window_ct", "normalise_mr", "slices", "train",
    "synthesize", "synthesize_cycle", "evaluate",
}


def test_dry_run_of_default_config_plans_every_stage(repo_root: Path, tmp_path: Path) -> None:
    # the default config, planned from a scratch directory so nothing in results/ interferes
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "patients.tsv"):
        (tmp_path / "config" / name).write_text((repo_root / "config" / name).read_text())
    from tests.workflow_helpers import SNAKEMAKE
    import subprocess

    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
         "-n", "--quiet", "rules"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for stage in STAGES | {"fig_synthesis", "fig_variants", "fig_cycle", "fig_metrics", "fig_losses"}:
        assert f"\n{stage} " in out, f"stage {stage} not planned:\n{out[-3000:]}"


def test_lint_is_clean(repo_root: Path) -> None:
    import subprocess

    from tests.workflow_helpers import SNAKEMAKE

    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"registration": {"backend": "fsl"}}, "registration.backend: 'fsl' is not one of"),
        ({"window": {"ct_width_hu": "wide"}}, "window.ct_width_hu: 'wide' is not of type 'number'"),
        ({"slices": {"sizes": 256}}, "slices: unknown key(s) 'sizes'"),
    ],
)
def test_bad_config_stops_the_workflow_with_one_clear_message(tmp_path: Path, overrides: dict, words: str) -> None:
    make_tiny_workdir(tmp_path, **overrides)
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert words in proc.stderr + proc.stdout
    assert not (tmp_path / "results").exists()


def test_bad_patient_table_stops_the_workflow(tmp_path: Path) -> None:
    make_tiny_workdir(tmp_path)
    table = tmp_path / "patients.tsv"
    table.write_text(table.read_text() + "T1\tct_only\tresults/phantom/T1/ct.nii.gz\t\t\n")
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "duplicate patient id 'T1'" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_whole_dag_end_to_end(tiny_run: Path) -> None:
    results = tiny_run / "results"
    # preprocessing of every patient, with QA
    for patient in ("T1", "T2", "T3", "T4", "T5"):
        data = np.load(results / "slices" / f"{patient}.npz")
        key = "mr" if patient == "T5" else "ct"
        assert data[key].shape[1:] == (128, 128) and data[key].dtype == np.uint8
    for patient in ("T1", "T2", "T3"):
        qa = json.loads((results / "preprocessed" / patient / "registration_qa.json").read_text())
        # 2 mm voxels and a short schedule in the tiny config: within one voxel, far below the start
        assert qa["tre_mm"] is not None and qa["tre_mm"] < 2.0 < qa["tre_mm_before"]
        assert (results / "preprocessed" / patient / "registration_qa.png").stat().st_size > 1000
    # three trained variants, synthesis and metrics
    for variant in ("paired", "unpaired", "mrgan"):
        assert (results / "models" / variant / "syn_mr.pt").is_file()
        assert (results / "synth" / variant / "T3_mr.nii.gz").is_file()
    per_patient = pd.read_csv(results / "metrics" / "per_patient.tsv", sep="\t")
    assert set(per_patient["variant"]) == {"paired", "unpaired", "mrgan"}
    assert (per_patient["patient"] == "T3").all()
    assert per_patient["mae"].between(0, 255).all()
    # nothing is left to do
    assert planned_jobs(tiny_run) == {}
