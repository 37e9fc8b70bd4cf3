"""Head, skull and brain masks of a CT (in HU) or an MR, and skull-stripped images.

All masks are ``uint8`` 0/1 images on the input's grid (any orientation; the
pipeline uses LPS 1 mm). Morphology radii are given in mm and converted per
axis to ``round(r / spacing)`` voxels (SimpleITK ball structuring elements).

CT (:func:`ct_masks`), input in HU:

* **head** = largest 3D connected component (face connectivity) of ``HU >
  head_threshold_hu`` (default -400), holes filled per axial slice and in 3D.
* **skull** = ``HU > skull_threshold_hu`` (default 300) inside the head.
* **brain** (intracranial soft tissue): candidates = head, not skull, HU in
  ``brain_hu_range`` (default -50..150); opened with a ball of
  ``brain_opening_mm`` (default 4 mm) to cut the bridges through thin or
  partial-volume bone, foramina and orbits; largest 3D component; holes filled
  in 3D and per axial slice (ventricles, calcifications); skull voxels removed.
  (The skull separates brain from scalp; the opening removes the leaks.)
* **stripped** = CT where brain, -1024 HU elsewhere (input pixel type).

MR (:func:`mr_masks`), arbitrary units (T1 or T2 weighting):

* **head** = MR > Otsu threshold (SimpleITK ``OtsuThreshold``, 128 bins, over
  the whole volume), closed (3 mm), largest 3D component, holes filled per
  axial slice and in 3D.
* **brain**: ``core`` = head eroded by ``brain_erosion_mm`` (default 3 mm:
  removes the skin surface layer); ``t`` = 0.5 x the median MR inside ``core``;
  ``tissue`` = core & MR > t (drops the dark skull, air cavities and, in T1,
  dark CSF at the surface); ``tissue`` is opened with a ball of
  ``brain_erosion_mm`` (cuts the thin bridges between scalp and brain), its
  largest 3D component kept, then closed (3 mm) and holes filled in 3D and per
  axial slice (restores ventricles, which are dark in T1).
* **stripped** = MR x brain (input pixel type).

QA: :func:`save_masking_qa` draws mask contours (3 axial slices, one coronal,
one sagittal) through :mod:`ct2mr.qa_images`.

CLI (``ct2mr skull-mask``)::

    ct2mr skull-mask --modality ct --input ct.nii.gz --head-mask H --brain-mask B --stripped S
                     --skull-mask K --qa-png Q [--skull-threshold-hu 300] [--head-threshold-hu -400]
    ct2mr skull-mask --modality mr --input mr.nii.gz --head-mask H --brain-mask B --stripped S
                     --qa-png Q [--brain-erosion-mm 3]

``--skull-mask`` is accepted (and then written) only for ``ct``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ct2mr.errors import InputError

log = logging.getLogger(__name__)


class CtMasks(NamedTuple):
    """CT masks (uint8 0/1) and the skull-stripped CT (HU, -1024 outside the brain)."""

    head: sitk.Image
    skull: sitk.Image
    brain: sitk.Image
    stripped: sitk.Image


class MrMasks(NamedTuple):
    """MR masks (uint8 0/1) and the skull-stripped MR (MR x brain)."""

    head: sitk.Image
    brain: sitk.Image
    stripped: sitk.Image


# ------------------------------------------------------------------ helpers


def _radius(img: sitk.Image, mm: float) -> list[int]:
    return [max(0, int(round(mm / s))) for s in img.GetSpacing()]


def _erode(m: sitk.Image, mm: float) -> sitk.Image:
    r = _radius(m, mm)
    return sitk.BinaryErode(m, r, sitk.sitkBall, 0, 1) if any(r) else m


def _dilate(m: sitk.Image, mm: float) -> sitk.Image:
    r = _radius(m, mm)
    return sitk.BinaryDilate(m, r, sitk.sitkBall, 0, 1) if any(r) else m


def _close(m: sitk.Image, mm: float) -> sitk.Image:
    """Closing that does not shrink at the volume border (pads before, crops after)."""
    r = _radius(m, mm)
    if not any(r):
        return m
    padded = sitk.ConstantPad(m, r, r, 0)
    closed = sitk.BinaryMorphologicalClosing(padded, r, sitk.sitkBall, 1)
    return sitk.Crop(closed, r, r)


def _open(m: sitk.Image, mm: float) -> sitk.Image:
    r = _radius(m, mm)
    return sitk.BinaryMorphologicalOpening(m, r, sitk.sitkBall, 0, 1) if any(r) else m


def _largest_component(m: sitk.Image) -> sitk.Image:
    cc = sitk.ConnectedComponent(m, False)  # face connectivity
    rel = sitk.RelabelComponent(cc, sortByObjectSize=True)
    return sitk.Cast(rel == 1, sitk.sitkUInt8)


def _fill_slices(a: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice ``a[k]`` (2D, 4-connected background)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    padded = np.pad(a.astype(bool), ((1, 1), (0, 0), (0, 0)))
    return ndimage.binary_fill_holes(padded, structure=structure)[1:-1]


def _fill(m: sitk.Image) -> sitk.Image:
    """Holes filled in 3D, then per axial slice."""
    m3 = sitk.BinaryFillhole(sitk.Cast(m, sitk.sitkUInt8), False, 1)
    return _from_array(_fill_slices(sitk.GetArrayViewFromImage(m3)), m)


def _from_array(a: np.ndarray, ref: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(a.astype(np.uint8))
    out.CopyInformation(ref)
    return out


def _check_3d(img: sitk.Image) -> None:
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, "image", "expected a scalar 3D volume")


def _require_nonempty(m: sitk.Image, what: str) -> None:
    if not sitk.GetArrayViewFromImage(m).any():
        raise InputError(None, what, "mask is empty: check the thresholds / the image values")


# ------------------------------------------------------------------ CT


def ct_masks(
    ct: sitk.Image,
    skull_threshold_hu: float = 300.0,
    head_threshold_hu: float = -400.0,
    brain_hu_range: tuple[float, float] = (-50.0, 150.0),
    brain_opening_mm: float = 4.0,
) -> CtMasks:
    """Head, skull and brain masks of a CT in HU, and the skull-stripped CT (see module docstring)."""
    _check_3d(ct)
    hu = sitk.GetArrayViewFromImage(ct)
    head0 = _from_array(hu > head_threshold_hu, ct)
    _require_nonempty(head0, "head")
    head = _fill(_largest_component(head0))
    head_a = sitk.GetArrayViewFromImage(head) > 0

    skull_a = (hu > skull_threshold_hu) & head_a
    skull = _from_array(skull_a, ct)
    _require_nonempty(skull, "skull")

    lo, hi = brain_hu_range
    cand_a = head_a & ~skull_a & (hu >= lo) & (hu <= hi)
    cand = _open(_from_array(cand_a, ct), brain_opening_mm)
    _require_nonempty(cand, "brain")
    brain = _fill(_largest_component(cand))
    brain_a = (sitk.GetArrayViewFromImage(brain) > 0) & ~skull_a
    brain = _from_array(brain_a, ct)

    stripped_a = np.where(brain_a, hu, np.asarray(-1024, dtype=hu.dtype)).astype(hu.dtype)
    stripped = sitk.GetImageFromArray(stripped_a)
    stripped.CopyInformation(ct)
    return CtMasks(head=head, skull=skull, brain=brain, stripped=stripped)


# ------------------------------------------------------------------ MR


def mr_masks(mr: sitk.Image, brain_erosion_mm: float = 3.0) -> MrMasks:
    """Head and brain masks of an MR and the skull-stripped MR (see module docstring)."""
    _check_3d(mr)
    if brain_erosion_mm < 0:
        raise InputError(None, "brain_erosion_mm", f"must be >= 0, got {brain_erosion_mm}")
    mrf = sitk.Cast(mr, sitk.sitkFloat32)
    a = sitk.GetArrayViewFromImage(mrf)
    if not np.isfinite(a).all():
        raise InputError(None, "voxel values", "MR holds NaN or infinite values")
    if float(a.max()) <= float(a.min()):
        raise InputError(None, "voxel values", "MR is constant")
    otsu = sitk.OtsuThreshold(mrf, 0, 1, 128)
    head = _fill(_largest_component(_close(otsu, 3.0)))
    _require_nonempty(head, "head")

    core = _erode(head, brain_erosion_mm)
    core_a = sitk.GetArrayViewFromImage(core) > 0
    if not core_a.any():
        raise InputError(None, "brain", "head mask vanishes after erosion: head too small or erosion too large")
    t = 0.5 * float(np.median(a[core_a]))
    tissue = _from_array(core_a & (a > t), mr)
    tissue = _open(tissue, brain_erosion_mm)
    _require_nonempty(tissue, "brain")
    brain = _fill(_close(_largest_component(tissue), 3.0))
    brain_a = (sitk.GetArrayViewFromImage(brain) > 0) & (sitk.GetArrayViewFromImage(head) > 0)
    brain = _from_array(brain_a, mr)

    src = sitk.GetArrayViewFromImage(mr)
    stripped = sitk.GetImageFromArray((src * brain_a).astype(src.dtype))
    stripped.CopyInformation(mr)
    return MrMasks(head=head, brain=brain, stripped=stripped)


# ------------------------------------------------------------------ QA


def save_masking_qa(path: str | Path, image: sitk.Image, masks: CtMasks | MrMasks, modality: str) -> None:
    """Contours of the masks on the image (3 axial, coronal, sagittal) as a PNG."""
    from ct2mr.qa_images import save_contours_png  # noqa: PLC0415

    if isinstance(masks, CtMasks):
        contours = {"head": masks.head, "brain": masks.brain, "skull": masks.skull}
        vmin, vmax = -100.0, 200.0
    else:
        contours = {"head": masks.head, "brain": masks.brain}
        vmin = vmax = None
    vol_cm3 = float(sitk.GetArrayViewFromImage(masks.brain).sum()) * float(np.prod(image.GetSpacing())) / 1000
    # axial slices through the brain, contours with the head first (drives the coronal/sagittal centre)
    save_contours_png(path, image, contours, title=f"{modality.upper()} masks (brain {vol_cm3:.0f} cm3)",
                      vmin=vmin, vmax=vmax)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modality", choices=("ct", "mr"), required=True)
    parser.add_argument("--input", required=True, type=Path, help="CT in HU or MR (NIfTI)")
    parser.add_argument("--head-mask", required=True, type=Path, help="output head mask (uint8 0/1)")
    parser.add_argument("--brain-mask", required=True, type=Path, help="output brain mask (uint8 0/1)")
    parser.add_argument("--stripped", required=True, type=Path, help="output skull-stripped image")
    parser.add_argument("--skull-mask", type=Path, help="output skull mask (ct only)")
    parser.add_argument("--qa-png", required=True, type=Path, help="output QA image (mask contours)")
    parser.add_argument("--skull-threshold-hu", type=float, default=300.0, help="CT: skull = HU > this (default 300)")
    parser.add_argument("--head-threshold-hu", type=float, default=-400.0,
                        help="CT: head = largest component of HU > this (default -400)")
    parser.add_argument("--brain-erosion-mm", type=float, default=3.0,
                        help="MR: erosion/opening radius for the brain mask in mm (default 3)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.resample import read_image, write_image  # noqa: PLC0415

    img = read_image(args.input)
    try:
        if args.modality == "ct":
            masks: CtMasks | MrMasks = ct_masks(img, args.skull_threshold_hu, args.head_threshold_hu)
        else:
            if args.skull_mask is not None:
                raise InputError(None, "--skull-mask", "only for --modality ct")
            masks = mr_masks(img, args.brain_erosion_mm)
    except InputError as exc:
        raise InputError(args.input, exc.field, exc.problem) from exc
    write_image(masks.head, args.head_mask)
    write_image(masks.brain, args.brain_mask)
    write_image(masks.stripped, args.stripped)
    if isinstance(masks, CtMasks) and args.skull_mask is not None:
        write_image(masks.skull, args.skull_mask)
    save_masking_qa(args.qa_png, img, masks, args.modality)
    log.info("masks of %s written", args.input)
