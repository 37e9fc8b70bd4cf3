"""Benchmark: how long Snakemake takes to plan the real workflow for large cohorts.

Run:  .venv/bin/python bench/bench_dag_scale.py [--sizes 20 200 2000] [--repeats 3] [--render]
      .venv/bin/python bench/bench_dag_scale.py --sizes 2000 --scheduler-sizes 2000 --batch-sizes 20000 --batches 2
      .venv/bin/python bench/bench_dag_scale.py --count-comparisons 500 2000 [--snakefile OLD/Snakefile --label NAME]
Writes bench/results/dag_scale.md and bench/results/dag_scale.json.

For each cohort size N a scratch project is made in a temporary folder: the
default config (config/config.yaml) with a synthetic patient table of N patients
(80 % paired_train, 20 % paired_test; raw CT and MR as NIfTI paths) and an empty
placeholder file for each raw scan (planning only checks that inputs exist; it
never reads them). Then the real Snakefile is planned with a dry run,
``snakemake -n --quiet rules``, timed from process start to exit (wall time,
includes Python and Snakemake start-up, config validation, reading the patient
table and building the DAG, and formatting every planned job for the dry-run listing).
Targets: N=200 in <= 10 s, N=2000 in <= 15 s, N=20000 in <= 120 s (issue 11).

Also recorded: the time a real run takes until its first job starts
(``snakemake --cores 1``, up to the first job's start line; the empty placeholder
scans then fail that job at once and the run stops): planning as a user waits for it,
without the dry run's listing of every job.

Snakemake's own floor, measured in the same run: a trivial workflow with the same number
and shape of jobs (one touch rule per rule of the real DAG: the same output, log and
benchmark files per job, the same inputs, so the same edges; generated from the real
workflow's full dry run at the smallest size, :func:`floor_snakefile`) is planned by the same
command right after each ct2mr dry run. Reported: CPU seconds of each process (user + system,
of the child: the machine is shared, wall time depends on the other users) and the ratio
ct2mr / floor (issue 23: <= 1.3 at 2000 patients).

Sharding (``--batch-sizes 20000 --batches 2``): the dry run of each batch of
``snakemake --batch patient_slices=i/k patient_slices`` (the Snakefile's aggregate of every
patient's slice file: one shard preprocesses 1/k of the patients), CPU and wall.

Scheduler (``--scheduler-sizes 2000``): time until the first job starts in a real run
(``--cores 1``) and the process's CPU seconds, with Snakemake's default scheduler (ilp) and with
``--scheduler greedy`` (profiles/slurm sets it).

Also recorded: jobs planned (total and per rule), the peak resident memory of
the snakemake process, and the files one patient adds (declared outputs of its
jobs, and their log and benchmark files), counted from a full dry run at the
smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_dag_scale)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402

#: issue 11: 2000 patients planned in <= 15 s, 20 000 in <= 120 s (the first issue's: 200 in 10 s)
TARGETS_S = {200: 10.0, 2000: 15.0, 20000: 120.0}
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: the workflow planned (``--snakefile``: e.g. an older tree's, to compare)
SNAKEFILE = REPO / "Snakefile"


def workflow_args(root: Path) -> list[str]:
    """The Snakefile, working directory and config of the scratch project in ``root``."""
    return ["--snakefile", str(SNAKEFILE), "--directory", str(root), "--configfile", str(root / "config.yaml")]


def make_project(root: Path, n: int) -> Path:
    """Config, patient table and empty raw placeholders for ``n`` patients under ``root``."""
    rows = ["patient\trole\tct\tmr\ttruth"]
    for i in range(1, n + 1):
        pid = f"P{i:05d}"
        role = "paired_test" if i % 5 == 0 else "paired_train"
        raw = root / "raw" / pid
        raw.mkdir(parents=True)
        for name in ("ct.nii.gz", "mr.nii.gz"):
            (raw / name).touch()
        rows.append(f"{pid}\t{role}\traw/{pid}/ct.nii.gz\traw/{pid}/mr.nii.gz\t")
    (root / "patients.tsv").write_text("\n".join(rows) + "\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["patients"] = "patients.tsv"
    # no ct_only / mr_only rows: the cycle variants draw their unpaired slices from the paired patients
    config["training"]["unpaired_includes_paired"] = True
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cpu_s() -> float:
    """CPU seconds (user + system) of the waited-for children of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def dry_run(root: Path, *args: str, dry: bool = True, snakefile: Path | None = None) -> tuple[float, float, str]:
    """Run snakemake (a dry run unless ``dry`` is False) in ``root`` (``snakefile``: another
    workflow, e.g. the floor); returns (wall seconds, peak RSS MB of the children so far, log).
    The CPU seconds of the run: :data:`LAST_CPU_S` (set by each call)."""
    global LAST_CPU_S
    cmd = [*SNAKEMAKE, *workflow_args(root), *(["-n"] if dry else []), *args]
    if snakefile is not None:
        cmd[cmd.index("--snakefile") + 1] = str(snakefile)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    c0 = cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    LAST_CPU_S = cpu_s() - c0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    # ru_maxrss of children is the max over all waited-for children (kB on Linux)
    return wall, max(after, before) / 1024, proc.stdout + proc.stderr


