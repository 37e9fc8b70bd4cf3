"""The SLURM profile on a real single-node SLURM cluster (marker ``slurm``).

The cluster (tests/slurm_cluster.py) is installed/started once per session and
stopped at the end; it needs root and Debian (apt), otherwise these tests skip
with the reason. Everything goes through ``snakemake --profile profiles/slurm``
with only test-speed overrides on the command line:

* ``--slurm-init-seconds-before-status-checks 2`` (default 40 s: too slow for a test),
* ``--max-threads 2`` and ``--cores 2`` (the test node has 2 CPUs: under a cluster
  executor ``--cores`` is the widest a group job may be),
* ``--set-resources train:gpu=0`` (the test node has no GPU: a job asking for one
  would never be scheduled; real clusters keep the GPU request).

Checks: every planned submission went through sbatch, and only those: one per
patient's preprocessing group (``group-components preprocess=N``: one per N
patients) plus one per job outside a group, counted from a dry run's job list;
inside each group job all of its patients' jobs ran (outputs, logs, the SLURM
log names them; ``SLURM_JOB_ID`` set inside the job); the outputs equal those of
a local run.
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
    "--cores", "2",
    "--set-resources", "train:gpu=0",
]
SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")


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


# Slow (~21 s): a real sbatch round trip. The SLURM plugin sleeps a fixed 5 s before each sbatch
# and polls squeue every 2 s (the test override), longer after a round where nothing finished;
# the two jobs themselves take under a second. This is the cheapest proof the profile submits.
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
# the real workflow, tiny cohort: each patient's preprocessing one sbatch, SLURM vs local
# --------------------------------------------------------------------------------
SNAKEFILE = REPO / "Snakefile"
#: an extra CT-only patient of the tiny cohort (the phantom rules write any patient)
EXTRA_PATIENT = "T6\tct_only\tresults/phantom/T6/ct.nii.gz\t\t\n"
#: a CT-only and an MR-only patient's whole preprocessing chain (phantom, ingest,
#: resample, masks, window, slices: 12 jobs), one group job = one sbatch each.
TINY_TARGETS = ["results/slices/T4.npz", "results/slices/T5.npz"]
#: three patients two to a job (`--group-components preprocess=2`): ceil(3 / 2) sbatch
TRIO_TARGETS = [*TINY_TARGETS, "results/slices/T6.npz"]
#: two CT-only patients two to a job: one sbatch (run for real)
PAIR_TARGETS = ["results/slices/T4.npz", "results/slices/T6.npz"]
#: volatile JSON fields (wall-clock measurements)
VOLATILE_KEYS = re.compile(r"(runtime|time|duration|elapsed|host|date|cpu_s)", re.I)
GROUP_HEADER = re.compile(r"^(?:\[[^\]]*\] )?Group job (\S+) ")
RULE_HEADER = re.compile(r"^( *)(?:\[[^\]]*\] )?(localrule|rule|checkpoint) (\w+):$")
JOB_FIELD = re.compile(r"^ +(output|log|wildcards): (.*)$")


def _tiny_workdir(path: Path) -> Path:
    from tests.workflow_helpers import make_tiny_workdir

    make_tiny_workdir(path)
    with open(path / "patients.tsv", "a") as fh:
        fh.write(EXTRA_PATIENT)
    return path


def _workflow_args(workdir: Path) -> list[str]:
    return ["--snakefile", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml")]


def planned_submissions(output: str) -> list[list[dict]]:
    """A dry run's job list -> one entry per sbatch it plans: the jobs of one group
    job, or a single job outside a group (local rules and target rules without
    output are not submitted). Each job: {rule, output: [...], log: [...], patient}.
    """
    subs: list[list[dict]] = []
    job: dict | None = None
    in_group = False
    for line in output.splitlines():
        if GROUP_HEADER.match(line):
            subs.append([])
            in_group, job = True, None
            continue
        m = RULE_HEADER.match(line)
        if m:
            indent, kind, rule = m.groups()
            nested = in_group and len(indent) > 0
            if not nested:
                in_group = False
            job = {"rule": rule, "output": [], "log": [], "patient": None, "local": kind == "localrule"}
            if nested:
                subs[-1].append(job)
            else:
                subs.append([job])
            continue
        m = JOB_FIELD.match(line)
        if m and job is not None:
            key, value = m.groups()
            if key == "wildcards":
                job["patient"] = dict(w.split("=", 1) for w in value.split(", ")).get("patient")
            else:
                job[key] = value.split(", ")
    # a single local job, or a rule without output (a target rule), is not submitted
    return [s for s in subs if len(s) > 1 or (not s[0]["local"] and s[0]["output"])]


def dry_run_submissions(workdir: Path, *args: str, targets: list[str]) -> list[list[dict]]:
    """The sbatch submissions a SLURM run of ``targets`` will make (see planned_submissions)."""
    res = subprocess.run(
        [*SNAKEMAKE, *targets, "--profile", str(SLURM_PROFILE), *TEST_OVERRIDES, "-n", *args,
         *_workflow_args(workdir)],
        capture_output=True, text=True, timeout=120, env=_env(),
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return planned_submissions(res.stdout + res.stderr)


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


def check_group_jobs(workdir: Path, planned: list[list[dict]], subs: list) -> None:
    """One sbatch per planned submission; inside each, all of its jobs ran: their
    outputs and logs exist and its SLURM log names each of them."""
    assert len(subs) == len(planned), (len(subs), [[j["rule"] for j in s] for s in planned])
    # which patients each group job's SLURM log ran jobs for
    ran: list[tuple[frozenset, int]] = []
    for _, _, log in subs:
        text = Path(log).read_text()
        assert Path(log).is_relative_to(workdir / ".snakemake" / "slurm_logs")
        patients = frozenset(re.findall(r"wildcards: patient=([^,\s]+)", text))
        ran.append((patients, len(set(re.findall(r"Finished jobid: (\S+) \(Rule: \w+\)", text)))))
    expected = [(frozenset(j["patient"] for j in s), len(s)) for s in planned]
    assert sorted(ran, key=lambda r: sorted(r[0])) == sorted(expected, key=lambda r: sorted(r[0])), (ran, expected)
    for job in (j for s in planned for j in s):
        for f in job["output"] + job["log"]:
            assert (workdir / f).exists(), f"{job['rule']} ({job['patient']}): {f} missing"


# Slow (~24 s): two patients' whole preprocessing as two group jobs through sbatch (the plugin's
# 5 s wait before each sbatch and its polling, plus ~8 s of preprocessing); the local reference
# is the session's tiny run, not a run of its own.
def test_tiny_pipeline_one_sbatch_per_patient_equals_local_run(
    slurm: slurm_cluster.SlurmCluster, tiny_run: Path, tmp_path: Path
) -> None:
    workdir = _tiny_workdir(tmp_path / "slurm_run")
    planned = dry_run_submissions(workdir, targets=TINY_TARGETS)
    # one group job per patient, holding all of that patient's jobs
    assert len(planned) == 2 and all(len({j["patient"] for j in s}) == 1 for s in planned), planned
    assert {j["rule"] for s in planned for j in s} >= {"phantom_volume", "prepare_ct", "slices_ct"}
    res, subs = run_slurm(workdir, *_workflow_args(workdir), targets=tuple(TINY_TARGETS), timeout=280)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{out[-5000:]}\n{slurm.logs()}"
    assert sum(job_count(out).values()) == sum(len(s) for s in planned)
    check_group_jobs(workdir, planned, subs)
    for _, _, log in subs:  # .snakemake/slurm_logs/group_preprocess_<its rules>/<SLURM job id>.log
        assert Path(log).parent.name.startswith("group_preprocess")
    # and produced the same files as the local run: every planned output, each equal to the local
    # run's. The local run is the session's tiny run (tests/conftest.py), which ran every job of these
    # targets with the same config (the extra patient T6 changes no job of T4 or T5) and, having made
    # the whole tiny DAG, holds more files than these targets'.
    produced = set(result_files(workdir))
    outputs = {str(Path(f).relative_to("results")) for s in planned for j in s for f in j["output"]}
    assert produced == {f for f in outputs if not {"logs", "benchmarks"} & set(Path(f).parts)}
    assert produced <= set(result_files(tiny_run))
    assert [f for f in differing_files(workdir, tiny_run) if f in produced] == []


# Slow (~46 s): three dry runs through the profile (the planning the test checks), then one real
# group job of two patients through sbatch, which runs both chains one after the other on one
# allocation; the plugin's fixed sbatch wait and polling come on top.
def test_group_components_two_patients_per_sbatch(slurm: slurm_cluster.SlurmCluster, tmp_path: Path) -> None:
    """`--group-components preprocess=2`: ceil(patients / 2) preprocessing submissions
    (planned for three patients; run for two: one sbatch running both chains)."""
    workdir = _tiny_workdir(tmp_path / "slurm_pairs")
    two = ["--group-components", "preprocess=2"]
    assert len(dry_run_submissions(workdir, targets=TRIO_TARGETS)) == 3
    trio = dry_run_submissions(workdir, *two, targets=TRIO_TARGETS)
    assert len(trio) == -(-3 // 2) == 2
    assert sorted(len({j["patient"] for j in s}) for s in trio) == [1, 2]
    planned = dry_run_submissions(workdir, *two, targets=PAIR_TARGETS)
    assert len(planned) == 1 and {j["patient"] for j in planned[0]} == {"T4", "T6"}
    res, subs = run_slurm(workdir, *_workflow_args(workdir), *two, targets=tuple(PAIR_TARGETS), timeout=280)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{out[-5000:]}\n{slurm.logs()}"
    check_group_jobs(workdir, planned, subs)


def test_planned_submissions_known_answer() -> None:
    out = """Job stats:
