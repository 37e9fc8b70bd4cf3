"""The SLURM profile on a real single-node SLURM cluster (marker ``slurm``).

The cluster (tests/slurm_cluster.py) is installed/started once per session and
stopped at the end; it needs root and Debian (apt), otherwise these tests skip
with the reason. Everything goes through ``snakemake --profile profiles/slurm``
with only test-speed overrides on the command line:

* ``--slurm-init-seconds-before-status-checks 2`` (default 40 s: too slow for a test),
* ``--max-threads 2`` (the test node has 2 CPUs),
* ``--set-resources train:gpu=0`` (the test node has no GPU: a job asking for one
  would never be scheduled; real clusters keep the GPU request).

Checks: every job was submitted with sbatch (one "submitted with SLURM jobid"
line per job, one kept SLURM log per job, ``SLURM_JOB_ID`` set inside the job),
and the outputs equal those of a local run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slurm_cluster  # noqa: E402

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TEST_OVERRIDES = [
    "--slurm-init-seconds-before-status-checks", "2",
    "--max-threads", "2",
    "--set-resources", "train:gpu=0",
]
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")


def _env() -> dict[str, str]:
    """This interpreter's bin first on PATH, so `python` in rules is the project's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SLURM_JOB_ID", None)
    return env


@pytest.fixture(scope="session")
def slurm() -> slurm_cluster.SlurmCluster:
    reason = slurm_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = slurm_cluster.SlurmCluster()
    try:
        cluster.start()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"could not start a SLURM test cluster: {exc}")
    yield cluster
    cluster.stop()


def run_slurm(
    workdir: Path, *args: str, targets: tuple[str, ...] = (), timeout: float = 240
) -> tuple[subprocess.CompletedProcess, list]:
    """``snakemake TARGETS --profile profiles/slurm ARGS`` in ``workdir``; returns
    (result, submissions): (snakemake job id, SLURM job id, SLURM log path) per submitted job.

    Targets come first: options such as --configfile and --set-resources take
    several values and would swallow targets after them.
    """
    res = subprocess.run(
        [*SNAKEMAKE, *targets, "--profile", str(SLURM_PROFILE), *TEST_OVERRIDES, *args],
        cwd=workdir, capture_output=True, text=True, timeout=timeout, env=_env(),
    )
    return res, SUBMITTED.findall(res.stdout + res.stderr)


