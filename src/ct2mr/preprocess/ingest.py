"""Ingest: read a raw scan, check it, write a canonical LPS NIfTI.

``ingest(path, modality, series)`` reads a DICOM folder (one series of it, chosen
and read on an even, untilted grid by :mod:`ct2mr.io.dicom_series`), NIfTI, MHA/MHD
or NRRD (:mod:`ct2mr.io.imageio`), checks that it is a usable 3D scan of the declared
modality, and returns it

* reoriented to LPS (``sitk.DICOMOrient(img, "LPS")``: axes permuted/flipped
  only, every physical point keeps its value; an oblique scan keeps its
  obliqueness, with the closest LPS axis order),
* CT as ``int16`` Hounsfield units, rounded and clipped to [-1024, 3071]
  (padding values such as -2000 or -3024 become -1024 air),
* MR as ``float32``, negative values (interpolation undershoot) set to 0,
* spacing, origin and physical extent unchanged.

Checks (each failure is an :class:`ct2mr.errors.InputError` naming the file):

* 3D scalar image (2D, vector/RGB or 4D with more than one volume are
  rejected; a 4D image with a singleton 4th axis is squeezed), at least 2
  voxels along every axis;
* every value finite (NaN / inf rejected with their count);
* CT in Hounsfield units: values below 0 must exist (an image in 0..255 or
  0..4095 is "not in Hounsfield units"), the 1st percentile must be air
  (<= -900 HU); judged on the head, not the padding (:func:`ct_landmarks`: values
  below -1100 are padding outside the field of view and left out), the air around
  the head must lie near -1000 HU (median <= -900) and the head's soft-tissue peak
  within -150..150 HU (brain 20..50): a DICOM without RescaleSlope/Intercept
  (stored values, air near 0, brain near 1050, padding -2000) is refused naming
  those tags; and some voxels must be bone (> 300 HU);
* MR: not constant, and not substantially negative (1st percentile >= -5 %
  of the 99th).

CLI (``ct2mr ingest``)::

    --modality ct|mr      what the input is                     [required]
    --input PATH          DICOM folder (a scanner's export: searched recursively,
                          with or without DICOMDIR, non-DICOM files ignored; or
                          one file of the series), .nii/.nii.gz/.mha/.mhd/.nrrd  [required]
    --output OUT.nii.gz   canonical image (.nii.gz; also .nii/.mha/.nrrd)     [required]
    --series SEL          DICOM only: SeriesInstanceUID, SeriesNumber or a
                          SeriesDescription substring (default: the rule of
                          :mod:`ct2mr.io.dicom_series`: ORIGINAL/PRIMARY, never a
                          localizer, axial, soft-tissue kernel, regular grid,
                          thinnest slices; refused: several PatientIDs, an MR
                          export of several contrasts)

The output is written atomically; nothing is written when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.dicom_series import RESCALE_MISSING_KEY
from ct2mr.io.imageio import (
    check_slice_axis,
    detect_format,
    nifti_nonfinite_count,
    read_image,
    require_write_suffix,
    write_image,
)

log = logging.getLogger(__name__)

#: CT values are clipped to this range (HU) and stored as int16
CT_RANGE_HU: tuple[int, int] = (-1024, 3071)
#: the 1st percentile of a head CT must be at most this (air), HU
CT_AIR_MAX_HU = -900.0
#: values below this (HU) are padding outside the scanner's field of view (-2000, -3024), not air
CT_PADDING_BELOW_HU = -1100.0
#: the head's soft-tissue peak (brain 20..50, fat -100, muscle 40 HU) must lie in this range, HU
CT_TISSUE_RANGE_HU: tuple[float, float] = (-150.0, 150.0)
#: at most this many voxels are used to measure the landmarks (an even sample of the volume)
CT_LANDMARK_SAMPLE = 2_000_000
#: bone threshold (HU) and the minimum number of voxels above it
CT_BONE_HU = 300.0
CT_MIN_BONE_VOXELS = 50


def orientation_code(img: sitk.Image) -> str:
    """Three-letter DICOM orientation code of a 3D image (e.g. ``"LPS"``, ``"RAS"``)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())


def _to_3d(img: sitk.Image, path: Path) -> sitk.Image:
    """Return a 3D scalar image or raise InputError (squeezes a singleton 4th axis)."""
    if img.GetNumberOfComponentsPerPixel() != 1:
        n = img.GetNumberOfComponentsPerPixel()
        raise InputError(path, "pixel type", f"{n} components per voxel; expected a grey-level scan")
    dim, size = img.GetDimension(), list(img.GetSize())
    if dim == 4 and size[3] == 1:
        log.info("%s: 4D image with a single volume; using it as 3D", path)
        img = sitk.Extract(img, [*size[:3], 0], [0, 0, 0, 0])
        dim, size = 3, size[:3]
    if dim != 3:
        raise InputError(path, "dimension", f"{dim}D image of size {tuple(size)}; expected a 3D volume")
    if min(size) < 2:
        raise InputError(path, "size", f"{tuple(size)}: a single slice; expected a 3D volume")
    return img


