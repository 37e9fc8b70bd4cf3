"""Resample an image or mask to isotropic spacing (default 1 x 1 x 1 mm).

Output grid (:func:`output_grid`): same origin (the first voxel's centre stays
where it was), same direction cosines, the requested spacing, and
``size[i] = floor((size_in[i] - 1) * spacing_in[i] / spacing[i]) + 1`` output
voxels: every output voxel centre lies between the input's first and last voxel
centres, so every output voxel is interpolated from measured data (none is
extrapolated to ``default_value``). E.g. 320 CT voxels of 0.8 mm -> 256 voxels of
1 mm; 48 slices of 2.5 mm -> 118 slices of 1 mm. ``default_value`` only fills
voxels that a transform moves outside the input.

Interpolation: ``"linear"`` for images (``sitk.sitkLinear``), ``"bspline"``
(cubic B-spline, optional) or ``"nearest"`` for masks and label maps.

Pixel type: kept. Integer images resampled with linear / B-spline are computed
in float32, rounded with ``rint`` and clipped to the type's range (CT stays
int16 HU); float images stay float (float64 becomes float32); ``nearest`` copies
values, so masks stay uint8 0/1.

CLI (``ct2mr resample``)::

    ct2mr resample --input IN.nii.gz --output OUT.nii.gz [--spacing 1 1 1]
                   [--interpolator linear|bspline|nearest] [--default-value V]

``--default-value`` defaults to -1024 for images whose minimum is <= -1000
(CT in HU), else 0.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.imageio import read_image, write_image

log = logging.getLogger(__name__)

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}

_INT_RANGES = {
    sitk.sitkUInt8: (0, 255),
    sitk.sitkInt8: (-128, 127),
    sitk.sitkUInt16: (0, 65535),
    sitk.sitkInt16: (-32768, 32767),
    sitk.sitkUInt32: (0, 2**32 - 1),
    sitk.sitkInt32: (-(2**31), 2**31 - 1),
}


# ------------------------------------------------------------------ resampling


def output_grid(img: sitk.Image, spacing_mm: tuple[float, float, float]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(size, spacing)`` of the resampled grid (see module docstring)."""
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != img.GetDimension() or not all(s > 0 for s in spacing):
        raise InputError(None, "spacing", f"need {img.GetDimension()} positive values in mm, got {spacing_mm}")
    # centre to centre; the 1e-3 tolerance absorbs float32 spacings stored in NIfTI headers
    size = tuple(
        max(1, math.floor((n - 1) * s_in / s + 1e-3) + 1)
        for n, s_in, s in zip(img.GetSize(), img.GetSpacing(), spacing, strict=True)
    )
    return size, spacing


def default_background(img: sitk.Image) -> float:
    """-1024 when the image's minimum is <= -1000 (a CT in HU), else 0."""
    mn = float(sitk.GetArrayViewFromImage(img).min())
    return -1024.0 if mn <= -1000 else 0.0


def resample_isotropic(
    img: sitk.Image,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    interpolator: str = "linear",
    default_value: float | None = None,
) -> sitk.Image:
    """Resample ``img`` to ``spacing_mm`` (x, y, z in mm) on a grid with the same origin/direction.

    Parameters
    ----------
    img: 3D image (any orientation; the direction is kept).
    spacing_mm: output spacing in mm, SimpleITK order (x, y, z).
    interpolator: ``"linear"`` (images), ``"bspline"`` or ``"nearest"`` (masks, labels).
    default_value: value outside the input; ``None`` -> :func:`default_background`.

    Returns the resampled image with the input's pixel type (see module docstring).
    """
    if interpolator not in _INTERPOLATORS:
        raise InputError(None, "interpolator", f"expected one of {sorted(_INTERPOLATORS)}, got {interpolator!r}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, "pixel type", "only scalar images can be resampled")
    size, spacing = output_grid(img, spacing_mm)
    if default_value is None:
        default_value = default_background(img)
    pid = img.GetPixelID()
    if interpolator == "nearest":
        out_pid = pid
    elif pid in _INT_RANGES or pid == sitk.sitkFloat64:
        out_pid = sitk.sitkFloat32
    else:
        out_pid = pid
    out = sitk.Resample(
        img, size, sitk.Transform(), _INTERPOLATORS[interpolator], img.GetOrigin(), spacing,
        img.GetDirection(), float(default_value), out_pid,
    )
    if interpolator != "nearest" and pid in _INT_RANGES:
        lo, hi = _INT_RANGES[pid]
        arr = np.clip(np.rint(sitk.GetArrayViewFromImage(out)), lo, hi)
        res = sitk.GetImageFromArray(arr.astype(sitk.GetArrayViewFromImage(img).dtype))
        res.CopyInformation(out)
        out = res
    return out


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="input image or mask")
    parser.add_argument("--output", required=True, type=Path, help="resampled image (NIfTI)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("X", "Y", "Z"),
                        help="output spacing in mm (default 1 1 1)")
    parser.add_argument("--interpolator", choices=sorted(_INTERPOLATORS), default="linear",
                        help="linear (images, default), bspline, nearest (masks/labels)")
    parser.add_argument("--default-value", type=float, default=None,
                        help="value outside the input (default: -1024 for CT in HU, else 0)")


def run(args: argparse.Namespace) -> None:
    img = read_image(args.input)
    try:
        out = resample_isotropic(img, tuple(args.spacing), args.interpolator, args.default_value)
    except InputError as exc:
        raise InputError(args.input, exc.field, exc.problem) from exc
    write_image(out, args.output)
    log.info("resampled %s %s mm -> %s %s mm: %s", img.GetSize(), img.GetSpacing(), out.GetSize(),
             out.GetSpacing(), args.output)
