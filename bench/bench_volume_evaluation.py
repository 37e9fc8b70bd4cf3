"""Benchmark: the cost per patient of the 3D evaluation jobs on a finished demo run.

Run:  nice .venv/bin/python bench/bench_volume_evaluation.py [--results results] [--downsample 2 1]
Writes bench/results/volume_evaluation.md (and .json).

What it measures: the workflow's new jobs exactly as the rules run them (``python -m ct2mr
segment-tissues`` once per volume test patient, ``python -m ct2mr evaluate-volume`` once per
variant x seed x patient), one after the other, on the demo's own files (``results/preprocessed``,
``results/slices``, ``results/synth``; written to a temporary folder, the run's results untouched).
Per job: wall seconds and CPU seconds (user + system of the child process: the interpreter's start
and imports included, as in the workflow). For each ``--downsample`` factor (the demo's
``evaluation.segmentation.downsample`` is 2; 1 = full resolution) the other settings are
``config/config.yaml``'s. The added `make demo` time is bounded below by total CPU / 2 cores
(the demo's machine) and above by the sum of the walls (jobs run one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit_line, provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "volume_evaluation"


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one child process; raises with its output when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(REPO / "results"), help="a finished demo run's results folder")
    ap.add_argument("--downsample", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args()
    prov = provenance()
    res = Path(args.results)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    seg = cfg["evaluation"]["segmentation"]
    synths = sorted((res / "synth").glob("*/seed*/*_mr.nii.gz"))
    patients = sorted({s.name.removesuffix("_mr.nii.gz") for s in synths})
    py = [sys.executable, "-m", "ct2mr", "--threads", "1"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_volume_") as tmp:
        for ds in args.downsample:
            settings = ["--contrast", seg["contrast"], "--iterations", str(seg.get("iterations", 1)),
                        "--mrf-smoothing", str(seg.get("mrf_smoothing", 0.1)), "--mrf-radius",
                        str(seg.get("mrf_radius", 1)), "--downsample", str(ds)]
            for p in patients:
                pre = res / "preprocessed" / p
                real_t = Path(tmp) / f"ds{ds}" / "real" / f"{p}.nii.gz"
                wall, cpu = _run([*py, "segment-tissues", "--mr", str(pre / "mr_norm.nii.gz"), "--brain-mask",
                                  str(pre / "ct_brain_mask.nii.gz"), "--slices", str(res / "slices" / f"{p}.npz"),
                                  "--output", str(real_t), *settings])
                rows.append({"downsample": ds, "job": "segment_real", "patient": p, "variant": "", "wall_s": wall,
                             "cpu_s": cpu})
                for s in synths:
                    if not s.name.startswith(f"{p}_"):
                        continue
                    variant, seed = s.parent.parent.name, s.parent.name.removeprefix("seed")
                    out = Path(tmp) / f"ds{ds}" / variant / seed / f"{p}.tsv"
                    wall, cpu = _run([*py, "evaluate-volume", "--patient", p, "--variant", variant, "--seed", seed,
                                      "--real", str(pre / "mr_norm.nii.gz"), "--synth", str(s),
                                      "--head-mask", str(pre / "ct_head_mask.nii.gz"),
                                      "--brain-mask", str(pre / "ct_brain_mask.nii.gz"),
                                      "--slices", str(res / "slices" / f"{p}.npz"), "--output", str(out),
                                      "--real-tissues", str(real_t),
                                      "--output-tissues", str(out.with_suffix(".nii.gz")), *settings])
                    values = dict(zip(*[line.split("\t") for line in out.read_text().splitlines()], strict=True))
                    rows.append({"downsample": ds, "job": "evaluate_volume", "patient": p, "variant": variant,
                                 "wall_s": wall, "cpu_s": cpu, "values": values})
                    print(rows[-1], flush=True)
    prov["load_after"] = [round(v, 2) for v in os.getloadavg()]
    OUT.with_suffix(".json").write_text(json.dumps({**prov, "settings": seg, "rows": rows}, indent=1))
    lines = ["# 3D evaluation cost per patient (demo run)", "", commit_line(prov["commit"]), "",
             f"Command: `nice .venv/bin/python bench/bench_volume_evaluation.py --downsample {' '.join(map(str, args.downsample))}`",
             "", f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average before / "
             f"after: {prov['host']['load_average']} / {prov['load_after']}), ITK threads 1, Python "
             f"{platform.python_version()}. Jobs run one after the other as the workflow runs them (`python -m ct2mr ...`: "
             "interpreter start and imports included). Demo run: 3 phantom test patients (118 x 240 x 209 voxels "
             "on the 1 mm CT grid, 118 synthesized slices), 4 variants, 1 seed. Settings: config/config.yaml's "
             f"evaluation.segmentation ({', '.join(f'{k} {v}' for k, v in seg.items() if k != 'downsample')}) with "
             "the downsample factor of each block.", ""]
    for ds in args.downsample:
        sel = [r for r in rows if r["downsample"] == ds]
        lines += [f"## downsample {ds} ({ds} mm segmentation voxels)", "",
                  "| job | patient | variant | wall s | CPU s | mae_3d_head | ms_ssim_3d_head | slice_jump_brain | "
                  "dice_csf | dice_gm | dice_wm | hd95_gm | hd95_wm |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sel:
            v = r.get("values", {})
            cols = [v.get(c, "") for c in ("mae_3d_head", "ms_ssim_3d_head", "slice_jump_brain", "dice_csf", "dice_gm",
                                             "dice_wm", "hd95_gm", "hd95_wm")]
            lines.append(f"| {r['job']} | {r['patient']} | {r['variant']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                         + " | ".join(cols) + " |")
        cpu = sum(r["cpu_s"] for r in sel)
        wall = sum(r["wall_s"] for r in sel)
        n_pat = len({r["patient"] for r in sel})
        lines += ["", f"In all: {len(sel)} jobs, {cpu:.1f} CPU-s, {wall:.1f} s wall one after the other; per patient "
                      f"(1 real segmentation + {len(sel) // max(n_pat, 1) - 1} variant jobs) {cpu / max(n_pat, 1):.1f} CPU-s; "
                      f"on the demo's 2 cores at least {cpu / 2:.0f} s of added wall time.", ""]
    (OUT.with_suffix(".md")).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
