"""Benchmark: effect of glibc's ``MALLOC_MMAP_MAX_=0`` on CPU training at the paper size.

At 256 x 256 the activations of a training step (mrgan: batch 2 through each
generator) are larger than glibc's mmap threshold, so each allocation is a fresh
``mmap`` whose pages fault in on first touch and go back to the kernel when freed.
``MALLOC_MMAP_MAX_=0`` makes glibc serve them from the heap instead, reusing pages.

Each configuration runs in its own process (the variable is read when the process
starts), alternating, so load changes on a shared machine hit both alike::

    .venv/bin/python bench/bench_malloc_mmap.py [--variant mrgan] [--rounds 2] [--iters 2]

Records ``bench/results/malloc_mmap.{md,json}``: median ms/iteration, minor page
faults per iteration and peak RSS per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_malloc_mmap)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
import torch
from ct2mr.training.augment import AugmentConfig
from ct2mr.training.device_data import BatchedSampler
from ct2mr.training.losses import data_for
from ct2mr.training.train import Trainer, torch_runtime
from ct2mr.training.settings import preset_settings, settings_from_dict
from ct2mr.training.data import SlicePools
s = settings_from_dict({{**preset_settings("paper").to_dict(), "device": "cpu", "num_threads": 1}})
g = torch.Generator().manual_seed(0)
r = lambda: torch.randint(0, 256, (4, 256, 256), generator=g, dtype=torch.uint8)
pools = SlicePools(r(), r(), r(), r())
with torch_runtime(s, torch.device("cpu")):
    tr = Trainer(s, {variant!r}, "cpu")
    smp = BatchedSampler(pools, data_for({variant!r}), AugmentConfig(256, s.effective_pad_to), 0)
    tr.step(smp.draw())  # warm-up
    times, faults = [], []
    for _ in range({iters}):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        tr.step(smp.draw())
        times.append(1000 * (time.perf_counter() - t))
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({{"ms": times, "minor_faults": faults,
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_child(variant: str, iters: int, mmap_off: bool) -> dict:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_MAX_", None)
    if mmap_off:
        env["MALLOC_MMAP_MAX_"] = "0"
    code = CHILD.format(src=str(REPO / "src"), variant=variant, iters=iters)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="mrgan")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "malloc_mmap")
    args = ap.parse_args()
    load_before = os.getloadavg()
    commit = provenance()["commit"]
    res: dict[str, list[dict]] = {"default": [], "MALLOC_MMAP_MAX_=0": []}
    for _ in range(args.rounds):
        for label in res:
            r = run_child(args.variant, args.iters, label != "default")
            res[label].append(r)
            print(label, json.dumps(r), flush=True)
            write_results(res, args.variant, load_before, args.out, commit)  # after each child: partial results kept


def write_results(res: dict[str, list[dict]], variant: str, load_before: tuple[float, ...], out: Path,
                  commit: str = "unknown") -> None:
    """Summaries of the runs so far -> ``out``.json / .md."""
    summary = {}
    for label, runs in res.items():
        if not runs:
            continue
        ms = [t for r in runs for t in r["ms"]]
        flt = [f for r in runs for f in r["minor_faults"]]
        summary[label] = {
            "median_ms": round(statistics.median(ms), 1), "min_ms": round(min(ms), 1), "max_ms": round(max(ms), 1),
            "median_minor_faults_per_it": int(statistics.median(flt)),
            "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1), "iterations": len(ms),
        }
    meta = {
        "variant": variant, "size": "paper (256 px, ngf 64, 9 blocks), batch 1, 1 thread, CPU",
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join(["python", "bench/bench_malloc_mmap.py", *sys.argv[1:]]), "cpu_count": os.cpu_count(),
    }
    record = {"commit": commit, "meta": meta, "summary": summary, "runs": res}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# CPU training at the paper size: MALLOC_MMAP_MAX_=0", "",
        commit_line(commit), "",
        f"{meta['size']}, variant {variant}; {meta['date_utc']} UTC; command `{meta['command']}`.",
        f"Load average before/after: {load_before[0]:.1f} / {meta['load_average_after'][0]:.1f} "
        f"({meta['cpu_count']} CPUs shared with other jobs: upper bounds).", "",
        "| environment | median ms/it | min | max | minor page faults / it | peak RSS MiB | its |", "|---|---|---|---|---|---|---|",
    ]
    for label, r in summary.items():
        lines.append(f"| {label} | {r['median_ms']} | {r['min_ms']} | {r['max_ms']} | {r['median_minor_faults_per_it']} | "
                     f"{r['peak_rss_mib']} | {r['iterations']} |")
    if len(summary) == 2:
        d, m = summary["default"], summary["MALLOC_MMAP_MAX_=0"]
        lines += ["", f"Ratio default / MALLOC_MMAP_MAX_=0 (median): {d['median_ms'] / m['median_ms']:.2f}; page faults "
                  f"{d['median_minor_faults_per_it']} -> {m['median_minor_faults_per_it']} per iteration."]
    lines += ["", "Usage: `MALLOC_MMAP_MAX_=0 snakemake ...` (or export it in the shell that trains on the CPU). It only "
              "concerns glibc (Linux) and CPU training; GPU memory is managed by torch's own caching allocator."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()