#: CPU seconds of the last :func:`dry_run` / :func:`time_to_first_job` process
LAST_CPU_S = float("nan")

JOB_START = re.compile(r"^\[\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}\]$")


def time_to_first_job(root: Path, *args: str) -> float:
    """Seconds from starting a real ``snakemake --cores 1 ARGS`` run until it starts its first job
    (the process's CPU seconds, to its exit: :data:`LAST_CPU_S`)."""
    global LAST_CPU_S
    cmd = [*SNAKEMAKE, *workflow_args(root), "--cores", "1", *args]
    c0 = cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and JOB_START.match(line.strip()):
            first = time.perf_counter() - t0
    proc.wait()
    LAST_CPU_S = cpu_s() - c0
    if first is None:
        raise RuntimeError("no job started")
    return first


# --------------------------------------------------------------------------- Snakemake's own floor
#: one job of a full dry-run listing
BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", re.M)


def parse_jobs(log: str) -> list[dict]:
    """Jobs of a full dry-run listing: rule, input, output, log, benchmark, wildcards."""
    jobs = []
    for m in BLOCK.finditer(log):
        job = {"rule": m.group(1), "local": m.group(0).startswith("localrule"), "wildcards": {}}
        for line in m.group(2).splitlines():
            key, _, value = line.strip().partition(": ")
            if key in ("input", "output", "log", "benchmark"):
                job[key] = value.split(", ") if value else []
            elif key == "wildcards":
                job["wildcards"] = dict(kv.split("=", 1) for kv in value.split(", "))
        jobs.append(job)
    return jobs


def template(path: str, wildcards: dict[str, str]) -> str:
    """``path`` with the job's wildcard values put back as ``{name}`` (longest value first)."""
    for name, value in sorted(wildcards.items(), key=lambda kv: -len(kv[1])):
        edge = "0-9" if value.isdigit() else "A-Za-z0-9"
        path = re.sub(rf"(?<![{edge}]){re.escape(value)}(?![{edge}])", "{" + name + "}", path)
    return path


#: the synthetic patients' ids (make_project)
PATIENT_ID = re.compile(r"P\d{5}")


