"""Benchmark: preprocessing stages (resample, skull masks, window/normalise, slices) per patient.

Run:  .venv/bin/python bench/bench_preprocess.py [--repeats 3] [--skip-real]
Writes bench/results/preprocess.md and bench/results/preprocess.json.

Cases:
* a phantom head whose CT is 256^3 voxels after resampling to 1 mm
  (``PhantomParams(ct_spacing_mm=(0.8, 0.8, 2.0), fov_mm=(256, 256, 256))``: CT
  320x320x128 -> 256x256x256; MR at the default 1.2x1.1x3.0 mm);
* the real head CT ``../shared/data/volumes/ct_head_invesalius.nii.gz``
  (256x256x108 at 0.957x0.957x1.5 mm -> 245x245x161), when present.

Per stage two numbers:
* ``compute_s``: the library call alone, in this process (median and min of
  ``--repeats`` runs; inputs already in memory);
* ``cli_s`` / ``cli_peak_rss_mb``: the ``ct2mr <command>`` CLI run as the
  pipeline runs it (a fresh Python process: import, read, compute, write
  compressed NIfTI), wall time and peak resident memory of that process
  (``VmHWM`` from ``/proc/self/status``), one run.

The MR for the window/slices stages of the phantom is the native MR resampled
onto the CT grid through the known truth transform (stands in for the
registration output; registration itself is benchmarked in bench_register).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.io.atomic import write_json, write_text
from ct2mr.phantom.patient import PhantomParams, make_patient
from ct2mr.preprocess.resample import resample_isotropic, write_image
from ct2mr.preprocess.skull_mask import ct_masks, mr_masks
from ct2mr.preprocess.slices import extract_slices
from ct2mr.preprocess.window import normalise_mr, window_ct

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_preprocess)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402
VOLUMES = REPO.parent / "shared" / "data" / "volumes"
RESULTS = REPO / "bench" / "results"


def timeit(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, float], Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}, out


#: runs the ct2mr CLI, then prints the process's peak RSS (VmHWM, which, unlike ru_maxrss,
#: does not inherit the forking parent's memory)
_WRAPPER = (
    "import sys\n"
    "from ct2mr.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print('PEAK_KB', hwm, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def run_cli(args: list[str]) -> dict[str, float]:
    """Run the ``ct2mr ARGS`` CLI in a fresh process; wall time and its peak RSS (MB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], env=env, cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ct2mr {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KB")]
    return {"cli_s": wall, "cli_peak_rss_mb": int(peak[-1]) / 1024.0 if peak else float("nan")}


def bench_case(name: str, ct_raw: sitk.Image, mr_raw: sitk.Image | None, mr_on_ct: Callable[[sitk.Image], sitk.Image]
               | None, tmp: Path, repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    f = {k: str(tmp / f"{name}_{k}.nii.gz") for k in (
        "ct_raw", "ct", "head", "skull", "brain", "ct_brain", "ct_window", "mr_raw", "mr", "mr_head", "mr_brain",
        "mr_stripped", "mr_reg", "mr_norm")}
    write_image(ct_raw, f["ct_raw"])

    def add(stage: str, shape: str, stats: dict[str, float], cli: list[str]) -> None:
        row = {"case": name, "stage": stage, "shape": shape, "compute_median_s": stats["median_s"],
               "compute_min_s": stats["min_s"], "repeats": stats["repeats"], **run_cli(cli)}
        rows.append(row)
        print(f"{name:10s} {stage:22s} {shape:14s} compute {row['compute_median_s']:6.2f} s   "
              f"cli {row['cli_s']:6.2f} s  peak {row['cli_peak_rss_mb']:6.0f} MB", flush=True)

    st, ct = timeit(lambda: resample_isotropic(ct_raw), repeats)
    shp = "x".join(map(str, ct.GetSize()))
    add("resample ct", shp, st, ["resample", "--input", f["ct_raw"], "--output", f["ct"]])
    st, m = timeit(lambda: ct_masks(ct), repeats)
    add("skull-mask ct", shp, st, ["skull-mask", "--modality", "ct", "--input", f["ct"], "--head-mask", f["head"],
                                   "--brain-mask", f["brain"], "--stripped", f["ct_brain"], "--skull-mask",
                                   f["skull"], "--qa-png", str(tmp / f"{name}_qa_ct.png")])
    st, ctw = timeit(lambda: window_ct(ct), repeats)
    add("window ct", shp, st, ["window", "--modality", "ct", "--input", f["ct"], "--output", f["ct_window"]])
    mrn = None
    if mr_raw is not None and mr_on_ct is not None:
        write_image(mr_raw, f["mr_raw"])
        st, mr = timeit(lambda: resample_isotropic(mr_raw), repeats)
        mshp = "x".join(map(str, mr.GetSize()))
        add("resample mr", mshp, st, ["resample", "--input", f["mr_raw"], "--output", f["mr"]])
        st, _ = timeit(lambda: mr_masks(mr), repeats)
        add("skull-mask mr", mshp, st, ["skull-mask", "--modality", "mr", "--input", f["mr"], "--head-mask",
                                        f["mr_head"], "--brain-mask", f["mr_brain"], "--stripped",
                                        f["mr_stripped"], "--qa-png", str(tmp / f"{name}_qa_mr.png")])
        mr_reg = mr_on_ct(mr)
        write_image(mr_reg, f["mr_reg"])
        st, mrn = timeit(lambda: normalise_mr(mr_reg, m.head), repeats)
        add("window mr", shp, st, ["window", "--modality", "mr", "--input", f["mr_reg"], "--mask", f["head"],
                                   "--output", f["mr_norm"]])
    st, d = timeit(lambda: extract_slices(ctw, mrn, m.head, m.brain, patient=name, role="bench"), repeats)
    cli = ["slices", "--patient", name, "--role", "bench", "--ct", f["ct_window"], "--head-mask", f["head"],
           "--brain-mask", f["brain"], "--output", str(tmp / f"{name}.npz")]
    if mrn is not None:
        cli += ["--mr", f["mr_norm"]]
    add(f"slices ({len(d['z_index'])} kept)", shp, st, cli)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    prov = provenance()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        params = PhantomParams(ct_spacing_mm=(0.8, 0.8, 2.0), fov_mm=(256.0, 256.0, 256.0))
        p = make_patient("B001", 7, params)

        def mr_on_ct(mr: sitk.Image, ref_size=None) -> sitk.Image:  # noqa: ANN001
            ref = resample_isotropic(p.ct)
            return sitk.Resample(mr, ref, p.truth, sitk.sitkLinear, 0.0, sitk.sitkFloat32)

        rows += bench_case("phantom", p.ct, p.mr, mr_on_ct, tmp, args.repeats)
        real = VOLUMES / "ct_head_invesalius.nii.gz"
        if real.is_file() and not args.skip_real:
            ct = sitk.DICOMOrient(sitk.ReadImage(str(real)), "LPS")
            rows += bench_case("real_ct", ct, None, None, tmp, args.repeats)

    totals = {}
    for case in sorted({r["case"] for r in rows}):
        rr = [r for r in rows if r["case"] == case]
        totals[case] = {"compute_s": sum(r["compute_median_s"] for r in rr), "cli_s": sum(r["cli_s"] for r in rr),
                        "max_peak_rss_mb": max(r["cli_peak_rss_mb"] for r in rr)}
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
           "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), "numpy": np.__version__,
           "simpleitk": sitk.Version.VersionString(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    write_json(RESULTS / "preprocess.json", {"commit": prov["commit"], "recorded": prov["recorded"],
                                             "rows": rows, "totals": totals, "environment": env})
    lines = [
        "# Preprocessing benchmark (resample, skull masks, window, slices)",
        "",
        commit_line(prov["commit"]),
        "",
        "Reproduce: `.venv/bin/python bench/bench_preprocess.py` "
        f"(environment: {env['cpus']} CPUs, SimpleITK {env['simpleitk']} with {env['sitk_threads']} threads, "
        f"Python {env['python']}, {env['date_utc']} UTC; 1-min load average before/after the run: "
        f"{env['load_avg_1min_before_after']} -- above 2 means other jobs shared the 2 cores and times are inflated).",
        "",
        "`compute` = the library call on in-memory images (median of repeats); `cli` = `python -m ct2mr ...` in a",
        "fresh process (import + read + compute + compressed NIfTI write), with its peak resident memory.",
        "",
        "| case | stage | grid | compute median (s) | compute min (s) | cli wall (s) | cli peak RSS (MB) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['stage']} | {r['shape']} | {r['compute_median_s']:.2f} | "
                     f"{r['compute_min_s']:.2f} | {r['cli_s']:.2f} | {r['cli_peak_rss_mb']:.0f} |")
    lines += ["", "| case | total compute (s) | total cli wall (s) | max peak RSS (MB) |", "|---|---:|---:|---:|"]
    for case, t in totals.items():
        lines.append(f"| {case} | {t['compute_s']:.2f} | {t['cli_s']:.2f} | {t['max_peak_rss_mb']:.0f} |")
    lines += ["", "Target: the whole chain for one 256^3 head in <= 15 s on 2 cores, registration included.", ""]
    write_text(RESULTS / "preprocess.md", "\n".join(lines))
    print("wrote", RESULTS / "preprocess.md")


if __name__ == "__main__":
    main()
