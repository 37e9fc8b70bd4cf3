"""Benchmark: short CPU training of the three variants on real paired slices (Harvard atlas).

Data: ``../shared/data/harvard_ctmr`` (256 x 256 8-bit CT/MR PNG pairs, 6 cases;
read-only, nothing is copied into the repo). Patient split: cases 2, 16, 20, 21
train (role paired_train), 28 and 32 held out. The data set has paired patients
only, so ``unpaired_includes_paired: true`` feeds the training slices to the
unpaired pools too. Settings: the ``demo`` preset (64 x 64, ngf 16, 3 blocks,
1200 iterations, 1 thread) unless ``--iterations`` is given.

Records in ``bench/results/training_harvard.{md,json}``: wall time per variant,
final losses, and the held-out MAE of Syn_MR (grey levels 0..255, whole slice at
64 x 64, mean over the two held-out patients' slices) next to a trivial baseline
(the mean training MR slice); loss curves ``training_harvard_{variant}.png`` and
one held-out example ``training_harvard_examples.png``.

    .venv/bin/python bench/bench_training_harvard.py [--iterations N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_training_harvard)
    sys.path.insert(0, str(REPO / "bench"))

from ct2mr.models.model_folder import load_generators  # noqa: E402
from ct2mr.preprocess.png_slices import slices_from_png  # noqa: E402
from ct2mr.preprocess.slices import save_slices  # noqa: E402
from ct2mr.training.train import train  # noqa: E402
from ct2mr.training.settings import preset_settings, settings_from_dict  # noqa: E402
from ct2mr.models.apply import resize_uint8  # noqa: E402
from provenance import commit_line, provenance  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "harvard_ctmr"
TRAIN_CASES = ("2", "16", "20", "21")
TEST_CASES = ("28", "32")
VARIANTS = ("paired", "unpaired", "mrgan")


def case_slices(case: str, role: str) -> dict:
    pattern = case + "???.png"  # case id = file name without its last three digits
    return slices_from_png(DATA / "CT" / pattern, DATA / "MR" / pattern, patient=f"harvard{case}", role=role)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=None, help="total iterations (default: the demo preset's)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "training_harvard")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"data not found: {DATA}")
    prov = provenance()
    work = args.work or Path(tempfile.mkdtemp(prefix="ct2mr_harvard_"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files = []
    for case in TRAIN_CASES:
        f = work / "slices" / f"harvard{case}.npz"
        save_slices(f, case_slices(case, "paired_train"))
        files.append(f)
    tests = {case: case_slices(case, "paired_test") for case in TEST_CASES}

    base = preset_settings("demo").to_dict()
    over: dict = {"unpaired_includes_paired": True}
    if args.iterations:
        over.update(n_const=args.iterations // 2, n_decay=args.iterations - args.iterations // 2)
    settings = settings_from_dict({**base, **over})
    size = settings.image_size
    test_ct = torch.cat([resize_uint8(d["ct"], size) for d in tests.values()])
    test_mr = torch.cat([resize_uint8(d["mr"], size) for d in tests.values()])
    train_mr = torch.cat([resize_uint8(np.load(f)["mr"], size) for f in files])
    baseline_mae = float((test_mr.float() - train_mr.float().mean(0)).abs().mean())

    results: dict[str, dict] = {}
    preds: dict[str, torch.Tensor] = {}
    load_before = os.getloadavg()
    t_all = time.perf_counter()
    for variant in VARIANTS:
        out = work / "models" / variant
        t = time.perf_counter()
        train(settings, files, out, variant)
        wall = time.perf_counter() - t
        info = json.loads((out / "model.json").read_text())
        g = load_generators(out, device="cpu").syn_mr
        with torch.no_grad():
            pred = ((g(test_ct.float().unsqueeze(1) / 127.5 - 1) + 1) * 127.5).clamp(0, 255).squeeze(1)
        preds[variant] = pred
        per_patient = []
        start = 0
        for d in tests.values():
            n = d["ct"].shape[0]
            per_patient.append(float((pred[start : start + n] - test_mr[start : start + n].float()).abs().mean()))
            start += n
        results[variant] = {
            "wall_s": round(wall, 1),
            "iterations": settings.total_iterations,
            "ms_per_iteration": round(1000 * wall / settings.total_iterations, 1),
            "final_losses": {k: round(v, 4) for k, v in info["final_losses"].items()},
            "heldout_mae_per_patient": dict(zip(TEST_CASES, [round(x, 2) for x in per_patient], strict=True)),
            "heldout_mae_mean": round(float(np.mean(per_patient)), 2),
        }
        shutil.copyfile(out / "loss_curve.png", args.out.parent / f"{args.out.name}_{variant}.png")
        print(variant, results[variant], flush=True)
    total = time.perf_counter() - t_all

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = int(tests[TEST_CASES[0]]["ct"].shape[0]) // 2
    panels = [("CT", test_ct[k]), ("reference MR", test_mr[k])] + [(v, preds[v][k]) for v in VARIANTS]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"held-out case {TEST_CASES[0]}, slice {k} ({size}x{size})")
    fig.tight_layout()
    fig.savefig(args.out.parent / f"{args.out.name}_examples.png", dpi=80)
    plt.close(fig)

    meta = {
        "data": "harvard_ctmr (../shared/data), train cases " + ", ".join(TRAIN_CASES) + "; held out " + ", ".join(TEST_CASES),
        "train_slices": int(train_mr.shape[0]),
        "heldout_slices": int(test_mr.shape[0]),
        "settings": settings.to_dict(),
        "total_wall_s": round(total, 1),
        "baseline_mae_mean_training_mr": round(baseline_mae, 2),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    record = {"commit": prov["commit"], "recorded": prov["recorded"], "meta": meta, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Short CPU training on real paired slices (Harvard atlas)",
        "",
        commit_line(prov["commit"]),
        "",
        f"{meta['date_utc']} UTC, torch {meta['torch']}, {meta['cpu_count']} CPUs (shared; load average "
        f"{load_before[0]:.1f} before, {meta['load_average_after'][0]:.1f} after).",
        f"Command: `.venv/bin/python bench/bench_training_harvard.py{' --iterations ' + str(args.iterations) if args.iterations else ''}`.",
        "",
        f"Data: {meta['data']} ({meta['train_slices']} training and {meta['heldout_slices']} held-out slice pairs).",
        f"Settings: demo preset ({size}x{size}, ngf {settings.ngf}, ndf {settings.ndf}, {settings.n_blocks} blocks, "
        f"{settings.total_iterations} iterations, {settings.num_threads} thread), unpaired_includes_paired: true.",
        "",
        "Held-out MAE: Syn_MR(CT) vs the reference MR, grey levels 0..255, whole slice at the model size, "
        "mean over the two held-out patients.",
        f"Trivial baseline (mean training MR slice): MAE {baseline_mae:.2f}.",
        "",
        "| variant | wall s | ms/it | held-out MAE (28 / 32) | mean | final G_total | final l1_mr_paired |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, r in results.items():
        pp = r["heldout_mae_per_patient"]
        lines.append(
            f"| {v} | {r['wall_s']} | {r['ms_per_iteration']} | {pp['28']} / {pp['32']} | {r['heldout_mae_mean']} | "
            f"{r['final_losses']['G_total']} | {r['final_losses'].get('l1_mr_paired', '-')} |"
        )
    lines += [
        "",
        f"Total wall time, three variants one after the other: {total:.0f} s.",
        "",
        "Loss curves: " + ", ".join(f"`{args.out.name}_{v}.png`" for v in VARIANTS)
        + f"; example: `{args.out.name}_examples.png`.",
        "A thousand-odd iterations at 64 x 64 is a smoke test of the training, not a reproduction of the paper's",
        "numbers (3e5 iterations at 256 x 256 on a GPU).",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')} (total {total:.0f} s)")


if __name__ == "__main__":
    main()