def floor_snakefile(log: str, test_ids: set[str], all_ids: set[str]) -> str:
    """A trivial Snakefile planning the same DAG as the workflow whose full dry run is ``log``
    (a cohort of make_project: ``all_ids``, of which ``test_ids`` are paired_test), for any
    cohort size: one rule per rule of the log, each job `touch`ing the same output and log files
    and writing the same benchmark; inputs by pattern (per-patient jobs) or, for the jobs
    that gather patients, expanded over the same patient set (all, test or train) read from
    the project's patient table with csv. No params, resources, conda envs, report flags or
    input functions beyond a dict lookup: what Snakemake itself costs for this DAG."""
    jobs = parse_jobs(log)
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for j in jobs:
        by_rule[j["rule"]].append(j)
    sets = {"all": all_ids, "test": test_ids, "train": all_ids - test_ids}
    out = [
        "import csv",
        "ROWS = list(csv.DictReader(open(config['patients']), delimiter='\\t'))",
        "SETS = {'all': [r['patient'] for r in ROWS],",
        "        'test': [r['patient'] for r in ROWS if r['role'] == 'paired_test'],",
        "        'train': [r['patient'] for r in ROWS if r['role'] != 'paired_test']}",
        "wildcard_constraints:",
        "    patient='[A-Za-z0-9][A-Za-z0-9_.-]*',",
        "",
    ]
    order = sorted(by_rule, key=lambda r: r != "all")
    for rule in order:
        rjobs = by_rule[rule]
        names = sorted(rjobs[0]["wildcards"])
        fields = {}
        for field in ("output", "log", "benchmark"):
            pats = [template(f, rjobs[0]["wildcards"]) for f in rjobs[0].get(field, [])]
            for j in rjobs:  # the pattern must give every job's files
                assert [p.format(**j["wildcards"]) for p in pats] == j.get(field, []), (rule, field, pats)
            fields[field] = pats
        # inputs: per job key (wildcards other than patient): patterns, and expand() over a patient set
        per_key: dict[tuple, list] = {}
        for j in rjobs:
            wc = j["wildcards"]
            key = tuple(wc[k] for k in names if k != "patient")
            items: list = []
            grouped: dict[str, set] = defaultdict(set)
            for f in j.get("input", []):
                ids = PATIENT_ID.findall(f)
                if ids and "patient" not in wc:
                    grouped[PATIENT_ID.sub("{patient}", f)].add(ids[0])
                else:
                    items.append(("lit", f, template(f, wc)))
            for pat, ids in grouped.items():
                name = next((n for n, s in sets.items() if s == ids), None)
                if name is None:  # a fixed choice (e.g. the first test patient): the same ids at any size
                    name = f"fixed{len(sets)}"
                    sets[name] = ids
                    out.insert(5, f"SETS[{name!r}] = {sorted(ids)!r}")
                items.append(("expand", pat, name))
            per_key[key] = items
        keys = list(per_key)
        templated = {k: [i[2] for i in items if i[0] == "lit"] for k, items in per_key.items()}
        fixed_patterns = all(i[0] == "lit" for k in keys for i in per_key[k]) and all(
            templated[k] == templated[keys[0]] for k in keys)
        lines = [f"rule {rule}:"]
        if rule == "all":
            lines.append("    default_target: True")
        if fixed_patterns:
            lines += ["    input:"] + [f"        {p!r}," for p in templated[keys[0]]] if templated[keys[0]] else []
        else:
            table = "{" + ", ".join(
                f"{k!r}: [" + ", ".join(
                    f"{i[1]!r}" if i[0] == "lit" else f"*expand({i[1]!r}, patient=SETS[{i[2]!r}])" for i in items
                ) + "]" for k, items in per_key.items()) + "}"
            var = f"IN_{rule.upper()}"
            lines = [f"{var} = {table}", ""] + lines
            keyexpr = "(" + "".join(f"w.{k}, " for k in names if k != "patient") + ")"
            lines += ["    input:", f"        {var}[()]," if not names else f"        lambda w: {var}[{keyexpr}],"]
        for field in ("output", "log", "benchmark"):
            if fields[field]:
                lines += [f"    {field}:"] + [f"        {p!r}," for p in fields[field]]
        cons = {k: sorted({j["wildcards"][k] for j in rjobs}) for k in names if k != "patient"}
        if cons:
            lines += ["    wildcard_constraints:"] + [
                f"        {k}={'|'.join(re.escape(v) for v in vals)!r}," for k, vals in cons.items()]
        if rjobs[0]["local"]:
            lines.append("    localrule: True")
        lines += ["    shell:", "        'touch {output} {log}'", ""]
        out += lines + [""]
    return "\n".join(out)


class _ReadyJob:
    """A stand-in for a ready job as the schedulers see it: one core, no temp input, priority 0."""

    def __init__(self, i: int) -> None:
        self.i = i
        self.scheduler_resources = {"_cores": 1, "_nodes": 1, "mem_mb": 1000, "runtime": 5}
        self.priority = 0
        self.input: list = []

    def __hash__(self) -> int:
        return self.i


