"""The Snakemake profiles in profiles/: valid option names, and the behaviour they promise.

* Every key of profiles/*/config.yaml is a long option of the installed Snakemake
  (9.x, with the SLURM executor plugin), so a typo cannot silently do nothing.
* Workstation: the `gpu` resource lets only one GPU job run at a time
  (`resources: gpu=1`), `--resources gpu=2` lets two run together, and a job
  that fails once is tried again (`restart-times: 1`). Checked by running a
  throwaway workflow in tmp_path through the profile.
* SLURM: the options the plugin 2.6.1 needs to work without slurmdbd
  (`slurm-status-command: squeue`), logs kept, and per-rule settings naming rules
  the workflow has. The real submission test is tests/test_slurm.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ct2mr.pipeline.cluster_resources import RULE_RESOURCES

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SNAKEFILE = REPO / "Snakefile"


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@pytest.fixture(scope="module")
def snakemake_options() -> set[str]:
    """Long option names (without --) that this Snakemake accepts, plugins included."""
    res = subprocess.run([*SNAKEMAKE, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]+)", res.stdout))


@pytest.mark.parametrize("name", ["workstation", "slurm"])
def test_profile_keys_are_snakemake_options(name: str, snakemake_options: set[str]) -> None:
    cfg = profile(name)
    assert isinstance(cfg, dict) and cfg
    unknown = set(cfg) - snakemake_options
    assert not unknown, f"profiles/{name}: not Snakemake options: {sorted(unknown)}"


def test_option_check_rejects_a_typo(snakemake_options: set[str]) -> None:
    assert "latency-wait" in snakemake_options and "slurm-status-command" in snakemake_options
    assert "latency_wait" not in snakemake_options and "slurm-status-cmd" not in snakemake_options


def test_workstation_profile_settings() -> None:
    cfg = profile("workstation")
    assert "gpu=1" in cfg["resources"]
    assert cfg["restart-times"] == 1
    assert cfg["rerun-incomplete"] is True
    assert "executor" not in cfg or cfg["executor"] == "local"
    # the profile must work without conda (CI, `make demo`): the user adds --sdm conda
    assert "software-deployment-method" not in cfg and "use-conda" not in cfg


def test_slurm_profile_settings() -> None:
    cfg = profile("slurm")
    assert cfg["executor"] == "slurm"
    # no slurmdbd needed; the plugin 2.6.1 accepts exactly these two values
    assert cfg["slurm-status-command"] in {"squeue", "sacct"}
    assert cfg["slurm-status-command"] == "squeue"
    assert cfg["slurm-keep-successful-logs"] is True
    # a large cohort's job selection considers 1000 ready jobs per round, not all of them
    # (bench/results/dag_scale.md, "One round of job selection")
    assert cfg["scheduler-subsample"] == 1000 and "scheduler" not in cfg
    assert cfg["latency-wait"] >= 30
    assert int(cfg["default-resources"]["runtime"]) > 0
    assert int(cfg["default-resources"]["mem_mb"]) > 0
    # --gres/--gpus in slurm_extra are rejected by the plugin: GPUs go through `gpu`
    for rule, res in (cfg.get("set-resources") or {}).items():
        extra = str((res or {}).get("slurm_extra", ""))
        assert "--gres" not in extra and "--gpus" not in extra, rule


def test_slurm_profile_rules_exist_in_workflow() -> None:
    names = set()
    for smk in [SNAKEFILE, *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        names |= set(re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", smk.read_text(), re.M))
    listed = set(profile("slurm").get("set-resources") or {})
    assert listed <= names, f"set-resources for rules the workflow lacks: {sorted(listed - names)}"


# --------------------------------------------------------------------------------
# behaviour of the workstation profile, on a throwaway workflow
# --------------------------------------------------------------------------------
GPU_WORKFLOW = r'''
rule all:
    input: expand("out/{i}.txt", i=range(3))

rule gpu_job:
    output: "out/{i}.txt"
    log: "logs/{i}.log"
    threads: 1
    resources: mem_mb=100, gpu=1
    shell:
        "python -c 'import time; t=time.time(); time.sleep(1.0); "
        "open(\"{output}\", \"w\").write(str(t) + \" \" + str(time.time()))' > {log} 2>&1"
'''

FLAKY_WORKFLOW = r'''
rule flaky:
    output: "done.txt"
    log: "flaky.log"
    threads: 1
    resources: mem_mb=100
    shell:
        "if [ -e attempted ]; then echo ok > {output}; else touch attempted; exit 1; fi"
'''


def _run(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--profile", str(PROFILES / "workstation"), "--cores", "2", *extra],
        cwd=workdir, capture_output=True, text=True, timeout=120,
    )


def _intervals(workdir: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, p.read_text().split())) for p in sorted((workdir / "out").glob("*.txt"))]


def _max_overlap(iv: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in iv] + [(e, -1) for _, e in iv])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


# Slow (~9 s): two real runs of a three-job workflow whose jobs sleep, so that their overlap in
# time (one at a time with gpu=1, two with gpu=2) can be measured.
def test_workstation_gpu_resource_limits_concurrency(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        (d / "Snakefile").write_text(GPU_WORKFLOW)
    res = _run(one)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(_intervals(one)) == 3
    assert _max_overlap(_intervals(one)) == 1, _intervals(one)  # gpu=1: one at a time
    res = _run(two, "--resources", "gpu=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert _max_overlap(_intervals(two)) == 2, _intervals(two)  # 2 GPUs, 2 cores: two at once


def test_overlap_counter_known_answer() -> None:
    assert _max_overlap([(0, 1), (1.5, 2), (3, 4)]) == 1
    assert _max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2


def test_workstation_profile_retries_a_failed_job_once(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(FLAKY_WORKFLOW)
    res = _run(tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "done.txt").read_text().strip() == "ok"
    # without the profile's restart-times the same job fails
    (tmp_path / "done.txt").unlink()
    (tmp_path / "attempted").unlink()
    res = _run(tmp_path, "--restart-times", "0")
    assert res.returncode != 0 and not (tmp_path / "done.txt").exists()


@pytest.mark.parametrize("name", ["workstation", "slurm"])
def test_profile_plans_the_real_workflow(name: str, tmp_path: Path) -> None:
    """A dry run of the real workflow (tiny cohort) through each profile."""
    from tests.workflow_helpers import make_tiny_workdir

    make_tiny_workdir(tmp_path)
    res = subprocess.run(
        [*SNAKEMAKE, "--profile", str(PROFILES / name), "--snakefile", str(SNAKEFILE),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "-n"],
        capture_output=True, text=True, timeout=120,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert f"Using profile {PROFILES / name}" in out
    # the resources reach the jobs: the rule's own (ct2mr.pipeline.cluster_resources; under slurm
    # the preprocessing jobs are listed inside their patient's group job, indented)
    def resources(rule: str) -> str:
        m = re.search(rf"rule {rule}:\n(?: +.*\n)*? +resources: (.*)", out)
        assert m, f"no {rule} job planned:\n{out[-3000:]}"
        return m.group(1)

    for rule in ("register", "prepare_ct"):
        assert f"runtime={RULE_RESOURCES[rule].runtime}" in resources(rule)
    if name == "slurm":
        assert "runtime=1440" in resources("train")
        assert "Group job preprocess" in out
    assert f"mem_mb={RULE_RESOURCES['prepare_ct'].mem_mb}" in resources("prepare_ct")  # not the profile default
