"""Benchmark: Syn_MR synthesis throughput (256x256 slices per second).

Times :func:`ct2mr.models.apply.synthesize_slices` (uint8 in -> resize to the
model's image size -> generator -> back to 256 -> uint8; Syn_MR only) with
randomly initialised generators of the ``demo`` preset size (64 px, ngf 16,
3 blocks) and the ``paper`` size (256 px, ngf 64, 9 blocks), at batch sizes
1, 8 and 16. Weights do not change the speed. One warm-up batch first; the
median of ``--repeats`` timed runs is reported. On CUDA: bf16 autocast and a
``torch.cuda.synchronize()`` inside the timed region (the copy back to the
host already synchronises).

    python bench/bench_synthesis.py                 # CPU, writes bench/results/synthesis.{md,json}
    python bench/bench_synthesis.py --device cuda   # GPU (target: <= 1 ms per slice on an H100)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ct2mr.io.atomic import write_json, write_text
from ct2mr.models.model_folder import load_generators, make_untrained_model
from ct2mr.models.apply import synthesize_slices

SIZES = {
    "demo": {"image_size": 64, "ngf": 16, "n_blocks": 3},
    "paper": {"image_size": 256, "ngf": 64, "n_blocks": 9},
}
RESULTS = Path(__file__).resolve().parent / "results"
if str(RESULTS.parent) not in sys.path:  # bench/: provenance (also when imported as bench.bench_synthesis)
    sys.path.insert(0, str(RESULTS.parent))
from provenance import commit_line, provenance  # noqa: E402


def bench_one(model, batch: int, n_slices: int, repeats: int) -> dict[str, float]:  # noqa: ANN001
    rng = np.random.default_rng(0)
    ct = rng.integers(0, 256, (n_slices, 256, 256), dtype=np.uint8)
    synthesize_slices(model, ct[:batch], batch_size=batch, cycle=False)  # warm-up
    times = []
    for _ in range(repeats):
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        synthesize_slices(model, ct, batch_size=batch, cycle=False)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"batch": batch, "n_slices": n_slices, "repeats": repeats, "seconds": t,
            "ms_per_slice": 1000 * t / n_slices, "slices_per_s": n_slices / t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--slices", type=int, default=None, help="slices per timed run (default: 2 batches on CPU paper, 64 else)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 3 on CPU, 10 on CUDA)")
    ap.add_argument("--out", default=None,
                    help="output stem (.md and .json; default bench/results/synthesis, synthesis_cuda on CUDA)")
    args = ap.parse_args(argv)

    cuda = args.device.startswith("cuda")
    repeats = args.repeats or (10 if cuda else 3)
    rows = []
    prov = provenance()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            folder = make_untrained_model(Path(tmp) / name, "paired", **SIZES[name])
            model = load_generators(folder, device=args.device)
            for b in args.batches:
                n = args.slices or (64 if cuda or name == "demo" else 2 * b)
                r = {"size": name, **SIZES[name], **bench_one(model, b, n, repeats)}
                rows.append(r)
                print(f"{name:6s} batch {b:3d}: {r['ms_per_slice']:9.2f} ms/slice  {r['slices_per_s']:8.2f} slices/s",
                      flush=True)
    env = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "precision": "bf16 autocast" if cuda else "fp32",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    out = Path(args.out or RESULTS / ("synthesis_cuda" if cuda else "synthesis"))
    write_json(out.with_suffix(".json"), {"commit": prov["commit"], "recorded": prov["recorded"],
                                          "environment": env, "results": rows})
    lines = [
        "# Synthesis throughput (Syn_MR, 256x256 slices)",
        "",
        commit_line(prov["commit"]),
        "",
        f"Command: `python bench/bench_synthesis.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Device: {env['device']} ({env['device_name']}), {env['cpu_count']} CPUs, torch {env['torch']} "
        f"({env['torch_threads']} threads), {env['precision']}, {env['date_utc']}; 1-min load average "
        f"{env['load_average_1min_before_after'][0]} before / {env['load_average_1min_before_after'][1]} after "
        f"(other jobs on the machine slow CPU timings down).",
        "",
        "Timed: `synthesize_slices` (uint8 -> model size -> generator -> 256 -> uint8), median of "
        f"{repeats} runs after one warm-up batch; untrained generators (speed does not depend on weights).",
        "",
        "| size | image px | ngf | blocks | batch | slices | ms / slice | slices / s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['size']} | {r['image_size']} | {r['ngf']} | {r['n_blocks']} | {r['batch']} | "
                     f"{r['n_slices']} | {r['ms_per_slice']:.2f} | {r['slices_per_s']:.2f} |")
    lines += ["", "Paper (GTX 1080Ti): 35 ms per slice. Target on an H100 (bf16, batched): <= 1 ms per slice."]
    if not cuda:
        lines += ["", "GPU: NOT measured (no GPU was available when these numbers were recorded). Reproduce on a GPU "
                  "machine with `python bench/bench_synthesis.py --device cuda` (writes "
                  "bench/results/synthesis_cuda.{md,json})."]
    lines.append("")
    write_text(out.with_suffix(".md"), "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
