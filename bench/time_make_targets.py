"""Wall and CPU time of the two commands a user runs: ``make test`` and ``make demo``.

Usage (from the project root, venv built, machine otherwise idle)::

    .venv/bin/python bench/time_make_targets.py                 # both, test first
    .venv/bin/python bench/time_make_targets.py --targets test  # one

``make demo`` starts from nothing: ``make clean`` (results/ and .snakemake/ are
deleted) runs first, so do not point it at a checkout whose results you keep.
``make test`` runs with ``PYTEST_ARGS=--durations=15``: the 15 slowest test
phases are recorded beside the total. Writes ``bench/results/make_targets.json``
and ``.md`` (with the commit measured; a target not run keeps its earlier record).
CPU seconds are the user + system time of all child processes: a wall time far
above CPU / cores means the machine was busy with something else (the load
average at the start is recorded too). Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from provenance import commit_line, provenance  # noqa: E402

DURATION = re.compile(r"^(\d+\.\d+)s (setup|call|teardown)\s+(\S+)$")
PYTEST_TOTAL = re.compile(r"^=*\s*(.*\d+ passed.*) in ([\d.]+)s")
STEPS = re.compile(r"(\d+) of (\d+) steps \(100%\) done")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_target(target: str) -> dict[str, Any]:
    """Run ``make <target>`` in the project root; its wall/CPU seconds and what it printed of note."""
    if target == "demo":
        subprocess.run(["make", "clean"], cwd=REPO, check=True)
    cmd = ["make", target] + (["PYTEST_ARGS=--durations=15"] if target == "test" else [])
    load = [round(v, 2) for v in os.getloadavg()]
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    out = proc.stdout + proc.stderr
    record: dict[str, Any] = {"command": " ".join(cmd), "exit_status": proc.returncode, "wall_s": round(wall, 1),
                              "cpu_s": round(cpu, 1), "load_average_at_start": load}
    if target == "test":
        totals = [m for m in (PYTEST_TOTAL.match(line) for line in out.splitlines()) if m]
        record["summary"] = totals[-1].group(1) if totals else None
        record["slowest"] = [{"seconds": float(m.group(1)), "phase": m.group(2), "test": m.group(3)}
                             for m in (DURATION.match(line.strip()) for line in out.splitlines()) if m]
    else:
        steps = STEPS.findall(out)
        record["jobs"] = int(steps[0][1]) if steps else None
    if proc.returncode:
        record["output_tail"] = out[-3000:]
    return record


def markdown(result: dict[str, Any]) -> str:
    lines = ["# `make test` and `make demo`: wall and CPU time", "", commit_line(result["commit"]), "",
             f"Recorded {result['recorded']} on {result['host']['cpus']} CPUs. Rerun: "
             "`.venv/bin/python bench/time_make_targets.py` (venv built, machine idle).", "",
             "| target | exit | wall | CPU (user+sys) | load at start | notes |", "|---|---|---|---|---|---|"]
    for name, r in result["targets"].items():
        note = r.get("summary") if name == "test" else f"{r.get('jobs')} jobs"
        lines.append(f"| `{r['command']}` | {r['exit_status']} | {r['wall_s'] / 60:.1f} min ({r['wall_s']:.0f} s) "
                     f"| {r['cpu_s']:.0f} s | {r['load_average_at_start'][0]} | {note} |")
    test = result["targets"].get("test")
    if test and test.get("slowest"):
        lines += ["", "Slowest test phases (`pytest --durations=15`):", "", "| s | phase | test |", "|---|---|---|"]
        lines += [f"| {d['seconds']:.1f} | {d['phase']} | `{d['test']}` |" for d in test["slowest"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", choices=["test", "demo"], default=["test", "demo"])
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    json_path = args.out / "make_targets.json"
    earlier = json.loads(json_path.read_text()) if json_path.is_file() else {}
    result = {**provenance(), "targets": dict(earlier.get("targets", {}))}
    for target in args.targets:
        print(f"make {target} ...", flush=True)
        result["targets"][target] = run_target(target) | {"commit": result["commit"]}
        print(json.dumps({k: v for k, v in result["targets"][target].items() if k != "slowest"}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "make_targets.md").write_text(markdown(result))
    return max(r["exit_status"] for r in result["targets"].values())


if __name__ == "__main__":
    sys.exit(main())