def time_selection(ready: int, free_jobs: int = 100, subsample: int | None = None) -> list[dict]:
    """One round of Snakemake's job selection, as at the start of a SLURM run: ``ready`` ready jobs
    (2 per patient: prepare_ct and prepare_mr), ``free_jobs`` free slots (the profile's ``jobs``),
    with the greedy and the ILP scheduler, each also after ``subsample`` (``--scheduler-subsample``:
    the scheduler draws that many of the ready jobs first). CPU = this process + the CBC solver."""
    import logging
    import random

    from snakemake.scheduling import greedy, milp

    jobs = [_ReadyJob(i) for i in range(ready)]
    avail = {"_cores": sys.maxsize, "_nodes": free_jobs, "_job_count": free_jobs, "mem_mb": sys.maxsize}
    out = []
    for sub in (None, subsample):
        for name, mod in (("greedy", greedy), ("ilp", milp)):
            sched = mod.Scheduler(None, mod.SchedulerSettings(), logging.getLogger("bench"))
            c0, t0 = time.process_time() + cpu_s(), time.perf_counter()
            considered = random.Random(0).sample(jobs, sub) if sub and sub < ready else jobs
            selected = sched.select_jobs(considered, jobs, dict(avail), {})
            out.append({"ready_jobs": ready, "scheduler": name, "subsample": sub,
                        "selected": len(selected or ()), "cpu_s": round(time.process_time() + cpu_s() - c0, 3),
                        "wall_s": round(time.perf_counter() - t0, 3)})
    return out


def count_comparisons(root: Path) -> dict[str, int]:
    """One dry run under cProfile: Snakemake's file-path comparisons (``_IOFile.__eq__``) and all
    function calls. Counts, not times: they do not depend on the machine or its load, so they show
    how planning work grows with the cohort (linear, or quadratic)."""
    import pstats

    prof = root / "plan.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "snakemake", *workflow_args(root),
           "-n", "--quiet", "rules"]
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    stats = pstats.Stats(str(prof))
    eq = sum(v[1] for k, v in stats.stats.items()  # type: ignore[attr-defined]
             if k[0].replace(os.sep, "/").endswith("snakemake/io/__init__.py") and k[2] == "__eq__")
    return {"path_comparisons": int(eq), "function_calls": int(stats.total_calls)}  # type: ignore[attr-defined]


def job_stats(log: str) -> dict[str, int]:
    """The 'Job stats' table -> {rule: count}, 'total' included."""
    m = re.search(r"job\s+count\n\s*-+\s+-+\n(.*?\ntotal\s+\d+)", log, re.S)
    if not m:
        raise RuntimeError(f"no job stats in:\n{log[-2000:]}")
    return {k: int(v) for k, v in (ln.split() for ln in m.group(1).strip().splitlines())}


def files_of_patient(log: str, patient: str) -> dict[str, int]:
    """Declared output, log and benchmark files of the jobs of one patient in a full dry-run log."""
    counts = {"outputs": 0, "logs": 0, "benchmarks": 0, "jobs": 0}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        if not re.search(rf"^\s+wildcards: .*\bpatient={re.escape(patient)}\b", block, re.M):
            continue
        counts["jobs"] += 1
        for key, field in (("outputs", "output"), ("logs", "log"), ("benchmarks", "benchmark")):
            m = re.search(rf"^\s+{field}: (.*)$", block, re.M)
            if m:
                counts[key] += len(m.group(1).split(", "))
    return counts


