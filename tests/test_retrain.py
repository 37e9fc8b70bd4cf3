"""Retraining after a changed setting, through Snakemake, on a copy of the finished tiny run.

The issue this guards: with ``training.overrides: {lr: 0.0001}`` Snakemake deleted
the old model, then ``train`` refused the leftover ``checkpoint.pt`` ("belongs to
another run") and the user had to delete it by hand. Now the old checkpoint is
moved to ``superseded/`` (never deleted) and the job trains the new model; a job
of the new settings interrupted part-way resumes from its own checkpoint when
Snakemake runs again.

One variant (``paired``) is the target, to keep the test short; the interruption
is the train command Snakemake would run, stopped after 2 iterations with
``--max-iterations-this-run`` (a job killed after its first checkpoint).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.workflow_helpers import snakemake, write_config

pytestmark = pytest.mark.slow



def paired_model(run: Path) -> Path:
    """The paired variant's model folder in ``run`` (relative; the first one, whatever the layout)."""
    found = sorted((run / "results" / "models" / "paired").glob("**/syn_mr.pt"))
    assert found, f"no paired model in {run}"
    return found[0].parent.relative_to(run)


def train_command(run: Path, target: str) -> str:
    """The shell command of the paired training job a run of ``target`` would run (from ``-n -p``)."""
    proc = snakemake(run, target, "-n", "-p")
    for line in (proc.stdout + proc.stderr).splitlines():
        cmd = line.split("Shell command:", 1)[-1].strip()
        if cmd.startswith("python -m ct2mr") and " train " in cmd and "--variant paired " in cmd:
            return cmd
    raise AssertionError(f"no paired train command planned:\n{proc.stdout[-3000:]}")


# Slow (~8 s): a real retraining of the tiny paired model after a changed setting, killed and
# resumed, on a copy of the tiny run.
def test_changed_override_retrains_and_an_interrupted_job_resumes(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    model = paired_model(run)
    target = str(model / "syn_mr.pt")
    old = torch.load(run / model / "checkpoint.pt", weights_only=True)
    old_bytes = (run / model / "checkpoint.pt").read_bytes()
    write_config(run, training={"overrides": {"lr": 0.0001}})

    # a job of the new settings, interrupted after its first checkpoint
    cmd = train_command(run, target)
    cmd = cmd.replace("python -m ct2mr", f"{shlex.quote(sys.executable)} -m ct2mr", 1)
    cmd = cmd.replace(" train --variant", " train --max-iterations-this-run 2 --variant", 1)
    proc = subprocess.run(["bash", "-c", cmd], cwd=run, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (run / "results/logs/train/paired.log").read_text()[-3000:]
    aside = run / model / "superseded" / f"checkpoint.paired.{old['settings_hash']}.{old['data_hash']}.pt"
    assert aside.read_bytes() == old_bytes  # moved aside intact, not deleted
    partial = torch.load(run / model / "checkpoint.pt", weights_only=True)
    assert partial["trainer"]["iteration"] == 2 and partial["settings"]["lr"] == 0.0001
    assert not (run / model / "syn_mr.pt").exists()

    # Snakemake runs again: the train job resumes the new settings' checkpoint and finishes
    snakemake(run, target, "--cores", "2")
    log = (run / model / "train.log").read_text()
    assert "resuming paired" in log and "at iteration 2" in log, log[-2000:]
    info = json.loads((run / model / "model.json").read_text())
    assert info["settings"]["lr"] == 0.0001 and info["settings_hash"] == partial["settings_hash"]
    assert [p.name for p in (run / model / "superseded").iterdir()] == [aside.name]
    again = snakemake(run, target, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
