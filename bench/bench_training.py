"""Benchmark: milliseconds per training iteration of each variant (paired, unpaired, mrgan, regression).

One iteration = sampling + augmentation + generator step + discriminator step
(what ``ct2mr train`` does per iteration, without checkpoint / log writing;
sampling with the batched on-device sampler ``ct2mr.training.device_data.BatchedSampler``;
``--compare-sampler`` also times the per-image reference ``ct2mr.training.train.Sampler``).
The one-command GPU check (all modes, memory, agreement, resume, real data) is
``bench/gpu_check.py``.

CPU (default)::

    .venv/bin/python bench/bench_training.py            # demo size (1 and 2 threads) + paper size
    .venv/bin/python bench/bench_training.py --quick    # fewer iterations
    # whole demo-preset trainings (ct2mr.training.train.train, 1200 iterations, 1 thread) of some variants:
    .venv/bin/python bench/bench_training.py --full-run --variants regression paired \
        --out bench/results/training_regression

GPU (not measured in the session that wrote this: no device was lent)::

    python bench/bench_training.py --device cuda --out bench/results/training_gpu

runs the ``paper`` preset (256 x 256, ngf 64, 9 blocks) in three modes: fp32
eager (TF32 allowed), bf16 autocast eager, bf16 autocast + torch.compile; target
<= 15 ms per full MR-GAN iteration on an H100.

Results: ``<out>.md`` and ``<out>.json`` (default ``bench/results/training``).
Synthetic slices (random uint8) are used: the cost does not depend on content.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_training)
    sys.path.insert(0, str(REPO / "bench"))

from ct2mr.training.augment import AugmentConfig  # noqa: E402
from ct2mr.training.device_data import BatchedSampler  # noqa: E402
from ct2mr.training.losses import VARIANTS, data_for  # noqa: E402
from ct2mr.training.train import Sampler, Trainer, torch_runtime  # noqa: E402
from ct2mr.training.settings import preset_settings, settings_from_dict  # noqa: E402
from ct2mr.training.data import SlicePools  # noqa: E402
from provenance import commit_line, provenance  # noqa: E402


def synthetic_pools(size: int, n: int = 8) -> SlicePools:
    g = torch.Generator().manual_seed(0)

    def rnd() -> torch.Tensor:
        return torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8)

    return SlicePools(rnd(), rnd(), rnd(), rnd())


def time_variant(
    settings, variant: str, device: torch.device, warmup: int, iters: int, sampler_kind: str = "batched"
) -> dict[str, float]:
    """``sampler_kind``: ``batched`` (ct2mr.training.device_data.BatchedSampler, what ``ct2mr train`` uses)
    or ``reference`` (ct2mr.training.train.Sampler, one image at a time: the loop before issue 10)."""
    pools = synthetic_pools(settings.image_size).to(device)
    aug = AugmentConfig(settings.image_size, settings.effective_pad_to)
    with torch_runtime(settings, device):
        trainer = Trainer(settings, variant, device)
        if sampler_kind == "batched":
            sampler = BatchedSampler(pools, data_for(variant), aug, settings.seed, device)
        else:
            sampler = Sampler(pools, data_for(variant), aug, settings.seed)
        times, cpu_times, draw_cpu = [], [], []
        for i in range(warmup + iters):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            c = time.process_time()
            batch = sampler.draw()
            c_draw = time.process_time() - c
            trainer.step(batch)  # .step() reads the losses back (float()), i.e. synchronises
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1000)
                cpu_times.append((time.process_time() - c) * 1000)
                draw_cpu.append(c_draw * 1000)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        # CPU time of this process: robust to other jobs holding the cores (wall time is not)
        "median_cpu_ms": statistics.median(cpu_times),
        "median_draw_cpu_ms": statistics.median(draw_cpu),
        "iterations_timed": len(times),
        "warmup": warmup,
    }


def _slice_file(path: Path, role: str, n: int = 8, size: int = 256) -> Path:
    """A slice file of random uint8 slices (the cost does not depend on content)."""
    import numpy as np

    from ct2mr.preprocess.slices import save_slices

    rng = np.random.default_rng(0)
    d = {
        "head_mask": np.ones((n, size, size), bool), "brain_mask": np.ones((n, size, size), bool),
        "z_index": np.arange(n, dtype=np.int64), "crop_origin": np.zeros(2, np.int64), "crop_size": np.int64(size),
        "ref_shape": np.array([n, size, size], np.int64), "ref_spacing": np.ones(3), "ref_origin": np.zeros(3),
        "ref_direction": np.eye(3).ravel(), "patient": path.stem, "role": role, "source": "volume",
    }
    if role != "mr_only":
        d["ct"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    if role != "ct_only":
        d["mr"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    save_slices(path, d)
    return path


def time_full_run(variant: str, threads: int) -> dict[str, object]:
    """Wall time of a whole ``ct2mr.training.train.train`` at the demo preset (checkpoints, logs, final
    outputs included) on random slices: 2 paired, 1 CT-only, 1 MR-only patients of 8 slices."""
    import tempfile

    from ct2mr.training.train import train

    s = settings_from_dict({**preset_settings("demo").to_dict(), "num_threads": threads})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = [_slice_file(root / "p1.npz", "paired_train"), _slice_file(root / "p2.npz", "paired_train"),
                 _slice_file(root / "c1.npz", "ct_only"), _slice_file(root / "m1.npz", "mr_only")]
        t, c = time.perf_counter(), time.process_time()
        res = train(s, files, root / variant, variant, device="cpu")
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"preset": "demo", "image_size": s.image_size, "variant": variant, "mode": f"whole run, {threads} thread(s)",
            "iterations": s.total_iterations, "wall_s": wall, "cpu_s": cpu, "training_s": float(res["seconds"]),
            "median_ms": 1000 * wall / s.total_iterations, "min_ms": float("nan"), "max_ms": float("nan"),
            "iterations_timed": s.total_iterations}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "training"), help="output path without suffix")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--skip-paper", action="store_true", help="CPU: skip the (slow) paper-size runs")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="variants to time (default all)")
    ap.add_argument("--full-run", action="store_true",
                    help="CPU: time whole demo-preset trainings (1 thread) instead of single iterations")
    ap.add_argument("--threads", default="1,2", help="CPU: comma list of thread counts for the demo size (default 1,2)")
    ap.add_argument(
        "--compare-sampler", action="store_true",
        help="CPU demo size: also time the reference per-image Sampler (the loop before the batched one), "
        "alternating with the batched one variant by variant",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    rows: list[dict[str, object]] = []
    prov = provenance()
    load_before = os.getloadavg()

    if args.full_run:
        for variant in args.variants:
            rows.append(time_full_run(variant, 1))
            print(rows[-1], flush=True)
    elif device.type == "cpu":
        demo = preset_settings("demo")
        paper = settings_from_dict({**preset_settings("paper").to_dict(), "device": "cpu"})
        thread_counts = [int(t) for t in args.threads.split(",")]
        cases = [("demo", demo, threads, 3, 10 if args.quick else 30) for threads in thread_counts]
        if not args.skip_paper:
            cases.append(("paper", paper, 1, 1, 1 if args.quick else 2))
        for preset, base, threads, warmup, iters in cases:
            s = settings_from_dict({**base.to_dict(), "num_threads": threads})
            kinds = ["batched", "reference"] if (args.compare_sampler and preset == "demo") else ["batched"]
            for variant in args.variants:
                for kind in kinds:
                    r = time_variant(s, variant, device, warmup, iters, kind)
                    mode = f"fp32, {threads} thread(s)" + (", reference sampler (before)" if kind == "reference" else "")
                    rows.append({"preset": preset, "image_size": s.image_size, "variant": variant, "mode": mode, **r})
                    print(rows[-1], flush=True)
    else:
        base = preset_settings("paper")
        modes = [("fp32 eager (TF32)", {"amp": "fp32"}), ("bf16 eager", {"amp": "bf16"}), ("bf16 + torch.compile", {"amp": "bf16", "compile": True})]
        for label, over in modes:
            s = settings_from_dict({**base.to_dict(), **over, "device": str(device)})
            for variant in args.variants:
                warm = 20 if over.get("compile") else 5
                r = time_variant(s, variant, device, warm, 20 if args.quick else 100)
                rows.append({"preset": "paper", "image_size": 256, "variant": variant, "mode": label, **r})
                print(rows[-1], flush=True)

    meta = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"commit": prov["commit"], "recorded": prov["recorded"], "meta": meta, "results": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Training speed: ms per iteration",
        "",
        commit_line(prov["commit"]),
        "",
        f"Device: {meta['device']} ({meta['cpu_count']} CPUs visible), torch {meta['torch']}, {meta['date_utc']} UTC.",
        f"Command: `{meta['command']}`. Load average before/after: {load_before[0]:.1f} / {meta['load_average_after'][0]:.1f}"
        " (the CPU is shared with other jobs: treat CPU numbers as upper bounds).",
        "",
        "One iteration = draw + augment one unpaired CT, one unpaired MR and one pair (as the variant needs),",
        "generator step, discriminator step (batch size 1).",
        "",
        "| preset | size | variant | mode | median ms/it | min | max | median CPU ms/it | of which sampling (CPU ms) | timed its |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if args.full_run:
        lines[lines.index("| preset | size | variant | mode | median ms/it | min | max | timed its |"):] = [
            "Whole runs: `ct2mr.training.train.train` at the demo preset (1200 iterations, checkpoints every 100,",
            "losses.tsv, loss_curve.png and the final weights included) on random 256x256 slices (2 paired,",
            "1 CT-only, 1 MR-only patients, 8 slices each), one after the other, one thread each.",
            "",
            "CPU s = the process's CPU time (robust to other jobs sharing the cores, unlike wall s).",
            "",
            "| variant | iterations | wall s | CPU s | CPU ms/it |",
            "|---|---|---|---|---|",
        ]
        rows_md = [f"| {r['variant']} | {r['iterations']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                   f"{1000 * r['cpu_s'] / r['iterations']:.1f} |" for r in rows]
        out.with_suffix(".md").write_text("\n".join(lines + rows_md) + "\n")
        print(f"wrote {out.with_suffix('.md')}")
        return
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['image_size']} | {r['variant']} | {r['mode']} | {r['median_ms']:.1f} | "
            f"{r['min_ms']:.1f} | {r['max_ms']:.1f} | {r['median_cpu_ms']:.1f} | {r['median_draw_cpu_ms']:.2f} | {r['iterations_timed']} |"
        )
    if device.type == "cpu":
        lines += [
            "",
            "Thread count: compare the 1- and 2-thread rows; on a shared machine two OpenMP threads stall when",
            "other jobs hold the cores (max column), hence `num_threads: 1` in the demo preset.",
            "",
            "## GPU",
            "",
            "Not measured: no GPU was lent to the session that wrote this. On a CUDA machine run",
            "`python bench/bench_training.py --device cuda --out bench/results/training_gpu` (paper preset:",
            "fp32 eager with TF32, bf16 autocast eager, bf16 autocast + torch.compile; target <= 15 ms per",
            "MR-GAN iteration on an H100). For the whole GPU check (modes incl. torch.compile reduce-overhead,",
            "memory, bf16 agreement, resume, real data) run `bench/gpu_check.py` (bench/results/gpu_check_cpu_smoke.md).",
        ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
