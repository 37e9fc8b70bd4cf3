"""GPU check: everything a CUDA GPU must show about ct2mr, in one command of <= 8 minutes.

    PYTHONPATH=src python bench/gpu_check.py --out "$OUT"           # on a CUDA machine
    PYTHONPATH=src python bench/gpu_check.py --out /tmp/smoke --smoke   # CPU rehearsal, tiny sizes

Needs only Python 3.12 (3.11 works), torch (CUDA build), numpy, scipy, pandas,
matplotlib and PyYAML: no SimpleITK, snakemake, ANTs, nipype, scikit-image or
tensorboard, no network, no install step (``PYTHONPATH=src``). Real data comes
as ``.npz`` slice files prepared on the CPU side beforehand by
``bench/prep_gpu_data.py`` into ``bench/gpu_data/`` (git-ignored; carry it
to the GPU machine with the command). The results record the commit measured
(``bench/provenance.py``): git's where there is one, else ``--commit SHA`` or
``CT2MR_COMMIT=SHA``, else ``unknown``.

Sections, each under its own time guard (a section that runs out of time stops
and keeps what it measured; results are rewritten after every measurement, so
even a killed run leaves ``gpu_check.json`` / ``gpu_check.md`` in ``--out``):

1. environment: GPU name, torch / CUDA / cuDNN versions; then a check that a
   training iteration never synchronises host and device (CUDA sync debug mode);
2. training speed of every variant of the trainer's table (``ct2mr.training.train.VARIANTS``)
   at the paper size (256 x 256, ngf = ndf = 64, 9 blocks), batch 1: ms/iteration
   (median over >= 50 iterations after warm-up; per iteration CUDA events, plus
   the wall-clock mean) and peak GPU memory, in the modes fp32 (TF32 on), bf16
   autocast, bf16 + channels_last, and last (compilation is the slow part)
   bf16 + torch.compile and bf16 + torch.compile mode "reduce-overhead" (CUDA
   graphs through torch.compile: the trainer offers no hand-made whole-step
   CUDA graph capture). One iteration = what ``ct2mr train`` does: batched
   on-device sampling and augmentation, generator step, discriminator step,
   losses accumulated on the device;
3. synthesis ms/slice at batch 1, 16 and 64 (Syn_MR forward alone, and the whole
   ``synthesize_slices`` path with uint8 in and out);
4. bf16 vs fp32 agreement of the generator loss over 100 iterations from the same
   start (same weights, same images, same pool draws);
5. kill-and-resume: a run killed after its checkpoint, resumed, gives the same
   next losses as an uninterrupted run (within bf16 tolerance on CUDA; bitwise on CPU);
6. real data: paired and mrgan trained for a fixed time each at the paper size on
   the Harvard slices, held-out MAE (grey levels) of Syn_MR vs the reference MR.

``--smoke`` runs all of it on the CPU at 32 x 32, ngf 8, 1 block with few
iterations (tests/test_gpu_check.py), so the script cannot rot between GPU visits;
without ``--data`` the smoke run makes synthetic slice files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (standard library only)
    sys.path.insert(0, str(REPO / "bench"))

from ct2mr.training.augment import AugmentConfig  # noqa: E402
from ct2mr.training.device_data import BatchedSampler  # noqa: E402
from ct2mr.training.losses import data_for  # noqa: E402
from ct2mr.models.model_folder import LoadedModel  # noqa: E402
from ct2mr.models import build_generator, init_weights  # noqa: E402
from ct2mr.models.apply import synthesize_slices, translate  # noqa: E402
from ct2mr.training.train import VARIANTS, Trainer, torch_runtime, train  # noqa: E402
from ct2mr.training.settings import PRESETS, TrainSettings, settings_from_dict  # noqa: E402
from ct2mr.training.data import SlicePools, build_pools, read_slice_file  # noqa: E402
from provenance import ENV_VAR, commit_line, provenance  # noqa: E402

DEFAULT_DATA = REPO / "bench" / "gpu_data"

#: sizes and iteration counts: on the GPU (paper size) and for the CPU smoke run
PROFILES: dict[str, dict[str, Any]] = {
    "gpu": {
        "arch": {"image_size": 256, "ngf": 64, "ndf": 64, "n_blocks": 9},
        "warmup": 10, "iters": 60, "compile_warmup": 8, "agree_iters": 100,
        "synth_reps": 10, "resume_split": 8, "resume_total": 14, "train_seconds": 45.0,
        # 455 s + interpreter start and imports stays inside the 8 minutes
        "budget_s": 455.0,
        # section -> share of the budget (seconds); compile gets whatever is left
        "shares": {"environment": 15, "sync_check": 20, "speed_eager": 75, "synthesis": 25, "agreement": 40, "resume": 45, "real_data": 110},
    },
    "smoke": {
        "arch": {"image_size": 32, "ngf": 8, "ndf": 8, "n_blocks": 1},
        "warmup": 2, "iters": 5, "compile_warmup": 2, "agree_iters": 4,
        "synth_reps": 2, "resume_split": 2, "resume_total": 5, "train_seconds": 2.0,
        "budget_s": 240.0,
        "shares": {"environment": 15, "sync_check": 10, "speed_eager": 60, "synthesis": 20, "agreement": 30, "resume": 60, "real_data": 60},
    },
}

#: training-speed modes: label -> settings overrides (compiled ones last)
EAGER_MODES: dict[str, dict[str, Any]] = {
    "fp32 (TF32)": {"amp": "fp32"},
    "bf16 autocast": {"amp": "bf16"},
    "bf16 + channels_last": {"amp": "bf16", "channels_last": True},
}
COMPILE_MODES: dict[str, dict[str, Any]] = {
    "bf16 + torch.compile": {"amp": "bf16", "compile": True, "compile_mode": "default"},
    "bf16 + compile reduce-overhead (CUDA graphs)": {"amp": "bf16", "compile": True, "compile_mode": "reduce-overhead"},
}

#: bf16 vs fp32: relative difference of G_total allowed at the first iteration, and
#: for the median over all iterations (GAN training amplifies rounding differences)
AGREE_FIRST_REL = 0.02
AGREE_MEDIAN_REL = 0.10
#: kill-and-resume on CUDA: relative difference allowed in the first rows after resume
RESUME_REL = 0.02


# --------------------------------------------------------------------------- bookkeeping


class SectionTimeout(Exception):
    """Raised inside a section when its time is up (SIGALRM, main thread only)."""


class Report:
    """Results, rewritten to ``out/gpu_check.{json,md}`` after every change."""

    def __init__(self, out: Path, meta: dict[str, Any], commit: str = "unknown") -> None:
        self.out = out
        self.data: dict[str, Any] = {"commit": commit, "meta": meta, "sections": {}, "notes": [], "errors": []}

    def put(self, section: str, value: Any) -> None:
        self.data["sections"][section] = value
        self.write()

    def append(self, section: str, row: dict[str, Any]) -> None:
        self.data["sections"].setdefault(section, []).append(row)
        self.write()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.write()

    def error(self, section: str, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.data["errors"].append({"section": section, "error": f"{type(exc).__name__}: {exc}", "traceback_tail": tb[-1500:]})
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in (("gpu_check.json", json.dumps(self.data, indent=2, default=str) + "\n"), ("gpu_check.md", to_markdown(self.data))):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.out / name)


@contextlib.contextmanager
def time_guard(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` after ``seconds`` (SIGALRM; a no-op where there is none).

    Nests: an inner guard never outlives an enclosing one, and on exit the
    enclosing guard's timer is restored with the time it has left.
    """
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise SectionTimeout(f"time guard: section exceeded {seconds:.0f} s")

    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left > 0 else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer_left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.perf_counter() - t0), 0.001))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settings_for(profile: dict[str, Any], device: torch.device, **over: Any) -> TrainSettings:
    values = {**PRESETS["paper"], **profile["arch"], "device": str(device), "tensorboard": False, "num_threads": None}
    if device.type == "cpu":
        values["num_threads"] = 1
    values.update(over)
    return settings_from_dict(values)


