"""Benchmark: how long Snakemake takes to plan the real workflow for large cohorts.

Run:  .venv/bin/python bench/bench_dag_scale.py [--sizes 20 200 2000] [--repeats 3] [--render]
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


def dry_run(root: Path, *args: str, dry: bool = True) -> tuple[float, float, str]:
    """Run snakemake (a dry run unless ``dry`` is False) in ``root``;
    returns (wall seconds, peak RSS MB of the children so far, log)."""
    cmd = [*SNAKEMAKE, *workflow_args(root), *(["-n"] if dry else []), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"dry run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    # ru_maxrss of children is the max over all waited-for children (kB on Linux)
    return wall, max(after, before) / 1024, proc.stdout + proc.stderr


JOB_START = re.compile(r"^\[\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}\]$")


def time_to_first_job(root: Path) -> float:
    """Seconds from starting a real ``snakemake --cores 1`` run until it starts its first job."""
    cmd = [*SNAKEMAKE, *workflow_args(root), "--cores", "1"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and JOB_START.match(line.strip()):
            first = time.perf_counter() - t0
    proc.wait()
    if first is None:
        raise RuntimeError("no job started")
    return first


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
        "| patients | jobs planned | plan wall time (s), median | min-max (s) | of which loading the workflow (s) | target (s) | met | real run: first job starts after (s) | peak RSS (MB) | load avg (1 min) at the end | measured |",
        "|---:|---:|---:|---:|---:|---:|:--:|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "**no**")
        tgt = "" if r["target_s"] is None else f"{r['target_s']:.0f}"
        lines.append(f"| {r['patients']} | {r['jobs_total']} | {r['plan_wall_s']:.2f} "
                     f"| {min(r['plan_wall_s_all']):.2f}-{max(r['plan_wall_s_all']):.2f} "
                     f"| {r['load_workflow_wall_s']:.2f} | {tgt} | {met} | {r.get('first_job_s', float('nan')):.1f} "
                     f"| {r['peak_rss_mb_max_so_far']:.0f} | {r.get('load_average_1min', '')} | {r.get('when', '')}"
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
    args = ap.parse_args()
    SNAKEFILE = args.snakefile.resolve()
    if args.render:
        render(json.loads((RESULTS / "dag_scale.json").read_text()))
        return
    prov = provenance()
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
    with tempfile.TemporaryDirectory(prefix="ct2mr_dag_") as tmp:
        for n in args.sizes:
            root = Path(tmp) / f"n{n}"
            root.mkdir()
            t0 = time.perf_counter()
            make_project(root, n)
            setup_s = time.perf_counter() - t0
            walls, rss = [], 0.0
            for _ in range(args.repeats if n < 20000 else 1):  # one run of the largest: minutes
                wall, peak, log = dry_run(root, "--quiet", "rules")
                walls.append(wall)
                rss = max(rss, peak)
            stats = job_stats(log)
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
                "peak_rss_mb_max_so_far": round(rss, 1),
                "first_job_s": round(first_job_s, 2),
                "setup_s": round(setup_s, 2),
                # other processes on the machine while it was measured (the 2 cores are shared)
                "load_average_1min": round(os.getloadavg()[0], 2),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "commit": prov["commit"],
            })
            print(f"N={n}: {statistics.median(walls):.2f} s, {stats['total']} jobs", flush=True)

    result = {
        "commit": prov["commit"], "recorded": prov["recorded"],
        "benchmark": "dag_scale",
        "command": "snakemake -n --quiet rules (real Snakefile, default config, synthetic cohort)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "snakemake": subprocess.run([*SNAKEMAKE, "--version"], capture_output=True, text=True).stdout.strip(),
        "rows": rows,
        "files_per_patient": per_patient,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    if (RESULTS / "dag_scale.json").is_file():  # keep the recorded counts, and the rows of sizes not measured now
        recorded = json.loads((RESULTS / "dag_scale.json").read_text())
        result["comparisons"] = recorded.get("comparisons", [])
        result["notes"] = recorded.get("notes", [])
        measured = {r["patients"] for r in rows}
        kept = [dict(r, recorded_earlier=True, commit=r.get("commit", recorded.get("commit", "unknown")))
                for r in recorded.get("rows", []) if r["patients"] not in measured]
        result["rows"] = sorted(kept + rows, key=lambda r: r["patients"])
    (RESULTS / "dag_scale.json").write_text(json.dumps(result, indent=2) + "\n")

    render(result)
    print((RESULTS / "dag_scale.md").read_text())


if __name__ == "__main__":
    main()