def _check_finite(arr: np.ndarray, path: Path) -> None:
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise InputError(path, "voxel values", f"{bad} of {arr.size} voxels are NaN or infinite")


def ct_landmarks(arr: np.ndarray) -> dict[str, float]:
    """Where air and the head's soft tissue lie in a CT, in its own units (HU when it is in HU).

    Padding (values below :data:`CT_PADDING_BELOW_HU`) is left out; the rest is
    split by Otsu's threshold (skimage, 256 bins) into air (below) and head (above). Returns
    ``air`` (median of the air class), ``tissue`` (the head's histogram peak, 5-unit
    bins: brain in a head CT), ``threshold`` and ``padding`` (fraction of voxels
    left out). Measured on an even sample of at most :data:`CT_LANDMARK_SAMPLE`
    voxels. NaN values when nothing but padding is left.
    """
    v = np.asarray(arr).ravel()
    v = v[:: max(1, v.size // CT_LANDMARK_SAMPLE)].astype(np.float32)
    pad = v < CT_PADDING_BELOW_HU
    v = v[~pad]
    nan = float("nan")
    if v.size < 2 or float(v.min()) == float(v.max()):
        return {"air": nan, "tissue": nan, "threshold": nan, "padding": float(pad.mean())}
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    top = float(np.percentile(v, 99.5))
    t = float(threshold_otsu(np.clip(v, None, top), nbins=256))
    air = float(np.median(v[v < t])) if np.any(v < t) else nan
    head = v[v >= t]
    counts, edges = np.histogram(head, bins=np.arange(t, max(t + 10.0, top) + 5.0, 5.0))
    smooth = np.convolve(counts, np.ones(3) / 3, "same")
    k = int(np.argmax(smooth))
    return {"air": air, "tissue": float((edges[k] + edges[k + 1]) / 2), "threshold": t, "padding": float(pad.mean())}


def _check_ct(arr: np.ndarray, path: Path, rescale_missing: bool = False) -> None:
    """Refuse a CT that is not a head in HU (see the module docstring); ``rescale_missing``: a DICOM
    series without RescaleSlope/RescaleIntercept (the error then names those tags)."""
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmin >= 0:
        raise InputError(
            path,
            "RescaleSlope/RescaleIntercept" if rescale_missing else "voxel values",
            f"CT not in Hounsfield units: observed range {vmin:g}..{vmax:g} has no negative values "
            "(air is -1000 HU); convert with the scanner's RescaleSlope/Intercept",
        )
    clipped = np.clip(arr, *CT_RANGE_HU)
    p1 = float(np.percentile(clipped, 1))
    if p1 > CT_AIR_MAX_HU:
        raise InputError(
            path,
            "voxel values",
            f"CT not in Hounsfield units or no air around the head: 1st percentile {p1:g} "
            f"(expected <= {CT_AIR_MAX_HU:g} HU), range {vmin:g}..{vmax:g}",
        )
    lm = ct_landmarks(arr)
    lo, hi = CT_TISSUE_RANGE_HU
    if not (lm["air"] <= CT_AIR_MAX_HU and lo <= lm["tissue"] <= hi):
        field_name, fix = ("RescaleSlope/RescaleIntercept", "the DICOM files have none, so these are stored values: "
                           "export the series with its rescale tags (or convert it to HU)") if rescale_missing else \
            ("voxel values", "convert to HU with the scanner's RescaleSlope/Intercept")
        raise InputError(
            path,
            field_name,
            f"CT not in Hounsfield units: air around the head at {lm['air']:.0f} (expected near -1000 HU, at most "
            f"{CT_AIR_MAX_HU:g}), head soft tissue at {lm['tissue']:.0f} (expected {lo:g}..{hi:g} HU, brain 20..50), "
            f"padding below {CT_PADDING_BELOW_HU:g} ({100 * lm['padding']:.1f} % of voxels) left out; {fix}",
        )
    n_bone = int(np.count_nonzero(arr > CT_BONE_HU))
    if n_bone < CT_MIN_BONE_VOXELS:
        raise InputError(
            path,
            "voxel values",
            f"CT has {n_bone} voxels above {CT_BONE_HU:g} HU (bone); expected a head CT with skull "
            f"(range {vmin:g}..{vmax:g})",
        )


def _check_mr(arr: np.ndarray, path: Path) -> None:
    p1, p99 = (float(v) for v in np.percentile(arr, [1, 99]))
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmax <= vmin:
        raise InputError(path, "voxel values", f"MR is constant ({vmin:g})")
    if p99 <= 0:
        raise InputError(path, "voxel values", f"MR 99th percentile is {p99:g}; expected positive magnitude values")
    if p1 < -0.05 * p99:
        raise InputError(
            path,
            "voxel values",
            f"MR has substantial negative values (1st percentile {p1:g}, 99th {p99:g}); expected magnitude >= 0",
        )


def _to_int16_hu(arr: np.ndarray) -> np.ndarray:
    """Round (float input only) and clip to :data:`CT_RANGE_HU`, as int16.

    Integer input is never sent through ``np.rint``: for int16 that returns
    float16, which cannot hold every integer above 2048.
    """
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, *CT_RANGE_HU).astype(np.int16)
    return np.clip(np.rint(arr), *CT_RANGE_HU).astype(np.int16)


def ingest(
    path: str | os.PathLike[str],
    modality: Literal["ct", "mr"],
    series: str | None = None,
    raw: sitk.Image | None = None,
) -> sitk.Image:
    """Read, check and canonicalise one scan (see the module docstring).

    ``series``: for a DICOM folder, the series to read (SeriesInstanceUID,
    SeriesNumber or a SeriesDescription substring); ``None`` or empty = the
    automatic rule of :mod:`ct2mr.io.dicom_series` (logged with every series passed over).
    ``raw``: the scan as ``read_image(path, series, modality)`` returned it, when the
    caller has read it already (``predict`` keeps it for the output grid); not modified.
    Returns an LPS image: CT int16 HU in [-1024, 3071], MR float32 >= 0.
    Raises InputError for unreadable or implausible input.
    """
    if modality not in ("ct", "mr"):
        raise ValueError(f"modality must be 'ct' or 'mr', not {modality!r}")
    p = Path(path)
    fmt = detect_format(p)
    if raw is None:
        raw = read_image(p, series, modality)
    img = _to_3d(raw, p)
    arr = sitk.GetArrayViewFromImage(img)
    if arr.size == 0:
        raise InputError(p, "size", "empty image")
    _check_finite(arr, p)
    if fmt == "nifti":  # ITK's NIfTI reader turns NaN / inf into 0: count them in the file itself
        bad = nifti_nonfinite_count(p)
        if bad:
            raise InputError(p, "voxel values", f"{bad} of {arr.size} voxels are NaN or infinite")
    vmin, vmax = float(arr.min()), float(arr.max())
    if modality == "ct":
        _check_ct(arr, p, rescale_missing=raw.HasMetaDataKey(RESCALE_MISSING_KEY))
        n_low = int(np.count_nonzero(arr < CT_RANGE_HU[0]))
        n_high = int(np.count_nonzero(arr > CT_RANGE_HU[1]))
        if n_low:
            log.info("%s: %d voxels below %d HU (padding) set to %d", p, n_low, CT_RANGE_HU[0], CT_RANGE_HU[0])
        if n_high:
            log.warning("%s: %d voxels above %d HU (metal?) clipped", p, n_high, CT_RANGE_HU[1])
        out_arr = _to_int16_hu(arr)
    else:
        _check_mr(arr, p)
        out_arr = np.asarray(arr, dtype=np.float32)
        n_neg = int(np.count_nonzero(out_arr < 0))
        if n_neg:
            log.info("%s: %d negative voxels set to 0", p, n_neg)
            out_arr = np.clip(out_arr, 0, None)
    out = sitk.GetImageFromArray(out_arr)
    out.CopyInformation(img)
    before = orientation_code(out)
    out = sitk.DICOMOrient(out, "LPS")
    after = orientation_code(out)
    check_slice_axis(out, p)
    out_view = sitk.GetArrayViewFromImage(out)
    log.info(
        "ingested %s as %s: format %s, %s %s, size %s, spacing %s mm, orientation %s -> %s, "
        "values %g..%g -> %g..%g",
        p,
        modality.upper(),
        fmt,
        raw.GetPixelIDTypeAsString(),
        f"{raw.GetDimension()}D",
        img.GetSize(),
        tuple(round(s, 4) for s in img.GetSpacing()),
        before,
        after,
        vmin,
        vmax,
        float(out_view.min()),
        float(out_view.max()),
    )
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ct2mr ingest``."""
    parser.add_argument("--modality", required=True, choices=("ct", "mr"), help="what the input is")
    parser.add_argument("--input", required=True, help="DICOM series folder, .nii/.nii.gz/.mha/.mhd/.nrrd")
    parser.add_argument("--output", required=True, help="canonical LPS image (.nii.gz)")
    parser.add_argument("--series", default=None,
                        help="DICOM folder: the series to read (SeriesInstanceUID, SeriesNumber or a "
                             "SeriesDescription substring); default: the automatic rule")


def run(args: argparse.Namespace) -> None:
    """Ingest ``--input`` and write ``--output`` atomically."""
    require_write_suffix(args.output)
    img = ingest(args.input, args.modality, args.series)
    write_image(img, args.output)
    log.info("wrote %s", args.output)
