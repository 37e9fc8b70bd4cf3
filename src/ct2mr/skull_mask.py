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

* **head** = MR > Otsu threshold (skimage, 256 bins, computed on every 2nd
  voxel along each axis), holes filled (3D and per axial slice: the scalp
  ring encloses the dark skull), largest 3D component, closed (3 mm), holes
  filled again.
* **brain**: ``core`` = head eroded by ``brain_erosion_mm`` (default 3 mm:
  removes the skin surface layer); ``t`` = 0.5 x the median MR inside ``core``;
  ``tissue`` = core & MR > t (drops the dark skull, air cavities and, in T1,
  dark CSF at the surface); ``tissue`` is opened with a ball of
  ``brain_opening_mm`` (default 5 mm: cuts the bridges between scalp and
  brain), its largest 3D component kept, dilated by ``brain_erosion_mm`` inside
  ``tissue`` (regrows the cortex the opening shaved off, without re-crossing
  the cut bridges), closed (3 mm) and holes filled in 3D and per axial slice
  (restores ventricles, which are dark in T1). Phantom (T2-like): Dice >= 0.99
  against labels 3..6. Real T1 heads: brain 1300-1700 cm3, with some leaks
  into temporal scalp / skull base where no dark layer separates them (a
  morphology-only method; no atlas).
* **stripped** = MR x brain (input pixel type).

QA: :func:`save_masking_qa` draws mask contours (3 axial slices, one coronal,
one sagittal) through :mod:`ct2mr.qa_images`.

CLI (``ct2mr skull-mask``)::

    ct2mr skull-mask --modality ct --input ct.nii.gz --head-mask H --brain-mask B --stripped S
                     --skull-mask K --qa-png Q [--skull-threshold-hu 300] [--head-threshold-hu -400]
    ct2mr skull-mask --modality mr --input mr.nii.gz --head-mask H --brain-mask B --stripped S
                     --qa-png Q [--brain-erosion-mm 3] [--brain-opening-mm 5]

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
# Masks are handled as numpy bool arrays [z, y, x] with the image spacing (x, y, z);
# morphology runs in SimpleITK on the bounding box of the object (plus a margin),
# which keeps a 256^3 head to a few seconds.

Spacing = tuple[float, float, float]


def _radius(sp: Spacing, mm: float) -> list[int]:
    return [max(0, int(round(mm / s))) for s in sp]


def _img(a: np.ndarray, sp: Spacing) -> sitk.Image:
    img = sitk.GetImageFromArray(a.astype(np.uint8))
    img.SetSpacing(sp)
    return img


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img) > 0


def _bbox(a: np.ndarray, margin: int) -> tuple[slice, slice, slice] | None:
    """Bounding box of ``a`` grown by ``margin`` voxels (clipped), or None if empty."""
    box = []
    for axis in range(3):
        idx = np.flatnonzero(a.any(axis=tuple(i for i in range(3) if i != axis)))
        if idx.size == 0:
            return None
        box.append(slice(max(0, idx[0] - margin), min(a.shape[axis], idx[-1] + margin + 1)))
    return box[0], box[1], box[2]


def _boxed(fn, a: np.ndarray, margin: int) -> np.ndarray:  # noqa: ANN001
    """Apply ``fn`` (bool array -> bool array) to the bounding box of ``a`` only."""
    box = _bbox(a, margin)
    out = np.zeros(a.shape, bool)
    if box is not None:
        out[box] = fn(a[box])
    return out


