"""Benchmark: phantom generation, image writing/reading and ingest.

Run:  .venv/bin/python bench/bench_ingest.py [--repeats 3]
Writes bench/results/ingest.md and bench/results/ingest.json.

Measures (wall time, seconds; median and min of --repeats runs):
* make_patient at the default cohort geometry (CT 0.8x0.8x2.5 mm, 263x300x48;
  MR 1.2x1.1x3.0 mm) and at a coarse test geometry;
* writing the CT / MR as NIfTI and as a DICOM series, and reading them back;
* ingest of the real volumes in ../shared/data/volumes (when present).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ct2mr.io.atomic import write_json, write_text
from ct2mr.io.imageio import read_image, write_dicom_series, write_image
from ct2mr.preprocess.ingest import ingest, orientation_code
from ct2mr.phantom.patient import PhantomParams, make_patient

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_ingest)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402

VOLUMES = REPO.parent / "shared" / "data" / "volumes"


def timeit(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_s": statistics.median(times), "min_s": min(times), "cpu_median_s": statistics.median(cpu),
            "repeats": repeats}


def _figure(path: Path) -> None:
    """Axial slices of four default-size phantom patients (CT, MR, registered MR, labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ct2mr.io.atomic import atomic_path

    fig, axes = plt.subplots(5, 4, figsize=(12, 15))
    for col, pid in enumerate(["P01", "P02", "P03", "P04"]):
        pat = make_patient(pid, 2018)
        ct = sitk.GetArrayFromImage(pat.ct)
        reg = sitk.GetArrayFromImage(sitk.Resample(pat.mr, pat.ct, pat.truth, sitk.sitkLinear, 0.0))
        lab = sitk.GetArrayFromImage(pat.labels)
        z = ct.shape[0] // 2 + 4
        zc = pat.ct.TransformIndexToPhysicalPoint((0, 0, z))[2]
        mr = sitk.GetArrayFromImage(pat.mr)
        zm = pat.mr.TransformPhysicalPointToIndex((0.0, 0.0, zc))[2]
        panels = [
            (ct[z], dict(cmap="gray", vmin=0, vmax=80)),
            (ct[z], dict(cmap="gray", vmin=-1000, vmax=1600)),
            (mr[zm], dict(cmap="gray")),
            (reg[z], dict(cmap="gray")),
            (lab[z], dict(cmap="tab10", vmin=0, vmax=9)),
        ]
        for row, (img, kw) in enumerate(panels):
            axes[row, col].imshow(img, interpolation="nearest", **kw)
            axes[row, col].set_axis_off()
        axes[0, col].set_title(pid)
    for row, name in enumerate(["CT W80/L40", "CT bone", "MR (raw)", "MR @ truth", "labels"]):
        axes[row, 0].text(-0.05, 0.5, name, transform=axes[row, 0].transAxes, rotation=90, ha="right", va="center")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=60)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    r = args.repeats
    prov = provenance()
    rows: list[tuple[str, str, dict[str, float]]] = []

    default = PhantomParams()
    coarse = PhantomParams(ct_spacing_mm=(2.0, 2.0, 3.0), mr_spacing_mm=(2.5, 2.5, 3.5))
    pat = make_patient("P01", 2018, default)
    ct_size = "x".join(map(str, pat.ct.GetSize()))
    mr_size = "x".join(map(str, pat.mr.GetSize()))
    rows.append(("make_patient, default geometry", f"CT {ct_size}, MR {mr_size}",
                 timeit(lambda: make_patient("P01", 2018, default), r)))
    small = make_patient("P01", 2018, coarse)
    rows.append(("make_patient, coarse test geometry",
                 f"CT {'x'.join(map(str, small.ct.GetSize()))}, MR {'x'.join(map(str, small.mr.GetSize()))}",
                 timeit(lambda: make_patient("P01", 2018, coarse), r)))

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rows.append(("write CT .nii.gz", ct_size, timeit(lambda: write_image(pat.ct, t / "ct.nii.gz"), r)))
        rows.append(("read CT .nii.gz", ct_size, timeit(lambda: read_image(t / "ct.nii.gz"), r)))
        rows.append(("write CT DICOM series", f"{pat.ct.GetDepth()} files",
                     timeit(lambda: write_dicom_series(pat.ct, t / "ct_dcm", "CT"), r)))
        rows.append(("read CT DICOM series", f"{pat.ct.GetDepth()} files", timeit(lambda: read_image(t / "ct_dcm"), r)))
        back = read_image(t / "ct_dcm")
        exact = bool(np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(pat.ct)))
        rows.append(("write MR DICOM series", f"{pat.mr.GetDepth()} files",
                     timeit(lambda: write_dicom_series(pat.mr, t / "mr_dcm", "MR"), r)))
        mr_back = sitk.GetArrayFromImage(read_image(t / "mr_dcm"))
        mr_err = float(np.abs(mr_back - sitk.GetArrayFromImage(pat.mr)).max())
        rows.append(("ingest phantom CT (DICOM)", ct_size, timeit(lambda: ingest(t / "ct_dcm", "ct"), r)))
        write_image(sitk.DICOMOrient(pat.mr, "RAS"), t / "mr_ras.nii.gz")
        rows.append(("ingest phantom MR (NIfTI, RAS)", mr_size, timeit(lambda: ingest(t / "mr_ras.nii.gz", "mr"), r)))

    real: list[dict[str, object]] = []
    if VOLUMES.is_dir():
        for name, modality in (("ct_head_invesalius.nii.gz", "ct"), ("mr_head_t1_seg3d.nii.gz", "mr"),
                               ("mr_head_t1_mne.nii.gz", "mr")):
            path = VOLUMES / name
            raw = read_image(path)
            out = ingest(path, modality)  # type: ignore[arg-type]
            arr = sitk.GetArrayViewFromImage(out)
            real.append({
                "file": name, "modality": modality, "size": list(raw.GetSize()),
                "orientation_before": orientation_code(raw), "orientation_after": orientation_code(out),
                "spacing_mm": [round(s, 4) for s in out.GetSpacing()], "pixel_type": out.GetPixelIDTypeAsString(),
                "range": [float(arr.min()), float(arr.max())],
            })
            rows.append((f"ingest {name}", "x".join(map(str, raw.GetSize())),
                         timeit(lambda p=path, m=modality: ingest(p, m), r)))  # type: ignore[misc]

    result = {
        "commit": prov["commit"], "recorded": prov["recorded"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
        "simpleitk": sitk.Version_VersionString(),
        "timings": [{"what": w, "size": s, **v} for w, s, v in rows],
        "dicom_ct_round_trip_exact": exact,
        "dicom_mr_round_trip_max_abs_error": mr_err,
        "mr_max": float(sitk.GetArrayViewFromImage(pat.mr).max()),
        "real_data": real,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }
    out_dir = REPO / "bench" / "results"
    write_json(out_dir / "ingest.json", result)
    lines = [
        "# Phantom generation, image I/O and ingest",
        "",
        commit_line(prov["commit"]),
        "",
        f"Command: `.venv/bin/python bench/bench_ingest.py --repeats {r}` "
        f"(machine: {result['machine']}, 2 shared cores; Python {result['python']}, SimpleITK {result['simpleitk']}).",
        "",
        f"Load average during the run (other jobs share the 2 cores): {result['loadavg']}. "
        "Wall times are inflated by that load; CPU time (this process) is the stable number.",
        "",
        "| what | size | wall median s | wall min s | CPU median s |",
        "|---|---|---|---|---|",
        *[f"| {w} | {s} | {v['median_s']:.3f} | {v['min_s']:.3f} | {v['cpu_median_s']:.3f} |" for w, s, v in rows],
        "",
        f"DICOM CT round trip exact (HU): {exact}. DICOM MR round trip max abs error: {mr_err:.4f} "
        f"(MR max {result['mr_max']:.1f}; bound max/60000).",
        "",
    ]
    if real:
        lines += ["## Real volumes ingested", "", "| file | as | size | orientation | spacing mm | type | range |",
                  "|---|---|---|---|---|---|---|"]
        lines += [
            f"| {d['file']} | {d['modality']} | {'x'.join(map(str, d['size']))} | "  # type: ignore[arg-type]
            f"{d['orientation_before']} -> {d['orientation_after']} | {d['spacing_mm']} | {d['pixel_type']} | "
            f"{d['range'][0]:g}..{d['range'][1]:g} |"  # type: ignore[index]
            for d in real
        ]
        lines.append("")
    _figure(out_dir / "phantom_examples.png")
    lines += ["![phantom examples](phantom_examples.png)", "",
              "Rows: CT (W80/L40), CT (bone window), MR as generated (misaligned), MR resampled with the truth "
              "onto the CT grid, labels. Columns: patients P01-P04 (seed 2018), an axial slice above the ventricles' "
              "centre.", ""]
    write_text(out_dir / "ingest.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