def render(result: dict) -> None:
    """Write bench/results/dag_scale.md from the result dict (also: --render, from the JSON)."""
    rows = result["rows"]
    per_patient = result["files_per_patient"]
    sizes = [r["patients"] for r in rows]
    repeats = len(rows[0]["plan_wall_s_all"])
    big = rows[-1]
    per_job_ms = 1000 * (big["plan_wall_s"] - big["load_workflow_wall_s"]) / big["jobs_total"]
    commits = sorted({r["commit"] for r in rows if r.get("commit") and r["commit"] != result.get("commit")})
    lines = [
        "# DAG planning time vs cohort size",
        "",
        commit_line(result.get("commit", "unknown"))
        + (f" (rows measured earlier: {', '.join(commits)}; each row's commit in its last column)" if commits else ""),
        "",
        "`.venv/bin/python bench/bench_dag_scale.py` "
        f"(sizes {' '.join(map(str, sizes))}, {repeats} run(s) each, median).",
        f"Dry run of the real Snakefile: `{result['command']}`; wall time of the whole",
        "snakemake process (start-up, config validation, patient table, DAG).",
        f"Machine: {result['machine']['cpus']} CPUs, Python {result['machine']['python']}, "
        f"Snakemake {result['snakemake']}.",
        "",
        "Snakemake's floor: a generated trivial workflow with the same jobs (touch rules, the same outputs, "
        "logs, benchmark files and inputs per job; `floor_snakefile`), planned by the same command right after "
        "each ct2mr dry run. CPU = user + system seconds of the snakemake process (the machine is shared: "
        "CPU time depends far less on the other users than wall time). Issue 23's target: ct2mr / floor <= 1.3 "
        "at 2000 patients.",
        "",
        "| patients | jobs planned | plan CPU (s), median | floor CPU (s), median | ct2mr / floor (CPU) "
        "| plan wall time (s), median | min-max (s) | of which loading the workflow (s) | target (s) | met "
        "| real run: first job starts after (s) | peak RSS (MB) | load avg (1 min) before / at the end | measured |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:--:|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "**no**")
        tgt = "" if r["target_s"] is None else f"{r['target_s']:.0f}"
        cpu = (f"| {r['plan_cpu_s']:.2f} | {r['floor_cpu_s']:.2f} | **{r['ratio_cpu']:.2f}** " if "ratio_cpu" in r
               else "| | | (not measured) ")
        load = f"{r.get('load_average_1min_before', '')} / {r.get('load_average_1min', '')}".strip(" /")
        lines.append(f"| {r['patients']} | {r['jobs_total']} {cpu}| {r['plan_wall_s']:.2f} "
                     f"| {min(r['plan_wall_s_all']):.2f}-{max(r['plan_wall_s_all']):.2f} "
                     f"| {r['load_workflow_wall_s']:.2f} | {tgt} | {met} | {r.get('first_job_s', float('nan')):.1f} "
                     f"| {r['peak_rss_mb_max_so_far']:.0f} | {load} | {r.get('when', '')}"
                     f"{' (' + r['commit'] + ')' if r.get('commit') else ''} |")
    if per_patient:
        lines += [
            "",
            f"Files per patient ({per_patient['patient']}, from a full dry run): "
            f"{per_patient['jobs']} jobs, {per_patient['outputs']} declared outputs, "
            f"{per_patient['logs']} logs, {per_patient['benchmarks']} benchmark files.",
        ]
    lines += ["", f"Jobs per rule at N={big['patients']}: "
              + ", ".join(f"{k} {v}" for k, v in big["jobs_per_rule"].items()) + "."]
    lines += ["", "Loading the workflow = `snakemake --list-rules` (Snakefile, config validation, "
              "patient table; no DAG); the rest of the plan time is Snakemake building the DAG "
              f"and formatting every planned job ({per_job_ms:.1f} ms per job at N={big['patients']} on this machine)."]
    counts = result.get("comparisons") or []
    if counts:
        lines += ["", "Planning work counted, not timed (`--count-comparisons N ...`: one dry run under cProfile; "
                  "counts do not depend on the machine's load). Path comparisons = calls of Snakemake's "
                  "`_IOFile.__eq__`; they grew with the square of the cohort while every synthesis job was "
                  "checked against the training job's whole input list (before results/lists/, issue 11):", "",
                  "| workflow | patients | path comparisons | function calls |", "|---|---:|---:|---:|"]
        for c in counts:
            lines.append(f"| {c['workflow']} | {c['patients']} | {c['path_comparisons']:,} | {c['function_calls']:,} |")
    if result.get("batches"):
        lines += ["", "Sharding a large cohort with Snakemake's `--batch` (dry runs; "
                  "`snakemake --batch patient_slices=i/k patient_slices`: each batch plans the whole preprocessing "
                  "chain, 4 jobs, of 1/k of the patients; `--batch-sizes N --batches k`):", "",
                  "| patients | batch | jobs planned | plan CPU (s) | plan wall (s) | load avg (1 min) before | measured |",
                  "|---:|---|---:|---:|---:|---:|---|"]
        for b in result["batches"]:
            lines.append(f"| {b['patients']} | {b['batch']} | {b['jobs_total']} | {b['plan_cpu_s']:.1f} "
                         f"| {b['plan_wall_s']:.1f} | {b['load_average_1min']} | {b['when']} ({b['commit']}) |")
    if result.get("schedulers"):
        lines += ["", "Time to the first job of a real run (`snakemake --cores 1`, the scans are empty placeholders: "
                  "the first job fails at once and the run stops) with Snakemake's default scheduler (ilp) and with "
                  "`--scheduler greedy`; CPU = the whole process's (`--scheduler-sizes N`):", "",
                  "| patients | scheduler | first job starts after (s) | process CPU (s) | load avg (1 min) before "
                  "| measured |", "|---:|---|---:|---:|---:|---|"]
        for r in result["schedulers"]:
            lines.append(f"| {r['patients']} | {r['scheduler']} | {r['first_job_s']:.1f} | {r['process_cpu_s']:.1f} "
                         f"| {r['load_average_1min']} | {r['when']} ({r['commit']}) |")
    if result.get("selection"):
        lines += ["", "One round of job selection as at the start of a SLURM run (`--selection-sizes N`): 2 ready jobs "
                  "per patient (prepare_ct, prepare_mr), 100 free slots (the profile's `jobs: 100`), stand-in jobs; "
                  "Snakemake's schedulers called directly. The ILP (the default) solves with CBC (CPU includes it); "
                  "`--scheduler-subsample 1000` first draws 1000 of the ready jobs. A run selects again each time "
                  "slots free up. profiles/slurm sets `scheduler-subsample: 1000`.", "",
                  "| patients | ready jobs | scheduler | subsample | CPU (s) | wall (s) | load avg (1 min) | measured |",
                  "|---:|---:|---|---:|---:|---:|---:|---|"]
        for r in result["selection"]:
            lines.append(f"| {r['patients']} | {r['ready_jobs']} | {r['scheduler']} | {r['subsample'] or 'all'} "
                         f"| {r['cpu_s']:.2f} | {r['wall_s']:.2f} | {r['load_average_1min']} "
                         f"| {r['when']} ({r['commit']}) |")
    for note in result.get("notes", []):  # what a row alone does not say (kept across runs)
        lines += ["", note]
    lines += ["", "The machine is shared (2 cores): a concurrent CPU-heavy process can double these "
              "times; the JSON file keeps every run."]
    lines += ["", "Peak RSS is the largest resident set of any snakemake child so far "
              "(ru_maxrss of children), so it is an upper bound for the smaller sizes."]
    (RESULTS / "dag_scale.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    global SNAKEFILE  # --snakefile: the workflow every run of this process plans
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 2000],
                    help="cohort sizes (the issue's 20000 takes tens of minutes on 2 cores: pass it explicitly)")
    ap.add_argument("--repeats", type=int, default=3, help="dry runs per size (median reported)")
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the recorded .json")
    ap.add_argument("--snakefile", type=Path, default=SNAKEFILE,
                    help="the Snakefile planned (default this tree's; e.g. a git worktree of an older commit)")
    ap.add_argument("--count-comparisons", type=int, nargs="+", metavar="N", default=[],
                    help="only count Snakemake's path comparisons and function calls of one dry run per size "
                         "(cProfile), added to the recorded .json under the --label")
    ap.add_argument("--label", default="this tree", help="the workflow's name in the comparison table")
    ap.add_argument("--batch-sizes", type=int, nargs="*", default=[], metavar="N",
                    help="cohort sizes whose --batch patient_slices=i/k dry runs are timed (e.g. 20000)")
    ap.add_argument("--batches", type=int, default=2, help="k of --batch patient_slices=i/k")
    ap.add_argument("--selection-sizes", type=int, nargs="+", metavar="N", default=[],
                    help="only time one round of job selection (greedy / ilp, with and without "
                         "--scheduler-subsample 1000) for N patients' ready jobs, added to the recorded .json")
    ap.add_argument("--scheduler-sizes", type=int, nargs="*", default=[], metavar="N",
                    help="cohort sizes whose time to the first job is measured with the ilp and greedy schedulers")
    args = ap.parse_args()
    SNAKEFILE = args.snakefile.resolve()
    if args.render:
        render(json.loads((RESULTS / "dag_scale.json").read_text()))
        return
    prov = provenance()
    if args.selection_sizes:
        recorded = json.loads((RESULTS / "dag_scale.json").read_text())
        rows = [r for r in recorded.get("selection", []) if r["patients"] not in args.selection_sizes]
        for n in args.selection_sizes:
            for r in time_selection(2 * n, subsample=1000):
                rows.append({"patients": n, **r, "load_average_1min": round(os.getloadavg()[0], 2),
                             "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": prov["commit"]})
                print(rows[-1], flush=True)
        recorded["selection"] = rows
        (RESULTS / "dag_scale.json").write_text(json.dumps(recorded, indent=2) + "\n")
        render(recorded)
        return
    if args.count_comparisons:
        recorded = json.loads((RESULTS / "dag_scale.json").read_text())
        for r in recorded.get("rows", []):  # rows measured by an earlier run keep that run's commit
            r.setdefault("commit", recorded.get("commit", "unknown"))
        recorded = {"commit": prov["commit"], "recorded": prov["recorded"],
                    **{k: v for k, v in recorded.items() if k not in ("commit", "recorded")}}
        counts = [c for c in recorded.get("comparisons", []) if c["workflow"] != args.label]
        with tempfile.TemporaryDirectory(prefix="ct2mr_dag_") as tmp:
            for n in args.count_comparisons:
                root = Path(tmp) / f"n{n}"
                root.mkdir()
                make_project(root, n)
                counts.append({"workflow": args.label, "patients": n, **count_comparisons(root),
                               "commit": prov["commit"]})
                print(counts[-1], flush=True)
        recorded["comparisons"] = counts
        (RESULTS / "dag_scale.json").write_text(json.dumps(recorded, indent=2) + "\n")
        render(recorded)
        return

    rows = []
    per_patient = None
    batches, schedulers = [], []
    with tempfile.TemporaryDirectory(prefix="ct2mr_dag_") as tmp:
        # the floor: generated from the real workflow's full dry run of a small cohort
        small = Path(tmp) / "floor_source"
        small.mkdir()
        make_project(small, 20)
        _, _, full = dry_run(small)
        table = [ln.split("\t") for ln in (small / "patients.tsv").read_text().splitlines()[1:]]
        floor = Path(tmp) / "floor.smk"
        floor.write_text(floor_snakefile(full, {r[0] for r in table if r[1] == "paired_test"}, {r[0] for r in table}))
        floor_stats = job_stats(dry_run(small, "--quiet", "rules", snakefile=floor)[2])
        if floor_stats != job_stats(full):
            raise RuntimeError(f"the floor plans other jobs: {floor_stats} vs {job_stats(full)}")
        for n in args.sizes:
            root = Path(tmp) / f"n{n}"
            root.mkdir()
            t0 = time.perf_counter()
            make_project(root, n)
            setup_s = time.perf_counter() - t0
            walls, cpus, floor_walls, floor_cpus, rss = [], [], [], [], 0.0
            load_before = round(os.getloadavg()[0], 2)
            for _ in range(args.repeats if n < 20000 else 1):  # one run of the largest: minutes
                wall, peak, log = dry_run(root, "--quiet", "rules")
                walls.append(wall)
                cpus.append(LAST_CPU_S)
                rss = max(rss, peak)
                # the floor right after, under the same load
                fwall, _, flog = dry_run(root, "--quiet", "rules", snakefile=floor)
                floor_walls.append(fwall)
                floor_cpus.append(LAST_CPU_S)
            stats = job_stats(log)
            if job_stats(flog)["total"] != stats["total"]:
                raise RuntimeError(f"N={n}: the floor plans {job_stats(flog)['total']} jobs, ct2mr {stats['total']}")
            first_job_s = time_to_first_job(root)
            # loading the workflow alone (Snakefile, config validation, patient table), no DAG
            parse_s = min(dry_run(root, "--list-rules", dry=False)[0] for _ in range(min(args.repeats, 2)))
            if per_patient is None:
                _, _, full = dry_run(root)
                per_patient = files_of_patient(full, "P00001")
                per_patient["patient"] = "P00001 (paired_train)"
            target = TARGETS_S.get(n)
            rows.append({
                "patients": n,
                "plan_wall_s": statistics.median(walls),
                "plan_wall_s_all": walls,
                "load_workflow_wall_s": parse_s,
                "target_s": target,
                "meets_target": None if target is None else statistics.median(walls) <= target,
                "jobs_total": stats["total"],
                "jobs_per_rule": {k: v for k, v in stats.items() if k != "total"},
                "plan_cpu_s": round(statistics.median(cpus), 2),
                "plan_cpu_s_all": [round(c, 2) for c in cpus],
                "floor_cpu_s": round(statistics.median(floor_cpus), 2),
                "floor_cpu_s_all": [round(c, 2) for c in floor_cpus],
                "floor_wall_s": round(statistics.median(floor_walls), 2),
                "ratio_cpu": round(statistics.median(cpus) / statistics.median(floor_cpus), 3),
                "load_average_1min_before": load_before,
                "peak_rss_mb_max_so_far": round(rss, 1),
                "first_job_s": round(first_job_s, 2),
                "setup_s": round(setup_s, 2),
                # other processes on the machine while it was measured (the 2 cores are shared)
                "load_average_1min": round(os.getloadavg()[0], 2),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "commit": prov["commit"],
            })
            print(f"N={n}: {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU, floor "
                  f"{statistics.median(floor_cpus):.2f} s CPU, {stats['total']} jobs", flush=True)
        for n in args.scheduler_sizes:  # time to the first job: default scheduler (ilp) vs greedy
            root = Path(tmp) / f"n{n}"
            if not root.is_dir():
                root.mkdir()
                make_project(root, n)
            for _ in range(args.repeats):
                for label, extra in (("ilp (default)", ()), ("greedy", ("--scheduler", "greedy"))):
                    load = round(os.getloadavg()[0], 2)
                    first = time_to_first_job(root, *extra)
                    schedulers.append({"patients": n, "scheduler": label, "first_job_s": round(first, 2),
                                       "process_cpu_s": round(LAST_CPU_S, 2), "load_average_1min": load,
                                       "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                       "commit": prov["commit"]})
                    print(schedulers[-1], flush=True)
        for n in args.batch_sizes:  # sharding: one dry run per batch of the patient_slices aggregate
            root = Path(tmp) / f"n{n}"
            if not root.is_dir():
                root.mkdir()
                make_project(root, n)
            slices = sorted(f"results/slices/P{i:05d}.npz" for i in range(1, n + 1))
            for i in range(1, args.batches + 1):
                if i == args.batches:  # the final batch runs only once the others' files exist: stand-ins
                    k, m = divmod(n, args.batches)
                    for f in slices[: (i - 1) * k + min(i - 1, m)]:
                        (root / f).parent.mkdir(parents=True, exist_ok=True)
                        (root / f).touch()
                load = round(os.getloadavg()[0], 2)
                wall, _, log = dry_run(root, "--quiet", "rules", "--batch", f"patient_slices={i}/{args.batches}",
                                       "patient_slices")
                batches.append({"patients": n, "batch": f"{i}/{args.batches}", "plan_wall_s": round(wall, 2),
                                "plan_cpu_s": round(LAST_CPU_S, 2), "jobs_total": job_stats(log)["total"],
                                "load_average_1min": load,
                                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                "commit": prov["commit"]})
                print(batches[-1], flush=True)

    result = {
        "commit": prov["commit"], "recorded": prov["recorded"],
        "benchmark": "dag_scale",
        "command": "snakemake -n --quiet rules (real Snakefile, default config, synthetic cohort)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "snakemake": subprocess.run([*SNAKEMAKE, "--version"], capture_output=True, text=True).stdout.strip(),
        "rows": rows,
        "files_per_patient": per_patient,
        "batches": batches,
        "schedulers": schedulers,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    if (RESULTS / "dag_scale.json").is_file():  # keep the recorded counts, and the rows of sizes not measured now
        recorded = json.loads((RESULTS / "dag_scale.json").read_text())
        result["comparisons"] = recorded.get("comparisons", [])
        result["notes"] = recorded.get("notes", [])
        # batches / schedulers: the sizes measured now replace the recorded ones
        result["selection"] = recorded.get("selection", [])
        for key, new_rows in (("batches", batches), ("schedulers", schedulers)):
            done = {r["patients"] for r in new_rows}
            result[key] = [r for r in recorded.get(key, []) if r["patients"] not in done] + new_rows
        measured = {r["patients"] for r in rows}
        kept = [dict(r, recorded_earlier=True, commit=r.get("commit", recorded.get("commit", "unknown")))
                for r in recorded.get("rows", []) if r["patients"] not in measured]
        result["rows"] = sorted(kept + rows, key=lambda r: r["patients"])
    (RESULTS / "dag_scale.json").write_text(json.dumps(result, indent=2) + "\n")

    render(result)
    print((RESULTS / "dag_scale.md").read_text())


if __name__ == "__main__":
    main()
