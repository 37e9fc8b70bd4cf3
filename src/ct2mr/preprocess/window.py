"""CT windowing and MR intensity normalisation to 8-bit grey levels.

Both functions map an image to ``uint8`` 0..255 with a declared, exact rule
(the README quotes it):

* CT (:func:`window_ct`), input in Hounsfield units, window width ``W`` and
  level (centre) ``L`` (default W80/L40, the paper's brain window)::

      g = clip(rint((HU - (L - W/2)) / W * 255), 0, 255)

  ``rint`` is numpy's round-half-to-even. With W80/L40: -1000 -> 0, 0 -> 0,
  40 -> rint(127.5) = 128, 80 -> 255, 1000 -> 255, 20 -> rint(63.75) = 64.

* MR (:func:`normalise_mr`), arbitrary units, with a head mask: ``p_lo`` and
  ``p_hi`` are the ``percentiles`` (default 1 and 99, numpy's linear
  percentile) of the MR values *inside the head mask*; then::

      g = clip(rint((MR - p_lo) / (p_hi - p_lo) * 255), 0, 255)   inside the head mask
      g = 0                                                         outside the head mask

Inputs may be ``SimpleITK.Image`` (the result is an image with the same
geometry) or numpy arrays (the result is an array). Orientation is untouched.

CLI (``ct2mr window``)::

    ct2mr window --modality ct --input ct.nii.gz --output ct_window.nii.gz [--width-hu 80 --level-hu 40]
    ct2mr window --modality mr --input mr.nii.gz --mask mr_head_mask.nii.gz --output mr_norm.nii.gz [--percentiles 1 99]

``--mask`` (a head mask on the input's grid) is required for ``mr``. Outputs are
uint8 NIfTI written atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TypeVar

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError

log = logging.getLogger(__name__)

ImageLike = TypeVar("ImageLike", sitk.Image, np.ndarray)


def _as_array(img: sitk.Image | np.ndarray) -> np.ndarray:
    return sitk.GetArrayViewFromImage(img) if isinstance(img, sitk.Image) else np.asarray(img)


def _like(arr: np.ndarray, ref: sitk.Image | np.ndarray) -> sitk.Image | np.ndarray:
    if isinstance(ref, sitk.Image):
        out = sitk.GetImageFromArray(arr)
        out.CopyInformation(ref)
        return out
    return arr


def window_ct(ct_hu: ImageLike, width_hu: float = 80.0, level_hu: float = 40.0) -> ImageLike:
    """Linear CT window: HU in ``[level - width/2, level + width/2]`` -> 0..255 (uint8).

    Exact rule: ``clip(rint((HU - (level - width/2)) / width * 255), 0, 255)``
    (round half to even). Computed in float64. ``width_hu`` must be > 0.
    Returns the same kind as the input (image with the input's geometry, or array).
    """
    if not width_hu > 0:
        raise InputError(None, "width_hu", f"window width must be > 0 HU, got {width_hu}")
    a = _as_array(ct_hu).astype(np.float64)
    lo = level_hu - width_hu / 2.0
    g = np.clip(np.rint((a - lo) / width_hu * 255.0), 0, 255).astype(np.uint8)
    return _like(g, ct_hu)  # type: ignore[return-value]


def mr_percentiles(mr: sitk.Image | np.ndarray, head_mask: sitk.Image | np.ndarray,
                   percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """``(p_lo, p_hi)``: the MR's percentiles (numpy linear) inside ``head_mask`` (> 0)."""
    a = _as_array(mr)
    m = _as_array(head_mask) > 0
    if a.shape != m.shape:
        raise InputError(None, "head_mask", f"shape {m.shape} differs from the MR's {a.shape}")
    if not m.any():
        raise InputError(None, "head_mask", "mask is empty: cannot compute MR percentiles")
    lo_p, hi_p = percentiles
    if not 0 <= lo_p < hi_p <= 100:
        raise InputError(None, "percentiles", f"need 0 <= low < high <= 100, got {percentiles}")
    p_lo, p_hi = np.percentile(a[m].astype(np.float64), [lo_p, hi_p])
    return float(p_lo), float(p_hi)


def normalise_mr(mr: ImageLike, head_mask: sitk.Image | np.ndarray,
                 percentiles: tuple[float, float] = (1.0, 99.0)) -> ImageLike:
    """Percentile normalisation of an MR to uint8 inside its head mask.

    ``p_lo, p_hi`` = ``percentiles`` of the MR inside ``head_mask`` (> 0);
    inside the mask ``clip(rint((MR - p_lo) / (p_hi - p_lo) * 255), 0, 255)``,
    outside the mask 0. Raises :class:`InputError` when the mask is empty or
    ``p_hi <= p_lo`` (a constant image). Returns the same kind as ``mr``.
    """
    p_lo, p_hi = mr_percentiles(mr, head_mask, percentiles)
    if not p_hi > p_lo:
        raise InputError(None, "voxel values",
                         f"MR is constant inside the head mask (p_lo = p_hi = {p_lo}); cannot normalise")
    a = _as_array(mr).astype(np.float64)
    m = _as_array(head_mask) > 0
    g = np.clip(np.rint((a - p_lo) / (p_hi - p_lo) * 255.0), 0, 255).astype(np.uint8)
    g[~m] = 0
    return _like(g, mr)  # type: ignore[return-value]


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modality", choices=("ct", "mr"), required=True)
    parser.add_argument("--input", required=True, type=Path, help="CT in HU or MR (NIfTI)")
    parser.add_argument("--output", required=True, type=Path, help="uint8 image (NIfTI)")
    parser.add_argument("--mask", type=Path, help="head mask on the input grid (required for mr)")
    parser.add_argument("--width-hu", type=float, default=80.0, help="CT window width in HU (default 80)")
    parser.add_argument("--level-hu", type=float, default=40.0, help="CT window level/centre in HU (default 40)")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(1.0, 99.0), metavar=("LOW", "HIGH"),
                        help="MR percentiles inside the head mask mapped to 0 and 255 (default 1 99)")


def normalise_mr_file(mr_path: str | os.PathLike[str], mask_path: str | os.PathLike[str],
                      percentiles: tuple[float, float] = (1.0, 99.0)) -> sitk.Image:
    """:func:`normalise_mr` of the MR in ``mr_path`` inside the head mask in ``mask_path``.

    The mask must be on the MR's grid; errors name the file they are about.
    """
    from ct2mr.io.imageio import grid_difference, read_image  # noqa: PLC0415

    img, mask = read_image(mr_path), read_image(mask_path)
    diff = grid_difference(mask, img)
    if diff is not None:  # another grid: the mask's voxels would not be the MR's
        raise InputError(mask_path, "grid", f"not on the MR's grid: {diff} (mask vs MR)")
    try:
        return normalise_mr(img, mask, tuple(percentiles))
    except InputError as exc:
        raise InputError(mr_path, exc.field, exc.problem) from exc


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image, write_image

    if args.modality == "ct":
        out = window_ct(read_image(args.input), args.width_hu, args.level_hu)
    else:
        if args.mask is None:
            raise InputError(None, "--mask", "a head mask is required for --modality mr")
        out = normalise_mr_file(args.input, args.mask, tuple(args.percentiles))
    write_image(out, args.output)
    log.info("wrote %s", args.output)