def _erode(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    r = _radius(sp, mm)
    return _arr(sitk.BinaryErode(_img(a, sp), r, sitk.sitkBall, 0, 1)) if any(r) else a


def _open(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    r = _radius(sp, mm)
    if not any(r):
        return a
    return _boxed(lambda b: _arr(sitk.BinaryMorphologicalOpening(_img(b, sp), r, sitk.sitkBall, 0, 1)), a, 1)


def _close(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    """Closing that does not shrink at the volume border (the box margin pads it)."""
    r = _radius(sp, mm)
    if not any(r):
        return a
    m = max(r) + 1

    def close(b: np.ndarray) -> np.ndarray:
        padded = np.pad(b, m)
        c = _arr(sitk.BinaryMorphologicalClosing(_img(padded, sp), r, sitk.sitkBall, 1))
        return c[m:-m, m:-m, m:-m]

    return _boxed(close, a, 0)


def _largest_component(a: np.ndarray) -> np.ndarray:
    """Largest 3D connected component (face connectivity)."""
    if not a.any():
        return a
    lab = sitk.GetArrayFromImage(sitk.ConnectedComponent(_img(a, (1.0, 1.0, 1.0)), False))
    counts = np.bincount(lab.ravel().view(np.int32))  # uint32 -> int64 conversion would be slow
    counts[0] = 0
    return lab == int(np.argmax(counts))


def _fill_slices(a: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice ``a[k]`` (2D, 4-connected background)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    padded = np.pad(a.astype(bool), ((1, 1), (0, 0), (0, 0)))
    return ndimage.binary_fill_holes(padded, structure=structure)[1:-1]


def _fill(a: np.ndarray) -> np.ndarray:
    """Holes filled in 3D, then per axial slice (on the bounding box)."""
    def fill(b: np.ndarray) -> np.ndarray:
        return _fill_slices(_arr(sitk.BinaryFillhole(_img(b, (1.0, 1.0, 1.0)), False, 1)))

    return _boxed(fill, a, 1)


def _from_array(a: np.ndarray, ref: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(a.astype(np.uint8))
    out.CopyInformation(ref)
    return out


def _check_3d(img: sitk.Image) -> None:
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, "image", "expected a scalar 3D volume")


def _require_nonempty(a: np.ndarray, what: str) -> None:
    if not a.any():
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
    sp: Spacing = ct.GetSpacing()  # type: ignore[assignment]
    hu = sitk.GetArrayViewFromImage(ct)
    head0 = hu > head_threshold_hu
    _require_nonempty(head0, "head")
    head_a = _fill(_largest_component(head0))

    skull_a = (hu > skull_threshold_hu) & head_a
    _require_nonempty(skull_a, "skull")

    lo, hi = brain_hu_range
    cand = _open(head_a & ~skull_a & (hu >= lo) & (hu <= hi), sp, brain_opening_mm)
    _require_nonempty(cand, "brain")
    brain_a = _fill(_largest_component(cand)) & ~skull_a

    stripped_a = np.where(brain_a, hu, np.asarray(-1024, dtype=hu.dtype)).astype(hu.dtype)
    stripped = sitk.GetImageFromArray(stripped_a)
    stripped.CopyInformation(ct)
    return CtMasks(head=_from_array(head_a, ct), skull=_from_array(skull_a, ct), brain=_from_array(brain_a, ct),
                   stripped=stripped)


# ------------------------------------------------------------------ MR


def _otsu(a: np.ndarray) -> float:
    """Otsu threshold (skimage, 256 bins) of every 2nd voxel along each axis."""
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    return float(threshold_otsu(np.ascontiguousarray(a[::2, ::2, ::2]), nbins=256))


def mr_masks(mr: sitk.Image, brain_erosion_mm: float = 3.0, brain_opening_mm: float = 5.0) -> MrMasks:
    """Head and brain masks of an MR and the skull-stripped MR (see module docstring)."""
    _check_3d(mr)
    if brain_erosion_mm < 0:
        raise InputError(None, "brain_erosion_mm", f"must be >= 0, got {brain_erosion_mm}")
    sp: Spacing = mr.GetSpacing()  # type: ignore[assignment]
    a = sitk.GetArrayViewFromImage(mr)
    if not np.isfinite(a).all():
        raise InputError(None, "voxel values", "MR holds NaN or infinite values")
    if float(a.max()) <= float(a.min()):
        raise InputError(None, "voxel values", "MR is constant")
    # fill first: the dark skull separates the bright scalp from the brain
    head_a = _fill(_close(_largest_component(_fill(a > _otsu(a))), sp, 3.0))
    _require_nonempty(head_a, "head")

    r = max(_radius(sp, brain_erosion_mm)) + 1
    core_a = _boxed(lambda b: _erode(b, sp, brain_erosion_mm), head_a, r)
    if not core_a.any():
        raise InputError(None, "brain", "head mask vanishes after erosion: head too small or erosion too large")
    t = 0.5 * float(np.median(a[core_a]))
    tissue = core_a & (a > t)
    seed = _largest_component(_open(tissue, sp, brain_opening_mm))
    _require_nonempty(seed, "brain")
    rr = _radius(sp, brain_erosion_mm)
    if any(rr):  # regrow what the opening shaved off, without crossing long bridges
        seed = _boxed(lambda b: _arr(sitk.BinaryDilate(_img(b, sp), rr, sitk.sitkBall, 0, 1)), seed,
                      max(rr) + 1) & tissue
    brain_a = _fill(_close(seed, sp, 3.0)) & head_a

    stripped = sitk.GetImageFromArray((a * brain_a).astype(a.dtype))
    stripped.CopyInformation(mr)
    return MrMasks(head=_from_array(head_a, mr), brain=_from_array(brain_a, mr), stripped=stripped)


# ------------------------------------------------------------------ QA


def save_masking_qa(path: str | Path, image: sitk.Image, masks: CtMasks | MrMasks, modality: str) -> None:
    """Contours of the masks on the image (3 axial, coronal, sagittal) as a PNG."""
    from ct2mr.qa_images import save_contours_png  # noqa: PLC0415

    if isinstance(masks, CtMasks):
        contours = {"head": masks.head, "skull": masks.skull, "brain": masks.brain}
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
                        help="MR: head-mask erosion and regrow radius for the brain mask in mm (default 3)")
    parser.add_argument("--brain-opening-mm", type=float, default=5.0,
                        help="MR: opening radius that cuts scalp-brain bridges, mm (default 5)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.imageio import read_image, write_image  # noqa: PLC0415

    img = read_image(args.input)
    try:
        if args.modality == "ct":
            masks: CtMasks | MrMasks = ct_masks(img, args.skull_threshold_hu, args.head_threshold_hu)
        else:
            if args.skull_mask is not None:
                raise InputError(None, "--skull-mask", "only for --modality ct")
            masks = mr_masks(img, args.brain_erosion_mm, args.brain_opening_mm)
    except InputError as exc:
        raise InputError(args.input, exc.field, exc.problem) from exc
    write_image(masks.head, args.head_mask)
    write_image(masks.brain, args.brain_mask)
    write_image(masks.stripped, args.stripped)
    if isinstance(masks, CtMasks) and args.skull_mask is not None:
        write_image(masks.skull, args.skull_mask)
    save_masking_qa(args.qa_png, img, masks, args.modality)
    log.info("masks of %s written", args.input)
