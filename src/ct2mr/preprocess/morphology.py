"""Binary morphology of 3D masks, in millimetres, on the object's bounding box.

Masks are numpy bool arrays indexed ``[z, y, x]`` with the image spacing given as
SimpleITK's ``(x, y, z)`` in mm; structuring elements are balls whose radius in mm
becomes a per-axis radius in voxels (:func:`radius_voxels`). Morphology runs in
SimpleITK on the bounding box of the object (plus a margin), which keeps a
256^3 head to a few seconds. Used by the CT and MR skull masking
(:mod:`ct2mr.preprocess.skull_mask`) and the CNN brain extraction
(:mod:`ct2mr.preprocess.brain_extraction`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: image spacing in mm, SimpleITK order (x, y, z)
Spacing = tuple[float, float, float]


def radius_voxels(sp: Spacing, mm: float) -> list[int]:
    """Per-axis radius in voxels (x, y, z) of a ball of ``mm`` millimetres at spacing ``sp``."""
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


def on_bounding_box(fn, a: np.ndarray, margin: int) -> np.ndarray:  # noqa: ANN001
    """Apply ``fn`` (bool array -> bool array) to the bounding box of ``a`` only."""
    box = _bbox(a, margin)
    out = np.zeros(a.shape, bool)
    if box is not None:
        out[box] = fn(a[box])
    return out


def erode(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    """Erosion by a ball of ``mm`` (on the whole array)."""
    r = radius_voxels(sp, mm)
    return _arr(sitk.BinaryErode(_img(a, sp), r, sitk.sitkBall, 0, 1)) if any(r) else a


def dilate(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    """Dilation by a ball of ``mm`` (on the bounding box plus the radius)."""
    r = radius_voxels(sp, mm)
    if not any(r):
        return a
    return on_bounding_box(lambda b: _arr(sitk.BinaryDilate(_img(b, sp), r, sitk.sitkBall, 0, 1)), a, max(r) + 1)


def opening(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    """Opening by a ball of ``mm`` (on the bounding box)."""
    r = radius_voxels(sp, mm)
    if not any(r):
        return a
    return on_bounding_box(lambda b: _arr(sitk.BinaryMorphologicalOpening(_img(b, sp), r, sitk.sitkBall, 0, 1)), a, 1)


def closing(a: np.ndarray, sp: Spacing, mm: float) -> np.ndarray:
    """Closing that does not shrink at the volume border (the box margin pads it)."""
    r = radius_voxels(sp, mm)
    if not any(r):
        return a
    m = max(r) + 1

    def close(b: np.ndarray) -> np.ndarray:
        padded = np.pad(b, m)
        c = _arr(sitk.BinaryMorphologicalClosing(_img(padded, sp), r, sitk.sitkBall, 1))
        return c[m:-m, m:-m, m:-m]

    return on_bounding_box(close, a, 0)


def largest_component(a: np.ndarray) -> np.ndarray:
    """Largest 3D connected component (face connectivity)."""
    if not a.any():
        return a
    lab = sitk.GetArrayFromImage(sitk.ConnectedComponent(_img(a, (1.0, 1.0, 1.0)), False))
    counts = np.bincount(lab.ravel().view(np.int32))  # uint32 -> int64 conversion would be slow
    counts[0] = 0
    return lab == int(np.argmax(counts))


def fill_slice_holes(a: np.ndarray) -> np.ndarray:
    """Fill holes in every axial slice ``a[k]`` (2D, 4-connected background)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    padded = np.pad(a.astype(bool), ((1, 1), (0, 0), (0, 0)))
    return ndimage.binary_fill_holes(padded, structure=structure)[1:-1]


def fill_holes(a: np.ndarray) -> np.ndarray:
    """Holes filled in 3D, then per axial slice (on the bounding box)."""
    def fill(b: np.ndarray) -> np.ndarray:
        return fill_slice_holes(_arr(sitk.BinaryFillhole(_img(b, (1.0, 1.0, 1.0)), False, 1)))

    return on_bounding_box(fill, a, 1)