def synthetic_pools(size: int, n: int = 16, seed: int = 0) -> SlicePools:
    g = torch.Generator().manual_seed(seed)

    def rnd() -> torch.Tensor:
        return torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8)

    return SlicePools(rnd(), rnd(), rnd(), rnd())


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --------------------------------------------------------------------------- sections


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu_name=torch.cuda.get_device_name(device),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    for mod in ("SimpleITK", "skimage", "snakemake", "ants", "nipype", "tensorboard"):
        try:  # found, without importing it (slow); a module blocked in sys.modules counts as absent
            env[f"has_{mod}"] = mod not in sys.modules and importlib.util.find_spec(mod) is not None or sys.modules.get(mod) is not None
        except (ImportError, ValueError):
            env[f"has_{mod}"] = False
    return env


def time_training(
    settings: TrainSettings, variant: str, device: torch.device, warmup: int, iters: int, deadline: float
) -> dict[str, Any]:
    """ms per training iteration (median of ``iters`` after ``warmup``) and peak memory."""
    size = settings.image_size
    pools = synthetic_pools(size)
    aug = AugmentConfig(size, settings.effective_pad_to)
    with torch_runtime(settings, device):
        _reset_peak(device)
        trainer = Trainer(settings, variant, device)
        sampler = BatchedSampler(pools, data_for(variant), aug, settings.seed, device)
        acc: Any = 0.0
        t0 = time.perf_counter()
        for _ in range(warmup):
            acc = acc + trainer.step(sampler.draw(), sync=False)["G_total"]
        sync(device)
        warm_s = time.perf_counter() - t0
        times: list[float] = []
        cuda = device.type == "cuda"
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)] if cuda else []
        t1 = time.perf_counter()
        done = 0
        for i in range(iters):
            if time.perf_counter() > deadline and done >= 5:
                break
            if cuda:
                events[i][0].record()
            else:
                ts = time.perf_counter()
            acc = acc + trainer.step(sampler.draw(), sync=False)["G_total"]
            if cuda:
                events[i][1].record()
            else:
                times.append((time.perf_counter() - ts) * 1000)
            done += 1
        sync(device)
        wall = time.perf_counter() - t1
        if cuda:
            times = [a.elapsed_time(b) for a, b in events[:done]]
        loss_sum = float(acc)
    return {
        "median_ms": round(statistics.median(times), 3),
        "p10_ms": round(float(np.percentile(times, 10)), 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
        "wall_mean_ms": round(1000 * wall / max(done, 1), 3),
        "iterations_timed": done,
        "warmup_iterations": warmup,
        "warmup_s": round(warm_s, 2),
        "peak_mem_mib": _peak_mib(device),
        "losses_finite": math.isfinite(loss_sum),
    }


def sync_check(device: torch.device, profile: dict[str, Any], variants: list[str]) -> dict[str, Any]:
    """CUDA: run training iterations under ``torch.cuda.set_sync_debug_mode("error")``: any
    host-device synchronisation inside an iteration (a ``.item()``, a blocking copy) raises."""
    if device.type != "cuda":
        return {"skipped": "CUDA only (torch.cuda.set_sync_debug_mode)"}
    out: dict[str, Any] = {}
    for variant in variants:
        s = settings_for(profile, device, amp="bf16")
        with torch_runtime(s, device):
            trainer = Trainer(s, variant, device)
            sampler = BatchedSampler(synthetic_pools(s.image_size), data_for(variant),
                                     AugmentConfig(s.image_size, s.effective_pad_to), 0, device)
            acc: Any = 0.0
            for _ in range(3):  # warm-up: allocator, cuDNN autotuning, pinned buffers
                acc = acc + trainer.step(sampler.draw(), sync=False)["G_total"]
            torch.cuda.synchronize(device)
            try:
                torch.cuda.set_sync_debug_mode("error")
                for _ in range(5):
                    acc = acc + trainer.step(sampler.draw(), sync=False)["G_total"]
                out[variant] = "no synchronisation in 5 iterations"
            except RuntimeError as exc:
                out[variant] = f"SYNCHRONISES: {str(exc)[:300]}"
            finally:
                torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize(device)
    return out


def speed_section(report: Report, profile: dict[str, Any], device: torch.device, modes: dict[str, dict[str, Any]],
                  variants: list[str], warmup: int, deadline: float, section: str) -> None:
    for label, over in modes.items():
        for variant in variants:
            row: dict[str, Any] = {"variant": variant, "mode": label, "image_size": profile["arch"]["image_size"], "batch": 1}
            if over.get("compile") and device.type != "cuda":
                row["skipped"] = "torch.compile is used on CUDA only (on this CPU it took > 5 min for the tiny preset)"
                report.append(section, row)
                continue
            if over.get("channels_last") and device.type != "cuda":
                row["skipped"] = "channels_last is applied on CUDA only"
                report.append(section, row)
                continue
            if over.get("amp") == "bf16" and device.type != "cuda":
                row["skipped"] = "bf16 autocast is CUDA only (on the CPU it would repeat the fp32 row)"
                report.append(section, row)
                continue
            if time.perf_counter() > deadline:
                row["skipped"] = "time budget exhausted"
                report.append(section, row)
                continue
            try:
                with time_guard(deadline - time.perf_counter()):
                    s = settings_for(profile, device, **over)
                    row.update(time_training(s, variant, device, warmup, profile["iters"], deadline))
            except SectionTimeout as exc:
                row["skipped"] = str(exc)
            except Exception as exc:  # noqa: BLE001 - record and go on
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                report.error(f"{section}/{variant}/{label}", exc)
            report.append(section, row)
            print(f"  {section}: {variant:10s} {label:45s} " + (
                f"{row['median_ms']:.2f} ms/it, peak {row['peak_mem_mib']} MiB" if "median_ms" in row else row.get("skipped", row.get("error", ""))
            ), flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()


def synthesis_section(report: Report, profile: dict[str, Any], device: torch.device, deadline: float) -> None:
    arch = settings_for(profile, device).architecture()
    size = arch["image_size"]
    net = build_generator(arch)
    init_weights(net, 0.02, generator=torch.Generator().manual_seed(0))
    net = net.to(device).eval()
    model = LoadedModel(syn_mr=net, syn_ct=None, info={"variant": "gpu_check"}, device=device, model_dir=Path("."), image_size=size)
    rng = np.random.default_rng(0)
    torch.backends.cudnn.benchmark = True
    for bs in (1, 16, 64):
        if time.perf_counter() > deadline:
            report.append("synthesis", {"batch": bs, "skipped": "time budget exhausted"})
            continue
        _reset_peak(device)
        x = torch.rand(bs, 1, size, size, device=device) * 2 - 1
        for _ in range(2):
            translate(net, x, device)
        sync(device)
        reps = profile["synth_reps"]
        t = time.perf_counter()
        for _ in range(reps):
            translate(net, x, device)
        sync(device)
        fwd_ms = 1000 * (time.perf_counter() - t) / (reps * bs)
        # whole path: uint8 256 x 256 CT slices in, uint8 MR slices out (host transfers included)
        ct = rng.integers(0, 256, (bs, 256, 256), dtype=np.uint8)
        synthesize_slices(model, ct, batch_size=bs, cycle=False)
        t = time.perf_counter()
        for _ in range(max(1, reps // 2)):
            synthesize_slices(model, ct, batch_size=bs, cycle=False)
        e2e_ms = 1000 * (time.perf_counter() - t) / (max(1, reps // 2) * bs)
        row = {"batch": bs, "image_size": size, "forward_ms_per_slice": round(fwd_ms, 3),
               "end_to_end_ms_per_slice": round(e2e_ms, 3), "peak_mem_mib": _peak_mib(device),
               "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}
        report.append("synthesis", row)
        print(f"  synthesis: batch {bs:3d}: {fwd_ms:.3f} ms/slice forward, {e2e_ms:.3f} ms/slice end to end", flush=True)


def agreement_section(report: Report, profile: dict[str, Any], device: torch.device, variants: list[str], deadline: float) -> None:
    n = profile["agree_iters"]
    for variant in variants:
        if time.perf_counter() > deadline:
            report.append("bf16_agreement", {"variant": variant, "skipped": "time budget exhausted"})
            continue
        s32 = settings_for(profile, device, amp="fp32")
        s16 = settings_for(profile, device, amp="bf16")
        size = s32.image_size
        with torch_runtime(s32, device):
            sampler = BatchedSampler(synthetic_pools(size), data_for(variant), AugmentConfig(size, s32.effective_pad_to), 0, device)
            batches = [sampler.draw() for _ in range(n)]
            curves: dict[str, list[float]] = {}
            for label, s in (("fp32", s32), ("bf16", s16)):
                torch.manual_seed(0)
                trainer = Trainer(s, variant, device)
                vals = [trainer.step(b, sync=False)["G_total"] for b in batches]
                curves[label] = [float(v) for v in torch.stack(vals).cpu()]
        a, b = np.array(curves["fp32"]), np.array(curves["bf16"])
        rel = np.abs(b - a) / np.maximum(np.abs(a), 1e-8)
        row = {
            "variant": variant, "iterations": n, "loss": "G_total",
            "rel_diff_first": round(float(rel[0]), 5),
            "rel_diff_median": round(float(np.median(rel)), 5),
            "rel_diff_max": round(float(rel.max()), 5),
            "fp32_first_last": [round(float(a[0]), 4), round(float(a[-1]), 4)],
            "bf16_first_last": [round(float(b[0]), 4), round(float(b[-1]), 4)],
            "agree": bool(rel[0] <= AGREE_FIRST_REL and np.median(rel) <= AGREE_MEDIAN_REL),
            "criterion": f"first-iteration rel. diff <= {AGREE_FIRST_REL}, median over {n} <= {AGREE_MEDIAN_REL}",
            "fp32": [round(v, 5) for v in curves["fp32"]],
            "bf16": [round(v, 5) for v in curves["bf16"]],
        }
        if device.type != "cuda":
            row["note"] = "bf16 autocast is CUDA only: on the CPU both runs are fp32 (expected identical)"
        report.append("bf16_agreement", row)
        print(f"  bf16 vs fp32 {variant}: rel diff first {row['rel_diff_first']:.4f}, median {row['rel_diff_median']:.4f}, agree {row['agree']}", flush=True)


def _tsv_rows(path: Path) -> dict[int, dict[str, float]]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    rows = {}
    for line in lines[1:]:
        cells = dict(zip(head, line.split("\t"), strict=True))
        rows[int(cells["iteration"])] = {k: float(v) for k, v in cells.items() if k not in ("iteration", "seconds")}
    return rows


def resume_section(report: Report, profile: dict[str, Any], device: torch.device, files: list[Path], work: Path, variant: str = "mrgan") -> None:
    split, total = profile["resume_split"], profile["resume_total"]
    s = settings_for(profile, device, n_const=total, n_decay=0, log_every=1, checkpoint_every=split, unpaired_includes_paired=True)
    a_dir, b_dir = work / "resume_uninterrupted", work / "resume_killed"
    train(s, files, a_dir, variant)
    try:
        train(s, files, b_dir, variant, _fail_after=split + 2)  # dies 2 iterations after its checkpoint
        raise RuntimeError("the simulated kill did not happen")
    except RuntimeError as exc:
        if "simulated interruption" not in str(exc):
            raise
    train(s, files, b_dir, variant)  # resumes from the checkpoint at `split`
    ra, rb = _tsv_rows(a_dir / "losses.tsv"), _tsv_rows(b_dir / "losses.tsv")
    after = [it for it in sorted(ra) if it > split]
    cols = [c for c in ra[after[0]] if c != "lr"]
    rel = {it: max(abs(rb[it][c] - ra[it][c]) / max(abs(ra[it][c]), 1e-8) for c in cols) for it in after}
    first = after[:3]
    exact = all(rb[it] == ra[it] for it in after)
    ok = exact if device.type == "cpu" else all(rel[it] <= RESUME_REL for it in first)
    row = {
        "variant": variant, "checkpoint_at": split, "killed_at": split + 2, "total": total,
        "max_rel_diff_per_iteration_after_resume": {str(it): round(v, 6) for it, v in rel.items()},
        "identical": exact, "pass": ok,
        "criterion": "bitwise equal on the CPU; on CUDA every loss term of the first 3 iterations after "
                     f"resume within rel. {RESUME_REL} (bf16, non-deterministic cuDNN)",
    }
    report.put("resume", row)
    print(f"  kill-and-resume {variant}: pass {ok}, identical {exact}, max rel diff first 3 after resume "
          f"{max(rel[it] for it in first):.2e}", flush=True)


def write_synthetic_data(folder: Path, n_cases: int = 3, n: int = 6, size: int = 64) -> None:
    """Slice files (plain npz with ct, mr, role, patient) of ellipse 'heads' whose MR is a function of the CT."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    for case in range(n_cases + 1):
        role, sub = ("paired_test", "test") if case == n_cases else ("paired_train", "train")
        cts, mrs = [], []
        for _ in range(n):
            r = np.sqrt((xx / (0.35 + 0.05 * rng.random())) ** 2 + (yy / (0.4 + 0.05 * rng.random())) ** 2)
            skull = (r > 0.8) & (r < 1)
            blob = np.exp(-((xx - 0.1 * rng.standard_normal()) ** 2 + yy**2) / 0.01) * (r < 0.8)
            cts.append((np.where(r < 1, 90, 0) + 160 * skull + 60 * blob).clip(0, 255).astype(np.uint8))
            mrs.append((np.where(r < 0.8, 200, 0) - 80 * blob + 40 * skull).clip(0, 255).astype(np.uint8))
        (folder / sub).mkdir(parents=True, exist_ok=True)
        # the whole slice-file contract (DEVELOPING.md), written with numpy only
        np.savez_compressed(
            folder / sub / f"synth{case}.npz", ct=np.stack(cts), mr=np.stack(mrs),
            head_mask=np.ones((n, size, size), bool), brain_mask=np.ones((n, size, size), bool),
            z_index=np.arange(n, dtype=np.int64), crop_origin=np.zeros(2, np.int64), crop_size=np.int64(size),
            ref_shape=np.array([n, size, size], np.int64), ref_spacing=np.ones(3), ref_origin=np.zeros(3),
            ref_direction=np.eye(3).ravel(), role=np.array(role), patient=np.array(f"synth{case}"), source=np.array("volume"),
        )


def data_files(data: Path) -> dict[str, list[Path]]:
    return {k: sorted((data / k).glob("*.npz")) for k in ("train", "test", "mr_only")}


def real_data_section(report: Report, profile: dict[str, Any], device: torch.device, data: Path, seconds: float,
                      deadline: float, variants: tuple[str, ...] = ("paired", "mrgan")) -> None:
    files = data_files(data)
    if not files["train"] or not files["test"]:
        report.put("real_data", {"skipped": f"no prepared slices in {data} (run bench/prep_gpu_data.py first)"})
        return
    results: dict[str, Any] = {"data": str(data), "train_files": [p.name for p in files["train"]],
                               "test_files": [p.name for p in files["test"]],
                               "mr_only_files": [p.name for p in files["mr_only"]], "seconds_each": seconds, "variants": {}}
    test = [read_slice_file(p) for p in files["test"]]
    ct_test = np.concatenate([d["ct"] for d in test])
    mr_test = np.concatenate([d["mr"] for d in test]).astype(np.float64)
    for variant in variants:
        remaining = deadline - time.perf_counter()
        if remaining < 5:
            results["variants"][variant] = {"skipped": "time budget exhausted"}
            report.put("real_data", results)
            continue
        budget = min(seconds, remaining - 3)
        s = settings_for(profile, device, n_const=10**9, n_decay=0, unpaired_includes_paired=True)
        train_files = files["train"] + (files["mr_only"] if variant != "paired" else [])
        pools = build_pools(train_files, s.image_size, s.unpaired_includes_paired)
        with torch_runtime(s, device):
            torch.manual_seed(s.seed)
            trainer = Trainer(s, variant, device)
            sampler = BatchedSampler(pools, data_for(variant), AugmentConfig(s.image_size, s.effective_pad_to), s.seed, device)
            acc: Any = 0.0
            t0 = time.perf_counter()
            its = 0
            while time.perf_counter() - t0 < budget:
                for _ in range(10):  # check the clock every 10 iterations (no sync in between)
                    acc = acc + trainer.step(sampler.draw(), sync=False)["G_total"]
                    its += 1
            sync(device)
            train_s = time.perf_counter() - t0
            model = LoadedModel(syn_mr=trainer.nets["syn_mr"].eval(), syn_ct=None, info={"variant": variant},
                                device=device, model_dir=Path("."), image_size=s.image_size)
            synth = synthesize_slices(model, ct_test, batch_size=16, cycle=False)["mr_slices"]
        mae = float(np.mean(np.abs(synth.astype(np.float64) - mr_test)))
        train_mr = pools.paired_mr.float().mean(0)
        side = mr_test.shape[-1]
        if train_mr.shape[-1] != side:
            train_mr = torch.nn.functional.interpolate(train_mr[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
        baseline = float(np.mean(np.abs(np.round(train_mr.numpy())[None] - mr_test)))
        results["variants"][variant] = {
            "iterations": its, "train_seconds": round(train_s, 1), "ms_per_iteration": round(1000 * train_s / its, 2),
            "mean_G_total": round(float(acc) / its, 4), "heldout_mae": round(mae, 2),
            "baseline_mae_mean_training_mr": round(baseline, 2), "heldout_slices": int(len(ct_test)),
            "lr": "constant 2e-4 (no decay: a time budget, not an iteration count)",
        }
        report.put("real_data", results)
        _example_png(report.out / f"gpu_check_{variant}_example.png", ct_test, synth, mr_test, variant)
        print(f"  real data {variant}: {its} iterations in {train_s:.0f} s, held-out MAE {mae:.2f} (baseline {baseline:.2f})", flush=True)
        del trainer, sampler
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _example_png(path: Path, ct: np.ndarray, synth: np.ndarray, mr: np.ndarray, variant: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = len(ct) // 2
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, img, title in zip(axes, (ct[i], synth[i], mr[i]), ("CT", f"Syn_MR ({variant})", "reference MR"), strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# --------------------------------------------------------------------------- markdown


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def to_markdown(data: dict[str, Any]) -> str:
    meta, sec = data["meta"], data["sections"]
    env = sec.get("environment", {})
    lines = [
        "# GPU check" + (" (CPU smoke rehearsal)" if meta.get("smoke") else ""),
        "",
        commit_line(data.get("commit", "unknown")),
        "",
        f"Command: `{meta.get('command')}`; started {meta.get('started_utc')} UTC; "
        f"wall time {meta.get('wall_s', '?')} s of a {meta.get('budget_s')} s budget.",
        f"Device: {env.get('gpu_name', env.get('device', '?'))}; torch {env.get('torch')}, CUDA {env.get('cuda_runtime')}, "
        f"cuDNN {env.get('cudnn')}, Python {env.get('python')}.",
        "",
    ]
    speed = sec.get("training_speed", [])
    if speed:
        lines += [
            "## Training speed (batch 1; median of the timed iterations after warm-up)",
            "",
            "| variant | mode | size | median ms/it | p10 | p90 | wall mean ms/it | timed its | warm-up s | peak MiB | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in speed:
            lines.append(
                f"| {r['variant']} | {r['mode']} | {r['image_size']} | {_fmt(r.get('median_ms'))} | {_fmt(r.get('p10_ms'))} | "
                f"{_fmt(r.get('p90_ms'))} | {_fmt(r.get('wall_mean_ms'))} | {_fmt(r.get('iterations_timed'))} | "
                f"{_fmt(r.get('warmup_s'))} | {_fmt(r.get('peak_mem_mib'))} | {r.get('skipped', r.get('error', r.get('note', '')))} |"
            )
        lines.append("")
    syn = sec.get("synthesis", [])
    if syn:
        lines += ["## Synthesis (Syn_MR)", "", "| batch | size | forward ms/slice | end-to-end ms/slice (uint8 in/out) | peak MiB | precision |",
                  "|---|---|---|---|---|---|"]
        for r in syn:
            if "skipped" in r:
                lines.append(f"| {r['batch']} | - | {r['skipped']} | | | |")
            else:
                lines.append(f"| {r['batch']} | {r['image_size']} | {_fmt(r['forward_ms_per_slice'])} | {_fmt(r['end_to_end_ms_per_slice'])} | "
                             f"{_fmt(r['peak_mem_mib'])} | {r['precision']} |")
        lines.append("")
    agr = sec.get("bf16_agreement", [])
    if agr:
        lines += ["## bf16 vs fp32 (G_total, same start, same images)", "", "| variant | iterations | rel. diff first | median | max | agree | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in agr:
            if "skipped" in r:
                lines.append(f"| {r['variant']} | - | | | | | {r['skipped']} |")
            else:
                lines.append(f"| {r['variant']} | {r['iterations']} | {_fmt(r['rel_diff_first'])} | {_fmt(r['rel_diff_median'])} | "
                             f"{_fmt(r['rel_diff_max'])} | {r['agree']} | {r.get('note', '')} |")
        lines += ["", f"Criterion: {agr[0].get('criterion', '')}.", ""]
    sc = sec.get("sync_check")
    if sc:
        lines += ["## Host synchronisation per iteration (torch.cuda.set_sync_debug_mode('error'))", ""]
        lines += [f"- {k}: {v}" for k, v in sc.items()] + [""]
    res = sec.get("resume")
    if res:
        lines += ["## Kill and resume", ""]
        if "skipped" in res:
            lines.append(res["skipped"])
        else:
            lines.append(f"{res['variant']}: checkpoint at {res['checkpoint_at']}, killed at {res['killed_at']}, resumed to {res['total']}: "
                         f"**pass {res['pass']}** (identical: {res['identical']}). Max relative difference per iteration after resume: "
                         f"{res['max_rel_diff_per_iteration_after_resume']}. Criterion: {res['criterion']}.")
        lines.append("")
    real = sec.get("real_data")
    if real:
        lines += ["## Real data (prepared slices: Harvard on the GPU), fixed time each", ""]
        if "skipped" in real:
            lines.append(real["skipped"])
        else:
            lines += [f"Train: {', '.join(real['train_files'])} (+ MR-only {len(real['mr_only_files'])} files for mrgan); "
                      f"held out: {', '.join(real['test_files'])}.", "",
                      "| variant | iterations | s | ms/it | mean G_total | held-out MAE | baseline MAE (mean training MR) |", "|---|---|---|---|---|---|---|"]
            for v, r in real["variants"].items():
                if "skipped" in r:
                    lines.append(f"| {v} | {r['skipped']} | | | | | |")
                else:
                    lines.append(f"| {v} | {r['iterations']} | {r['train_seconds']} | {r['ms_per_iteration']} | {r['mean_G_total']} | "
                                 f"{r['heldout_mae']} | {r['baseline_mae_mean_training_mr']} |")
            lines += ["", "MAE in grey levels 0..255 over the whole held-out slices (256 x 256 for the Harvard data); "
                      "baseline: the mean training MR slice for every held-out slice."]
        lines.append("")
    if data["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    if data["errors"]:
        lines += ["## Errors", ""] + [f"- {e['section']}: {e['error']}" for e in data["errors"]] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="results folder (gpu_check.json, gpu_check.md, example PNGs)")
    ap.add_argument("--smoke", action="store_true", help="CPU rehearsal at tiny sizes (what tests/test_gpu_check.py runs)")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--data", type=Path, default=None, help=f"prepared slices (default {DEFAULT_DATA}; synthetic with --smoke)")
    ap.add_argument("--budget-s", type=float, default=None, help="total wall-time budget in seconds (default 455 on GPU)")
    ap.add_argument("--train-seconds", type=float, default=None, help="real-data training time per variant (default 45 on GPU)")
    ap.add_argument("--sections", default="all", help="comma list of: environment,sync,speed,synthesis,agreement,resume,real_data,compile")
    ap.add_argument("--commit", default=None,
                    help=f"the git commit of this tree, recorded in the results "
                         f"(default: ${ENV_VAR}, else git, else 'unknown')")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    prov = provenance(args.commit)
    profile = dict(PROFILES["smoke" if args.smoke else "gpu"])
    budget = args.budget_s if args.budget_s is not None else profile["budget_s"]
    deadline_total = t_start + budget
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: more threads only add overhead (and stall on shared machines)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); use --smoke for the CPU rehearsal", file=sys.stderr)
        return 2
    wanted = set(args.sections.split(",")) if args.sections != "all" else {"environment", "sync", "speed", "synthesis", "agreement", "resume", "real_data", "compile"}
    seconds = args.train_seconds if args.train_seconds is not None else profile["train_seconds"]
    out: Path = args.out
    work = out / "work"
    meta = {
        "command": " ".join(["python", "bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke, "budget_s": budget, "profile": {k: v for k, v in profile.items() if k != "shares"},
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "variants": list(VARIANTS),
        "recorded": prov["recorded"], "host": prov["host"],
    }
    report = Report(out, meta, prov["commit"])
    variants = list(VARIANTS)  # the trainer's own table: new variants appear here automatically

    data = args.data
    if data is None:
        if args.smoke:
            data = work / "smoke_data"
            write_synthetic_data(data)
            report.note("smoke run: synthetic slice files (ellipse heads), not the Harvard slices")
        else:
            data = DEFAULT_DATA

    def deadline_for(name: str) -> float:
        return min(time.perf_counter() + profile["shares"][name], deadline_total - 5)

    def run(name: str, key: str, fn: Callable[[float], None]) -> None:
        if key not in wanted:
            return
        dl = deadline_for(name) if name in profile["shares"] else deadline_total - 5
        left = dl - time.perf_counter()
        if left <= 1:
            report.note(f"{name}: skipped, time budget exhausted")
            return
        print(f"[{time.perf_counter() - t_start:6.1f} s] {name} (up to {left:.0f} s)", flush=True)
        try:
            with time_guard(left + 2):
                fn(dl)
        except SectionTimeout as exc:
            report.note(f"{name}: stopped by the time guard ({exc}); partial results kept")
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            report.error(name, exc)
            print(f"  {name} failed: {type(exc).__name__}: {exc}", flush=True)
        finally:
            meta["wall_s"] = round(time.perf_counter() - t_start, 1)
            report.write()

    run("environment", "environment", lambda dl: report.put("environment", environment(device)))
    run("sync_check", "sync", lambda dl: report.put("sync_check", sync_check(device, profile, variants)))
    run("speed_eager", "speed", lambda dl: speed_section(report, profile, device, EAGER_MODES, variants, profile["warmup"], dl, "training_speed"))
    run("synthesis", "synthesis", lambda dl: synthesis_section(report, profile, device, dl))
    run("agreement", "agreement", lambda dl: agreement_section(report, profile, device, variants, dl))
    resume_data = data
    if not data_files(data)["train"] and "resume" in wanted:
        resume_data = work / "synthetic_data"  # the resume check needs slices, not real ones
        write_synthetic_data(resume_data, size=profile["arch"]["image_size"])
        report.note(f"resume: no prepared slices in {data}; ran on synthetic slices")
    resume_files = data_files(resume_data)["train"] + data_files(resume_data)["mr_only"]
    run("resume", "resume", lambda dl: resume_section(report, profile, device, resume_files, work))
    run("real_data", "real_data", lambda dl: real_data_section(report, profile, device, data, seconds, dl))
    # compilation last: it takes whatever time is left
    compile_variants = sorted(variants, key=lambda v: v != "mrgan")  # the 15 ms goal is about mrgan: first
    run("compile", "compile", lambda dl: speed_section(report, profile, device, COMPILE_MODES, compile_variants,
                                                      profile["compile_warmup"], dl, "training_speed"))
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    if device.type == "cpu":
        report.note("no GPU: every CUDA-only path (bf16 autocast, channels_last, torch.compile, CUDA graphs) was skipped or ran as fp32")
    report.write()
    print(f"\nwall time {meta['wall_s']} s; results in {out}/gpu_check.md and gpu_check.json")
    print(to_markdown(report.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