[Tue Dec  1 05:21:18 2026] Group job preprocess (jobs in lexicogr. order):
    [Tue Dec  1 05:21:18 2026]
    rule ingest:
        output: results/interim/T1/ct_ingested.nii.gz
        log: results/logs/ingest/T1_ct.log
        wildcards: patient=T1, modality=ct
Shell command: python -m ct2mr ingest

    [Tue Dec  1 05:21:18 2026]
    rule slices:
        output: results/slices/T1.npz
        log: results/logs/slices/T1.log
        wildcards: patient=T1
[Tue Dec  1 05:21:18 2026]
rule registration_table:
    input: results/preprocessed/T1/registration_qa.json
    output: results/report_tables/registration.html, results/report_tables/registration.tsv
    log: results/logs/report/registration.log
[Tue Dec  1 05:21:18 2026]
localrule report_local:
    output: results/x.txt
[Tue Dec  1 05:21:18 2026]
rule all:
    input: results/slices/T1.npz
"""
    subs = planned_submissions(out)
    assert [[j["rule"] for j in s] for s in subs] == [["ingest", "slices"], ["registration_table"]]
    assert subs[0][0]["patient"] == "T1" and subs[0][0]["log"] == ["results/logs/ingest/T1_ct.log"]
    assert subs[1][0]["output"] == ["results/report_tables/registration.html", "results/report_tables/registration.tsv"]


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
