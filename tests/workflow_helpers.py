"""Run the real Snakefile on the tiny phantom cohort in a scratch working directory.

Used by the workflow, rerun and SLURM tests. The Snakefile is the repo's own; only
the working directory (results/, .snakemake/) and the config differ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
TINY_CONFIG = REPO / "tests" / "data" / "tiny_config.yaml"
TINY_PATIENTS = REPO / "tests" / "data" / "tiny_patients.tsv"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_tiny_workdir(workdir: Path, **overrides: dict) -> Path:
    """Create ``workdir`` with ``config.yaml`` (the tiny config, sections updated by
    ``overrides``) and ``patients.tsv``; returns the config path."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY_PATIENTS, workdir / "patients.tsv")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["patients"] = "patients.tsv"
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_planning_project(root: Path, roles: dict[str, str], **training: object) -> Path:
    """A planning-only project in ``root``: one row per ``{patient: role}`` (paired roles) with
    empty raw placeholders (planning never reads a scan), and the default config pointed at it,
    training the unpaired variants on the paired patients, with ``training`` keys updated.
    Returns the config path."""
    rows = ["patient\trole\tct\tmr"]
    for pid, role in roles.items():
        raw = root / "raw" / pid
        raw.mkdir(parents=True)
        for name in ("ct.nii.gz", "mr.nii.gz"):
            (raw / name).touch()
        rows.append(f"{pid}\t{role}\traw/{pid}/ct.nii.gz\traw/{pid}/mr.nii.gz")
    (root / "patients.tsv").write_text("\n".join(rows) + "\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["patients"] = "patients.tsv"
    config["training"].update({"unpaired_includes_paired": True, **training})
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_config(workdir: Path, **overrides: dict) -> Path:
    """Update sections of ``workdir/config.yaml`` in place."""
    path = workdir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``snakemake --snakefile REPO/Snakefile --directory workdir ARGS --configfile workdir/config.yaml``.

    ``--configfile`` comes last: it takes several values, so targets in ARGS after
    it would be read as config files.
    """
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    cmd = [
        *SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        *args, "--configfile", str(workdir / "config.yaml"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout[-6000:]}"
            f"\n--- stderr\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (empty when nothing is to be done)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", *args)
    counts: dict[str, int] = {}
    in_table = False
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                in_table = False
    return counts
