"""Benchmark: affine MR->CT registration backends -- runtime and accuracy (TRE) on cases with a known affine.

Run:  .venv/bin/python bench/bench_registration.py [--cases phantom256,stroke] [--backends simpleitk,antspy,elastix,afni]
Writes bench/results/registration.md and bench/results/registration.json.

Cases (each with a known true affine, CT/fixed point -> MR/moving point):

* ``phantom256``: a phantom head (``ct2mr.phantom.patient``) with CT spacing 1 mm and a
  256 mm field of view (256^3 voxels), the MR at the default 1.2x1.1x3.0 mm
  resampled to 1 mm; skull stripping with ``ct2mr.preprocess.skull_mask``; registration of
  the skull-stripped pair with the CT brain mask, i.e. exactly what
  ``ct2mr register`` does for a 256^3 head.
* ``stroke``: real multimodal MR (../shared/data/volumes, brain-extracted, 1 mm,
  124x160x140): T1 (fixed) vs T2 (moving) with a known affine applied to the T2
  (5 deg about z, 3 deg about x, scales 1.02/0.99/1, shift (4, -3, 2) mm).

For every backend: wall time of ``register_affine`` (estimation only, inputs in
memory), process CPU time, and TRE (mean/median/p95/max mm over 5000 fixed-mask
voxel centres). The SimpleITK backend is also run with all cores
(``threads=None``) besides the default single thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.io.atomic import write_json, write_text
from ct2mr.preprocess.registration import BACKENDS, RegistrationSettings, backend_available, register_affine
from ct2mr.preprocess.registration.quality import mask_points, tre_mm, tre_stats

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_registration)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402

VOLUMES = REPO.parent / "shared" / "data" / "volumes"


def case_phantom256(patient: str = "P01") -> dict[str, Any]:
    from ct2mr.phantom.patient import PhantomParams, make_patient
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.skull_mask import ct_masks, mr_masks

    t0 = time.perf_counter()
    p = make_patient(patient, 2018, PhantomParams(ct_spacing_mm=(1.0, 1.0, 1.0), fov_mm=(256.0, 256.0, 256.0)))
    t1 = time.perf_counter()
    mr = resample_isotropic(p.mr, (1.0, 1.0, 1.0))
    cm = ct_masks(p.ct)
    mm = mr_masks(mr)
    t2 = time.perf_counter()
    return {"name": f"phantom256-{patient}", "fixed": cm.stripped, "moving": mm.stripped, "mask": cm.brain, "truth": p.truth,
            "note": f"CT {p.ct.GetSize()} 1 mm; MR {mr.GetSize()} 1 mm (from 1.2x1.1x3.0); phantom {t1 - t0:.1f} s, "
                    f"MR resampling + both masks {t2 - t1:.1f} s (not counted)"}


def case_stroke() -> dict[str, Any] | None:
    if not (VOLUMES / "mr_brain_t1_stroke.nii.gz").is_file():
        return None
    t1 = sitk.ReadImage(str(VOLUMES / "mr_brain_t1_stroke.nii.gz"), sitk.sitkFloat32)
    t2 = sitk.ReadImage(str(VOLUMES / "mr_brain_t2_stroke.nii.gz"), sitk.sitkFloat32)
    c = t1.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in t1.GetSize()])
    e = sitk.Euler3DTransform()
    e.SetRotation(np.deg2rad(3.0), 0.0, np.deg2rad(5.0))
    truth = sitk.AffineTransform(3)
    truth.SetCenter(c)
    truth.SetMatrix((np.asarray(e.GetMatrix()).reshape(3, 3) @ np.diag([1.02, 0.99, 1.0])).ravel().tolist())
    truth.SetTranslation((4.0, -3.0, 2.0))
    t2p = sitk.ConstantPad(t2, [12] * 3, [12] * 3, 0.0)
    moving = sitk.Resample(t2p, t2p, truth.GetInverse(), sitk.sitkLinear, 0.0)
    return {"name": "stroke", "fixed": t1, "moving": moving, "mask": sitk.Cast(t1 > 0, sitk.sitkUInt8),
            "truth": truth, "note": f"T1 fixed {t1.GetSize()} 1 mm, T2 moving {moving.GetSize()} (padded 12)"}


RECOMMENDATION = (
    "Default backend: **simpleitk** (settings above). On the 256^3 1 mm phantom heads it takes 1-3 s wall "
    "(one thread; two threads ~1.5x faster but not bit-reproducible) with a mean TRE under 0.3 mm, and on "
    "the real T1/T2 pair it is as accurate as antspy and within ~0.05 mm of elastix. antspy and elastix "
    "reach similar accuracy (TRE 0.16-0.42 mm) in 4-10x the time (5-12 s wall here), which does not fit "
    "the <= 15 s per-patient chain on 2 cores; they stay selectable with `--backend` as cross-checks. "
    "afni needs AFNI installed (not available here, so not measured)."
)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (elastix / AFNI run as programs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_case(case: dict[str, Any], backends: list[str]) -> list[dict[str, Any]]:
    pts = mask_points(case["mask"], 5000, seed=0)
    rows = [{"case": case["name"], "backend": "identity", "threads": None, "wall_s": 0.0, "cpu_s": 0.0,
             "tre": tre_stats(sitk.AffineTransform(3), case["truth"], pts)}]
    runs: list[tuple[str, RegistrationSettings]] = []
    for b in backends:
        runs.append((b, RegistrationSettings()))
        if b == "simpleitk":
            runs.append((b, RegistrationSettings(threads=None)))
    for b, settings in runs:
        ok, why = backend_available(b)
        if not ok:
            rows.append({"case": case["name"], "backend": b, "skipped": why})
            print(f"{case['name']:10s} {b:10s} skipped: {why}", flush=True)
            continue
        c0 = _cpu()
        res = register_affine(case["fixed"], case["moving"], b, fixed_mask=case["mask"], settings=settings)
        cpu = _cpu() - c0
        stats = tre_stats(res.transform, case["truth"], pts)
        rows.append({"case": case["name"], "backend": b, "threads": settings.threads, "wall_s": round(res.runtime_s, 2),
                     "cpu_s": round(cpu, 2), "tre": stats, "log_tail": res.log[-1200:]})
        print(f"{case['name']:10s} {b:10s} threads={settings.threads} wall {res.runtime_s:6.2f} s "
              f"cpu {cpu:6.2f} s  TRE {stats['mean']:.3f} mm (p95 {stats['p95']:.3f})", flush=True)
    assert tre_mm(sitk.AffineTransform(3), case["truth"], pts) == rows[0]["tre"]["mean"]
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="stroke,phantom256:P01,phantom256:P02",
                    help="comma list of stroke, phantom256:<patient id>")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "registration")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    rows: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    prov = provenance()
    load_before = os.getloadavg()
    for name in args.cases.split(","):
        kind, _, patient = name.partition(":")
        case = case_stroke() if kind == "stroke" else case_phantom256(patient or "P01")
        if case is None:
            notes[name] = "skipped: data not found"
            continue
        notes[name] = case["note"]
        print(f"{name}: {case['note']}", flush=True)
        rows.extend(run_case(case, backends))
    d = RegistrationSettings()
    result = {
        "commit": prov["commit"], "recorded": prov["recorded"],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "simpleitk": sitk.Version.VersionString(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "settings": d.to_dict(),
        "cases": notes,
        "rows": rows,
    }
    write_json(args.out.with_suffix(".json"), result)

    lines = [
        "# Registration benchmark (affine MR -> CT, mutual information)",
        "",
        commit_line(prov["commit"]),
        "",
        "Command: `.venv/bin/python bench/bench_registration.py` "
        f"(cases {args.cases}; backends {','.join(backends)})",
        "",
        f"Machine: {result['machine']}, {result['cpus']} cores, Python {result['python']}, "
        f"SimpleITK {result['simpleitk']}. Load average before/after: {result['loadavg_before']} / "
        f"{result['loadavg_after']} (other jobs share the cores: wall times are inflated by that load).",
        "",
        f"Default settings: `{d.to_dict()}`",
        "",
        "Cases:",
        *[f"* `{k}`: {v}" for k, v in notes.items()],
        "",
        "Wall = `register_affine` only (estimation; images in memory); CPU includes child processes "
        "(elastix). TRE over 5000 fixed-mask voxel centres (mm).",
        "",
        "| case | backend | threads | wall s | CPU s | TRE mean | median | p95 | max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['case']} | {r['backend']} | | skipped: {r['skipped']} | | | | | |")
            continue
        t = r["tre"]
        thr = "all" if r["threads"] is None and r["backend"] != "identity" else (r["threads"] or "")
        lines.append(f"| {r['case']} | {r['backend']} | {thr} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                     f"{t['mean']:.3f} | {t['median']:.3f} | {t['p95']:.3f} | {t['max']:.3f} |")
    lines += ["", "## Recommendation", "", RECOMMENDATION]
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
