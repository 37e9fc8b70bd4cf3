"""Registration stage: affine MR -> CT by mutual information, estimated on skull-stripped images.

The transform is estimated between the skull-stripped CT (fixed) and the
skull-stripped MR (moving), both on 1 mm grids, then applied to the FULL MR
(with skull) to put it on the full CT's grid. See :mod:`ct2mr.preprocess.registration`
for the backends and the transform convention (ITK: maps CT physical points,
mm LPS, to MR physical points).

CLI (``ct2mr register``)::

    --fixed CT_BRAIN.nii.gz            skull-stripped CT (HU, -1024 outside the brain)   [required]
    --moving MR_BRAIN.nii.gz           skull-stripped MR on its own 1 mm grid           [required]
    --fixed-full CT.nii.gz             CT with skull: the output grid                    [required]
    --moving-full MR.nii.gz            MR with skull, same space as --moving             [required]
    --fixed-mask CT_BRAIN_MASK.nii.gz  CT brain mask (uint8 0/1): metric region, MI and TRE points [required]
    --moving-mask MR_BRAIN_MASK        optional MR brain mask (intensity range; metric region)
    --backend simpleitk                simpleitk | antspy | elastix | afni  (default simpleitk)
    --out-image MR_REGISTERED.nii.gz   full MR resampled onto --fixed-full (linear, 0 outside, float32)  [required]
    --out-transform transform.tfm      ITK transform file (sitk.ReadTransform)            [required]
    --qa-json registration_qa.json     QA numbers (below)                                 [required]
    --qa-png registration_qa.png       CT/MR overlay before and after (Figure 2)          [required]
    --truth truth.json                 optional true affine (phantom; ct2mr.preprocess.registration.truth format)
    --mi-bins 32  --sampling-fraction 0.02  --min-samples 20000  --iterations 200
    --shrink-factors 4 2 1  --seed 0  --threads 1 (0 = all cores)  --mask-dilation-mm 4

``registration_qa.json`` keys: ``backend``, ``runtime_s`` (estimation wall
time), ``mi_before`` / ``mi_after`` (histogram MI in nats, ``--mi-bins`` bins,
between the skull-stripped CT and the skull-stripped MR resampled onto the CT
grid with the identity / the estimate, inside the CT brain mask), ``tre_mm`` and
``tre_mm_before`` (mean TRE of the estimate / identity vs ``--truth`` over
``n_points`` brain-mask voxel centres; ``null`` without ``--truth``),
``tre_stats`` (mean/median/p95/max, or null), ``n_points``, ``settings``,
``transform`` (matrix, translation, center; ITK semantics), ``inputs``,
``backend_log`` (last 4000 characters).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.atomic import atomic_path, library_write, write_json
from ct2mr.preprocess.registration import (
    BACKENDS,
    DEFAULT_BACKEND,
    RegistrationResult,
    RegistrationSettings,
    register_affine,
)
from ct2mr.preprocess.registration.quality import mask_points, mutual_information, tre_mm, tre_stats
from ct2mr.preprocess.registration.truth import truth_from_json

log = logging.getLogger(__name__)

#: number of brain-mask points at which TRE is measured (fixed seed: ``settings.seed``)
N_TRE_POINTS = 5000


def resample_to(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
                default: float = 0.0) -> sitk.Image:
    """``moving`` resampled onto ``reference``'s grid (linear, ``default`` outside), float32.

    ``transform`` maps reference (CT) points to moving (MR) points; ``None`` = identity.
    """
    tx = sitk.Transform(3, sitk.sitkIdentity) if transform is None else transform
    return sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), reference, tx, sitk.sitkLinear, float(default),
                         sitk.sitkFloat32)


def transform_dict(transform: sitk.AffineTransform) -> dict[str, Any]:
    """matrix (3x3 row-major), translation, center of an AffineTransform (mm)."""
    return {
        "matrix": np.asarray(transform.GetMatrix()).reshape(3, 3).tolist(),
        "translation": list(transform.GetTranslation()),
        "center": list(transform.GetCenter()),
    }


def write_transform(transform: sitk.Transform, path: str | Path) -> None:
    """Write an ITK transform file (.tfm / .txt / .mat / .h5) atomically."""
    def reads_back(tmp: Path) -> None:  # ITK's text transform writer does not raise on a short write
        back = sitk.ReadTransform(str(tmp))
        if back.GetNumberOfParameters() != transform.GetNumberOfParameters() or not np.allclose(
            back.GetParameters(), transform.GetParameters()
        ):
            raise ValueError("the transform read back differs from the one written")

    with atomic_path(path, verify=reads_back) as tmp, library_write(path):
        sitk.WriteTransform(transform, str(tmp))


def registration_qa(
    fixed: sitk.Image,
    moving: sitk.Image,
    fixed_mask: sitk.Image,
    result: RegistrationResult,
    settings: RegistrationSettings,
    truth: sitk.Transform | None = None,
) -> dict[str, Any]:
    """QA numbers of one registration (see the module docstring for the keys)."""
    mask = sitk.Resample(sitk.Cast(fixed_mask > 0, sitk.sitkUInt8), fixed, sitk.Transform(),
                         sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ffix = sitk.Cast(fixed, sitk.sitkFloat32)
    mi_before = mutual_information(ffix, resample_to(moving, fixed), mask, settings.mi_bins)
    mi_after = mutual_information(ffix, resample_to(moving, fixed, result.transform), mask, settings.mi_bins)
    pts = mask_points(mask, N_TRE_POINTS, settings.seed)
    qa: dict[str, Any] = {
        "backend": result.backend,
        "runtime_s": round(result.runtime_s, 3),
        "mi_before": mi_before,
        "mi_after": mi_after,
        "tre_mm": None,
        "tre_mm_before": None,
        "tre_stats": None,
        "n_points": int(len(pts)),
        "settings": settings.to_dict(),
        "transform": transform_dict(result.transform),
        "transform_convention": "ITK: maps fixed (CT) physical points (mm, LPS) to moving (MR) points",
    }
    if truth is not None:
        qa["tre_mm"] = tre_mm(result.transform, truth, pts)
        qa["tre_mm_before"] = tre_mm(sitk.AffineTransform(3), truth, pts)
        qa["tre_stats"] = tre_stats(result.transform, truth, pts)
    return qa


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = RegistrationSettings()
    parser.add_argument("--fixed", required=True, type=Path, help="skull-stripped CT (HU), 1 mm")
    parser.add_argument("--moving", required=True, type=Path, help="skull-stripped MR, its own 1 mm grid")
    parser.add_argument("--fixed-full", required=True, type=Path, help="CT with skull: output grid")
    parser.add_argument("--moving-full", required=True, type=Path, help="MR with skull (same space as --moving)")
    parser.add_argument("--fixed-mask", required=True, type=Path, help="CT brain mask (uint8 0/1)")
    parser.add_argument("--moving-mask", type=Path, help="optional MR brain mask (uint8 0/1)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=sorted(BACKENDS),
                        help=f"registration backend (default {DEFAULT_BACKEND})")
    parser.add_argument("--out-image", required=True, type=Path, help="registered full MR on the CT grid")
    parser.add_argument("--out-transform", required=True, type=Path, help="ITK transform file (.tfm)")
    parser.add_argument("--qa-json", required=True, type=Path, help="registration QA numbers (JSON)")
    parser.add_argument("--qa-png", required=True, type=Path, help="registration QA overlay (PNG)")
    parser.add_argument("--truth", type=Path, help="true affine JSON (phantom) -> TRE in the QA JSON")
    parser.add_argument("--mi-bins", type=int, default=d.mi_bins, help=f"MI histogram bins (default {d.mi_bins})")
    parser.add_argument("--sampling-fraction", type=float, default=d.sampling_fraction,
                        help=f"metric sampling fraction per level (default {d.sampling_fraction})")
    parser.add_argument("--min-samples", type=int, default=d.min_samples,
                        help=f"minimum metric samples per level (default {d.min_samples})")
    parser.add_argument("--iterations", type=int, default=d.iterations,
                        help=f"max optimizer iterations per level (default {d.iterations})")
    parser.add_argument("--shrink-factors", type=int, nargs="+", default=list(d.shrink_factors),
                        help="multi-resolution shrink factors, coarse to fine (default 4 2 1)")
    parser.add_argument("--seed", type=int, default=d.seed, help="metric sampling seed (default 0)")
    # dest differs from the global `ct2mr --threads` (cli.py): with the same dest this
    # sub-command's default silently overwrote the rule's `ct2mr --threads N`
    parser.add_argument("--threads", dest="registration_threads", type=int, default=d.threads,
                        help=f"backend threads; 0 = all cores (default {d.threads}: bit-reproducible)")
    parser.add_argument("--mask-dilation-mm", type=float, default=d.mask_dilation_mm,
                        help=f"dilate the CT brain mask by this before it restricts the metric (default {d.mask_dilation_mm})")


def _settings(args: argparse.Namespace) -> RegistrationSettings:
    try:
        return RegistrationSettings(
            mi_bins=args.mi_bins, sampling_fraction=args.sampling_fraction, min_samples=args.min_samples,
            iterations=args.iterations, shrink_factors=tuple(args.shrink_factors), seed=args.seed,
            threads=None if args.registration_threads == 0 else args.registration_threads, mask_dilation_mm=args.mask_dilation_mm,
        )
    except InputError as exc:
        raise InputError(None, f"--{(exc.field or '').replace('_', '-')}", exc.problem) from None


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image, write_image  # noqa: PLC0415
    from ct2mr.preprocess.qa_images import save_overlay_png  # noqa: PLC0415

    settings = _settings(args)
    fixed = read_image(args.fixed)
    moving = read_image(args.moving)
    fixed_full = read_image(args.fixed_full)
    moving_full = read_image(args.moving_full)
    fixed_mask = read_image(args.fixed_mask)
    moving_mask = read_image(args.moving_mask) if args.moving_mask else None
    for path, img in ((args.fixed, fixed), (args.moving, moving), (args.fixed_full, fixed_full),
                      (args.moving_full, moving_full), (args.fixed_mask, fixed_mask)):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(path, None, f"expected a 3-D scalar image, got {img.GetDimension()}-D")
    if fixed_mask.GetSize() != fixed.GetSize():
        raise InputError(args.fixed_mask, "size", f"{fixed_mask.GetSize()} differs from --fixed {fixed.GetSize()}")
    if not sitk.GetArrayViewFromImage(fixed_mask).any():
        raise InputError(args.fixed_mask, None, "brain mask is empty")
    truth = None
    if args.truth is not None:
        truth = truth_from_json(args.truth)

    result = register_affine(fixed, moving, args.backend, fixed_mask=fixed_mask, moving_mask=moving_mask,
                             settings=settings)
    log.info("register %s: %.2f s\n%s", args.backend, result.runtime_s, result.log[-2000:])

    registered = resample_to(moving_full, fixed_full, result.transform)
    qa = registration_qa(fixed, moving, fixed_mask, result, settings, truth)
    qa["inputs"] = {k: str(getattr(args, k)) for k in ("fixed", "moving", "fixed_full", "moving_full", "fixed_mask")}
    qa["backend_log"] = result.log[-4000:]
    log.info("MI %.4f -> %.4f nats%s", qa["mi_before"], qa["mi_after"],
             "" if truth is None else f"; TRE {qa['tre_mm_before']:.2f} -> {qa['tre_mm']:.2f} mm")

    write_image(registered, args.out_image)
    write_transform(result.transform, args.out_transform)
    save_overlay_png(
        args.qa_png, fixed_full,
        {"before (identity)": resample_to(moving_full, fixed_full), f"after ({args.backend})": registered},
        title=f"registration MR -> CT ({args.backend}); MI {qa['mi_before']:.3f} -> {qa['mi_after']:.3f}",
        fixed_range=(-200.0, 1200.0),
    )
    write_json(args.qa_json, qa)
