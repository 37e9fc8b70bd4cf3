"""Loading the two real unpaired pools of ../shared/data (ct2mr.preprocess.image_pools).

* ``head_ct_2d``: 200 web-sourced head CT images, 134-957 px, RGB / RGBA PNG;
* ``harvard_mr_unpaired``: 324 axial T2 slices (256 x 256 grey) of 13 MR-only patients.

Per pool: images, slices written, wall and CPU time of ``slices_from_pool`` (read,
grey conversion, placement on the 256 canvas, head mask), the head-mask coverage, and
a contact sheet of every 8th slice with its mask contour
(``bench/results/pools_{ct,mr}.png``). Writes ``bench/results/pools.{md,json}``.

Reproduce: ``.venv/bin/python bench/bench_pools.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_pools)
    sys.path.insert(0, str(REPO / "bench"))

from ct2mr.io.atomic import write_json, write_text  # noqa: E402
from ct2mr.preprocess.image_pools import pool_summary, slices_from_pool  # noqa: E402
from provenance import commit_line, provenance  # noqa: E402

DATA = REPO.parent / "shared" / "data"
OUT = REPO / "bench" / "results"
POOLS = {
    "ct": ("head_ct_2d", str(DATA / "head_ct_2d"), "ct_only"),
    "mr": ("harvard_mr_unpaired", str(DATA / "harvard_mr_unpaired" / "case*" / "*.png"), "mr_only"),
}


def contact_sheet(images: np.ndarray, masks: np.ndarray, path: Path, step: int = 8, ncol: int = 10) -> None:
    """Every ``step``-th slice with its head-mask contour (red), 128 px tiles."""
    from PIL import Image
    from scipy import ndimage

    idx = list(range(0, len(images), step))
    nrow = -(-len(idx) // ncol)
    sheet = Image.new("RGB", (ncol * 130, nrow * 130))
    for j, i in enumerate(idx):
        rgb = np.stack([images[i]] * 3, -1)
        edge = masks[i] & ~ndimage.binary_erosion(masks[i], iterations=2)
        rgb[edge] = (255, 0, 0)
        sheet.paste(Image.fromarray(rgb).resize((128, 128)), ((j % ncol) * 130, (j // ncol) * 130))
    sheet.save(path)


def main() -> int:
    if not DATA.is_dir():
        print(f"real data not found at {DATA}: nothing to do")
        return 0
    prov = provenance()
    result: dict = {"commit": prov["commit"], "recorded": prov["recorded"],
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg(), "pools": {}}
    for key, (name, spec, role) in POOLS.items():
        wall0, cpu0 = time.perf_counter(), time.process_time()
        d = slices_from_pool(spec, patient=name, role=role, size=256)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        summary = pool_summary(d)
        result["pools"][name] = {"spec": spec.replace(str(REPO.parent), ".."), "role": role, "wall_s": wall,
                                 "cpu_s": cpu, "ms_per_image_cpu": 1000 * cpu / summary["n_slices"], **summary}
        contact_sheet(d[key], d["head_mask"], OUT / f"pools_{key}.png")
    result["load_average_after"] = os.getloadavg()
    write_json(OUT / "pools.json", result)
    lines = ["# Real unpaired pools (ct2mr.preprocess.image_pools)", "", commit_line(prov["commit"]), "",
             f"Recorded {result['when']} on {result['cpus']} CPUs, load average "
             f"{result['load_average_before'][0]:.1f} (other jobs running: wall times are upper bounds).",
             "Command: `.venv/bin/python bench/bench_pools.py`.", "",
             "| pool | role | slices | wall s | CPU s | CPU ms / image | head mask, mean / min share of the canvas | empty masks |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in result["pools"].items():
        lines.append(f"| {name} | {r['role']} | {r['n_slices']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['ms_per_image_cpu']:.0f} | {100 * r['head_fraction_mean']:.0f}% / "
                     f"{100 * r['head_fraction_min']:.0f}% | {r['empty_masks']} |")
    lines += ["", "Contact sheets (every 8th slice, head-mask contour in red): `pools_ct.png`, `pools_mr.png`.", ""]
    write_text(OUT / "pools.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