def job_count(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake log -> {rule: count} (without 'total')."""
    m = re.search(r"Job stats:\n\s*job\s+count\n\s*-+\s+-+\n(.*?)\n\s*total\s+(\d+)", output, re.S)
    assert m, "no Job stats table in the log"
    rows = dict(line.split() for line in m.group(1).strip().splitlines())
    return {k: int(v) for k, v in rows.items()}


TRIVIAL = r"""
PATIENTS = ["p1", "p2"]

rule all:
    input: expand("results/{patient}.txt", patient=PATIENTS)

rule per_patient:
    output: "results/{patient}.txt"
    log: "results/logs/{patient}.log"
    threads: 1
    resources: mem_mb=200, runtime=5
    shell:
        "python -c 'import hashlib; "
        "open(\"{output}\", \"w\").write(hashlib.sha256(b\"{wildcards.patient}\").hexdigest())'"
        " && echo ${{SLURM_JOB_ID:-none}} > {log}"
"""


def test_trivial_workflow_runs_through_sbatch(slurm: slurm_cluster.SlurmCluster, tmp_path: Path) -> None:
    """Cheap proof of the profile + cluster: two jobs, each its own sbatch, run inside SLURM."""
    (tmp_path / "Snakefile").write_text(TRIVIAL)
    res, subs = run_slurm(tmp_path, timeout=150)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{out[-4000:]}\n{slurm.logs()}"
    assert len(subs) == 2, out[-3000:]  # the two per_patient jobs; `all` is a local target rule
    for _, _, log in subs:
        assert Path(log).is_file(), f"SLURM log {log} not kept"
        assert Path(log).is_relative_to(tmp_path / ".snakemake" / "slurm_logs")
    # inside each job SLURM_JOB_ID was set, to the id sbatch returned for it
    inside = {(tmp_path / "results" / "logs" / f"{p}.log").read_text().strip() for p in ("p1", "p2")}
    assert inside == {s[1] for s in subs}
    for p in ("p1", "p2"):
        assert (tmp_path / "results" / f"{p}.txt").read_text() == hashlib.sha256(p.encode()).hexdigest()


def test_job_stats_parser_known_answer() -> None:
    log = ("Job stats:\njob            count\n-----------  -------\nall                1\n"
           "per_patient        3\ntotal              4\n\nSelect jobs")
    assert job_count(log) == {"all": 1, "per_patient": 3}


# --------------------------------------------------------------------------------
# the real workflow, tiny cohort: one patient's preprocessing, SLURM vs local
# --------------------------------------------------------------------------------
SNAKEFILE = REPO / "Snakefile"
#: one CT-only patient's whole preprocessing chain (6 jobs in 6 steps: phantom,
#: ingest, resample, CT masks, window, slices): about 100 s through SLURM here,
#: mostly the plugin's fixed 5 s wait before each sbatch and its status polling.
#: ["results/slices/T1.npz"] adds the MR chain and registration (13 jobs, ~190 s).
TINY_TARGETS = ["results/slices/T4.npz"]
#: volatile JSON fields (wall-clock measurements)
VOLATILE_KEYS = re.compile(r"(runtime|time|duration|elapsed|host|date)", re.I)


def _tiny_workdir(path: Path) -> Path:
    from tests.workflow_helpers import make_tiny_workdir

    make_tiny_workdir(path)
    return path


def _workflow_args(workdir: Path) -> list[str]:
    return ["--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml")]


def _strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: _strip_volatile(v) for k, v in obj.items() if not VOLATILE_KEYS.search(k)}
    if isinstance(obj, list):
        return [_strip_volatile(v) for v in obj]
    return obj


def result_files(workdir: Path) -> dict[str, Path]:
    """results/ files except logs and benchmarks (their content is run-specific)."""
    root = workdir / "results"
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(root).parts)
    }


def differing_files(a: Path, b: Path) -> list[str]:
    """Relative paths whose content differs between two runs (JSON: volatile keys ignored)."""

    fa, fb = result_files(a), result_files(b)
    diffs = sorted(set(fa) ^ set(fb))
    for rel in sorted(set(fa) & set(fb)):
        if rel.endswith(".json"):
            same = _strip_volatile(json.loads(fa[rel].read_text())) == _strip_volatile(json.loads(fb[rel].read_text()))
        else:
            same = hashlib.sha256(fa[rel].read_bytes()).digest() == hashlib.sha256(fb[rel].read_bytes()).digest()
        if not same:
            diffs.append(rel)
    return diffs


@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny targets run locally (the reference for the SLURM run)."""
    if not SNAKEFILE.is_file():
        pytest.skip("no Snakefile yet")
    workdir = _tiny_workdir(tmp_path_factory.mktemp("tiny_local"))
    res = subprocess.run(
        [*SNAKEMAKE, *TINY_TARGETS, *_workflow_args(workdir), "--cores", "2"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-5000:]
    return workdir


def test_tiny_pipeline_through_slurm_equals_local_run(
    slurm: slurm_cluster.SlurmCluster, tiny_local: Path, tmp_path: Path
) -> None:
    workdir = _tiny_workdir(tmp_path / "slurm_run")
    res, subs = run_slurm(workdir, *_workflow_args(workdir), targets=tuple(TINY_TARGETS), timeout=280)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{out[-5000:]}\n{slurm.logs()}"
    planned = job_count(out)
    # which rule each snakemake job id belongs to ("Finished jobid: 4 (Rule: ingest)")
    rule_of = dict(re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", out))
    submitted_rules: dict[str, int] = {}
    for jid, _, log in subs:
        submitted_rules[rule_of[jid]] = submitted_rules.get(rule_of[jid], 0) + 1
        assert Path(log).is_file(), f"SLURM log {log} missing"
        assert f"rule_{rule_of[jid]}" in Path(log).parts
    # every planned job went through sbatch, once
    assert submitted_rules == planned, (submitted_rules, planned)
    assert {"prepare_ct", "prepare_mr", "slices"} <= set(submitted_rules)
    # and produced the same files as the local run
    assert set(result_files(workdir)) == set(result_files(tiny_local))
    assert differing_files(workdir, tiny_local) == []


def test_differing_files_known_answer(tmp_path: Path) -> None:

    for name, rt, val in (("a", 1.0, 5), ("b", 2.0, 5)):
        d = tmp_path / name / "results"
        (d / "logs").mkdir(parents=True)
        (d / "logs" / "x.log").write_text(name)  # logs are ignored
        (d / "qa.json").write_text(json.dumps({"runtime_s": rt, "mi": val}))
        (d / "img.bin").write_bytes(b"\x00\x01")
    assert differing_files(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "results" / "img.bin").write_bytes(b"\x00\x02")
    (tmp_path / "b" / "results" / "extra.txt").write_text("x")
    assert differing_files(tmp_path / "a", tmp_path / "b") == ["extra.txt", "img.bin"]
