"""The Snakemake workflow: planning, lint, bad input at start-up, and the whole DAG end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.workflow_helpers import make_tiny_workdir, planned_jobs, snakemake

STAGES = {
    "phantom_volume", "phantom_dicom", "phantom_truth", "prepare_ct", "prepare_mr", "register",
    "slices", "slices_ct", "slices_mr", "train",
    "synthesize", "synthesize_cycle", "evaluate",
}


def test_dry_run_of_default_config_plans_every_stage(repo_root: Path, tmp_path: Path) -> None:
    # the default config, planned from a scratch directory so nothing in results/ interferes
    (tmp_path / "config").mkdir()
    for name in ("config.yaml", "patients.tsv"):
        (tmp_path / "config" / name).write_text((repo_root / "config" / name).read_text())
    import subprocess

    from tests.workflow_helpers import SNAKEMAKE

    proc = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
         "-n", "--quiet", "rules"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for stage in STAGES | {"fig_patient", "fig_metrics", "fig_losses"}:
        assert f"\n{stage} " in out, f"stage {stage} not planned:\n{out[-3000:]}"


def test_lint_is_clean(repo_root: Path) -> None:
    import subprocess

    from tests.workflow_helpers import SNAKEMAKE

    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Lints for" not in proc.stdout + proc.stderr


def test_rule_files_are_snakefmt_formatted(repo_root: Path) -> None:
    """`snakefmt --check` (the pinned version, pyproject.toml's [tool.snakefmt]) passes, as in `make lint`."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    assert exe, "snakefmt is not installed: it is a dev dependency (pip install -e '.[dev]')"
    files = ["Snakefile", *sorted(str(p.relative_to(repo_root)) for p in (repo_root / "workflow/rules").glob("*.smk"))]
    proc = subprocess.run([exe, "--check", *files], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"run `snakefmt Snakefile workflow/rules/`:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    pinned = next(d for d in __import__("tomllib").loads((repo_root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["dev"] if d.startswith("snakefmt=="))
    assert pinned.split("==")[1] in version, (pinned, version)


def test_snakefmt_check_fails_on_a_misformatted_rule(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    exe = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    bad = tmp_path / "bad.smk"
    bad.write_text("rule a:\n    output: 'x'\n    shell: 'touch {output}'\n")
    assert subprocess.run([exe, "--check", str(bad)], capture_output=True).returncode != 0


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


def test_seeds_are_a_dag_dimension(tmp_path: Path) -> None:
    """2 seeds x 4 variants: 8 training jobs, synthesis per seed, one evaluation over all."""
    make_tiny_workdir(tmp_path, training={"seeds": [0, 1], "variants": ["paired", "unpaired", "mrgan", "regression"]})
    jobs = planned_jobs(tmp_path)
    assert jobs["train"] == 8
    assert jobs["synthesize"] + jobs["synthesize_cycle"] == 8  # one test patient
    assert jobs["evaluate"] == 1 and jobs["fig_patient"] == 1  # Figures 5-7 of a patient: one job
    out = snakemake(tmp_path, "-n", "-p", "results/metrics/per_patient.tsv").stdout
    assert "--out-dir results/models/regression/seed1 " in out
    assert '\\"seed\\": 1' in out or '"seed": 1' in out  # the job's seed in its settings
    assert "--seeds 0 1 " in out


def test_paired_val_patients_are_scored_never_trained_on(tmp_path: Path) -> None:
    """A paired_val patient is preprocessed like a test patient and given to training as
    --val-slices only; synthesis.tta reaches the synthesis command."""
    make_tiny_workdir(tmp_path, training={"variants": ["mrgan", "regression"]}, synthesis={"tta": True})
    table = tmp_path / "patients.tsv"
    table.write_text(table.read_text() + "T6\tpaired_val\tresults/phantom/T6/ct.nii.gz\tresults/phantom/T6/mr.nii.gz\t\n")
    out = snakemake(tmp_path, "-n", "-p", "results/models/mrgan/seed0/syn_mr.pt",
                    "results/synth/regression/seed0/T3_mr.nii.gz").stdout
    train_cmds = [line for line in out.splitlines() if " train --variant " in line]
    assert len(train_cmds) == 2, out[-3000:]
    for cmd in train_cmds:  # the validation slices reach training as their own list file
        slices, val = cmd.split("--slices", 1)[1].split("--val-slices")
        assert val.split()[0] == "@results/lists/val_slices.txt" and "val_slices" not in slices
    lists = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.search(r"wildcards: name=(\w+)", block)
        if block.startswith(("rule file_list:", "localrule file_list:")) and m:
            lists[m.group(1)] = re.search(r"^\s+input: (.*)$", block, re.M).group(1).split(", ")
    assert lists["val_slices"] == ["results/slices/T6.npz"]
    for name in ("train_mrgan", "train_regression"):
        assert "results/slices/T6.npz" not in lists[name] and "results/slices/T3.npz" not in lists[name]
    assert "results/preprocessed/T6/registration_qa.json" in out  # preprocessed like paired_test
    assert any("synthesize" in line and "--tta" in line for line in out.splitlines())


def test_bad_patient_table_stops_the_workflow(tmp_path: Path) -> None:
    make_tiny_workdir(tmp_path)
    table = tmp_path / "patients.tsv"
    table.write_text(table.read_text() + "T1\tct_only\tresults/phantom/T1/ct.nii.gz\t\t\n")
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "duplicate patient id 'T1'" in proc.stderr + proc.stdout


@pytest.mark.slow
def test_a_deleted_report_file_is_made_again(tiny_run: Path, tmp_path: Path) -> None:
    """Every file the report shows (QA images, figures, tables, loss curves) is made again when it
    is deleted from a finished run. Snakemake regenerates a missing output only when something
    requests it, so each must be a target (or an input) of the plan, not only a job's side output."""
    import shutil

    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    results = work / "results"
    shown = [p for p in results.rglob("*") if p.suffix in (".png", ".html") or p.name == "losses.tsv"]
    shown = [p for p in shown if not p.name.startswith("report") and not {"phantom", "benchmarks", "logs"} & set(p.parts)]
    kinds: dict[str, Path] = {}
    for p in sorted(shown):  # one file per kind: patients, variants and seeds folded
        kind = re.sub(r"T\d+", "{patient}", str(p.relative_to(results)))
        kinds.setdefault(re.sub(r"(paired|unpaired|mrgan|regression)", "{variant}", kind), p)
    assert len(kinds) >= 10, sorted(kinds)
    assert planned_jobs(work) == {}
    for path in kinds.values():
        path.unlink()
    out = snakemake(work, "-n").stdout  # one plan: every job with its output files
    planned = {f for line in out.splitlines() if line.strip().startswith("output:")
               for f in line.split(":", 1)[1].strip().split(", ")}
    for kind, path in kinds.items():
        assert str(path.relative_to(work)) in planned, f"{kind}: deleted, and nothing plans to make it again"


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
    # four trained variants (one seed by default), synthesis and metrics
    for variant in ("paired", "unpaired", "mrgan", "regression"):
        assert (results / "models" / variant / "seed0" / "syn_mr.pt").is_file()
        assert (results / "synth" / variant / "seed0" / "T3_mr.nii.gz").is_file()
    assert not (results / "models" / "regression" / "seed0" / "syn_ct.pt").exists()
    per_patient = pd.read_csv(results / "metrics" / "per_patient.tsv", sep="\t")
    assert set(per_patient["variant"]) == {"paired", "unpaired", "mrgan", "regression"}
    assert set(per_patient["seed"]) == {0}
    assert (per_patient["patient"] == "T3").all()
    assert per_patient["mae"].between(0, 255).all()
    # nothing is left to do
    assert planned_jobs(tiny_run) == {}
