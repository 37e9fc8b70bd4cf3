"""Axial brain slices of one patient -> ``results/slices/{patient}.npz``, and back.

Extraction (:func:`extract_slices`), from uint8 volumes (windowed CT and/or
normalised MR) and the head/brain masks, all on one reference grid (LPS, array
``[z, y, x]``):

1. **Selection.** Axial slices ``array[k]`` whose brain mask holds at least
   ``min_brain_voxels`` voxels. Fewer than ``min_slices`` such slices ->
   :class:`InputError`.
2. **In-plane window.** One square window for the whole patient, centred on the
   bounding box of the head mask over the kept slices (box centre in continuous
   voxel coordinates ``(min + max + 1) / 2``), side ``crop_size = max(size,
   box extent)``; its top-left ``crop_origin = floor(centre - crop_size / 2)``
   (row, col) may be negative or reach past the image: those pixels are padding
   (0 for images, False for masks).
3. **Scale.** When ``crop_size == size`` (the head fits), pixels are copied:
   1 mm stays 1 mm. Otherwise the window is resized down to ``size x size``
   (images: linear with anti-aliasing, rounded to uint8; masks: nearest), the
   same factor on both axes, so the aspect ratio is never distorted.

The file holds exactly the keys of DEVELOPING.md (``ct``, ``mr``,
``head_mask``, ``brain_mask``, ``z_index``, ``crop_origin``, ``crop_size``,
``ref_shape``, ``ref_spacing``, ``ref_origin``, ``ref_direction``, ``patient``,
``role``, ``source``). :func:`volume_from_slices` is the inverse: it puts
``(N, size, size)`` slices back at ``z_index`` inside the window, and is exact
on the kept voxels when ``crop_size == size``.

CLI (``ct2mr slices``)::

    ct2mr slices --patient P --role ROLE [--ct ct_window.nii.gz] [--mr mr_norm.nii.gz]
                 --head-mask HEAD.nii.gz --brain-mask BRAIN.nii.gz --output results/slices/P.npz
                 [--size 256] [--min-brain-voxels 500] [--min-slices 5]

At least one of ``--ct`` / ``--mr``; all inputs on the same grid (the reference).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_npz
from ct2mr.io.imageio import grid_difference

log = logging.getLogger(__name__)

IMAGE_KEYS = ("ct", "mr")
MASK_KEYS = ("head_mask", "brain_mask")
STR_KEYS = ("patient", "role", "source")
#: key -> (numpy dtype, shape spec); "N" / "S" are the slice count and side
META_SPEC: dict[str, tuple[type, tuple[Any, ...]]] = {
    "z_index": (np.int64, ("N",)),
    "crop_origin": (np.int64, (2,)),
    "crop_size": (np.int64, ()),
    "ref_shape": (np.int64, (3,)),
    "ref_spacing": (np.float64, (3,)),
    "ref_origin": (np.float64, (3,)),
    "ref_direction": (np.float64, (9,)),
}
REQUIRED_KEYS = (*MASK_KEYS, *META_SPEC, *STR_KEYS)


# ------------------------------------------------------------------ geometry helpers


def crop_window(bbox: tuple[int, int, int, int], size: int) -> tuple[tuple[int, int], int]:
    """Square window for a (rmin, rmax, cmin, cmax) box (inclusive): ``((r0, c0), side)``.

    ``side = max(size, box extent)``; the window is centred on the box centre
    ``(min + max + 1) / 2`` with ``origin = floor(centre - side / 2)``; it always
    contains the box.
    """
    rmin, rmax, cmin, cmax = bbox
    side = max(int(size), rmax - rmin + 1, cmax - cmin + 1)
    r0 = math.floor((rmin + rmax + 1) / 2 - side / 2)
    c0 = math.floor((cmin + cmax + 1) / 2 - side / 2)
    return (r0, c0), side


def cut_window(stack: np.ndarray, origin: tuple[int, int], side: int) -> np.ndarray:
    """``stack[:, r0:r0+side, c0:c0+side]`` with zero padding where it leaves the array."""
    n, h, w = stack.shape
    r0, c0 = origin
    out = np.zeros((n, side, side), dtype=stack.dtype)
    rs, re = max(r0, 0), min(r0 + side, h)
    cs, ce = max(c0, 0), min(c0 + side, w)
    if rs < re and cs < ce:
        out[:, rs - r0:re - r0, cs - c0:ce - c0] = stack[:, rs:re, cs:ce]
    return out


def resize_stack(stack: np.ndarray, side: int, *, mask: bool) -> np.ndarray:
    """Resize each (h, w) slice to (side, side): nearest for masks, linear (+anti-aliasing) for images."""
    from skimage.transform import resize  # noqa: PLC0415

    if stack.shape[1] == side and stack.shape[2] == side:
        return stack.copy()
    shape = (stack.shape[0], side, side)
    if mask:
        return resize(stack.astype(bool), shape, order=0, anti_aliasing=False, preserve_range=True).astype(bool)
    down = side < stack.shape[1]
    res = resize(stack.astype(np.float32), shape, order=1, anti_aliasing=down, preserve_range=True)
    if np.issubdtype(stack.dtype, np.integer):
        info = np.iinfo(stack.dtype)
        return np.clip(np.rint(res), info.min, info.max).astype(stack.dtype)
    return res.astype(stack.dtype)


def check_counts(**values: int) -> None:
    """InputError for a slice side / count below 1 (``size=0`` used to end in an OverflowError)."""
    for name, v in values.items():
        if int(v) < 1:
            raise InputError(None, name, f"must be >= 1, got {v}")


def _image_array(img: sitk.Image | None, name: str) -> np.ndarray | None:
    if img is None:
        return None
    a = sitk.GetArrayFromImage(img)
    if a.dtype != np.uint8:
        raise InputError(None, name, f"expected uint8 0..255 (windowed / normalised), got {a.dtype}")
    return a


def _check_same_grid(ref: sitk.Image, other: sitk.Image, name: str) -> None:
    # e.g. same size and origin but flipped axes: the arrays would be misaligned voxel by voxel
    diff = grid_difference(other, ref)
    if diff is not None:
        raise InputError(None, name, f"not on the reference grid: {diff} ({name} vs reference)")


# ------------------------------------------------------------------ extraction


def extract_slices(
    ct_u8: sitk.Image | None,
    mr_u8: sitk.Image | None,
    head_mask: sitk.Image,
    brain_mask: sitk.Image,
    *,
    patient: str,
    role: str,
    size: int = 256,
    min_brain_voxels: int = 500,
    min_slices: int = 5,
) -> dict[str, Any]:
    """Select and crop the axial brain slices of one patient (see module docstring).

    ``ct_u8`` / ``mr_u8``: uint8 volumes on the reference grid (at least one);
    the reference grid is ``ct_u8``'s when given, else ``mr_u8``'s. Masks: 0/1 on
    the same grid. Returns the npz dictionary (DEVELOPING.md contract).
    """
    if ct_u8 is None and mr_u8 is None:
        raise InputError(None, "ct/mr", "need at least one of the windowed CT and the normalised MR")
    check_counts(size=size, min_slices=min_slices)
    ref = ct_u8 if ct_u8 is not None else mr_u8
    assert ref is not None
    if ref.GetDimension() != 3:
        raise InputError(None, "dimension", f"expected a 3D volume, got {ref.GetDimension()}D")
    for name, img in (("mr", mr_u8), ("head_mask", head_mask), ("brain_mask", brain_mask)):
        if img is not None:
            _check_same_grid(ref, img, name)
    arrays = {"ct": _image_array(ct_u8, "ct"), "mr": _image_array(mr_u8, "mr")}
    head = sitk.GetArrayViewFromImage(head_mask) > 0
    brain = sitk.GetArrayViewFromImage(brain_mask) > 0

    counts = brain.sum(axis=(1, 2))
    keep = np.flatnonzero(counts >= min_brain_voxels)
    if keep.size < min_slices:
        raise InputError(None, "brain_mask",
                         f"only {keep.size} axial slices hold >= {min_brain_voxels} brain voxels; "
                         f"need at least {min_slices}")
    head_k = head[keep]
    box_src = head_k if head_k.any() else brain[keep]
    rows = np.flatnonzero(box_src.any(axis=(0, 2)))
    cols = np.flatnonzero(box_src.any(axis=(0, 1)))
    (r0, c0), side = crop_window((int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])), size)

    out: dict[str, Any] = {}
    for key, arr in arrays.items():
        if arr is not None:
            out[key] = resize_stack(cut_window(arr[keep], (r0, c0), side), size, mask=False)
    out["head_mask"] = resize_stack(cut_window(head_k, (r0, c0), side), size, mask=True)
    out["brain_mask"] = resize_stack(cut_window(brain[keep], (r0, c0), side), size, mask=True)
    out.update(
        z_index=keep.astype(np.int64),
        crop_origin=np.array([r0, c0], dtype=np.int64),
        crop_size=np.array(side, dtype=np.int64),
        ref_shape=np.array(head.shape, dtype=np.int64),
        ref_spacing=np.array(ref.GetSpacing(), dtype=np.float64),
        ref_origin=np.array(ref.GetOrigin(), dtype=np.float64),
        ref_direction=np.array(ref.GetDirection(), dtype=np.float64),
        patient=str(patient),
        role=str(role),
        source="volume",
    )
    log.info("%s: %d slices (z %d..%d), window %d px at (%d, %d) -> %d", patient, keep.size, keep[0],
             keep[-1], side, r0, c0, size)
    return out


# ------------------------------------------------------------------ file I/O


def validate_slices(d: dict[str, Any], path: str | os.PathLike[str] | None = None) -> None:
    """Check keys, dtypes and shapes against the contract; :class:`InputError` naming file and key."""
    for key in REQUIRED_KEYS:
        if key not in d:
            raise InputError(path, key, "missing key")
    present = [k for k in IMAGE_KEYS if k in d]
    if not present:
        raise InputError(path, "ct/mr", "neither 'ct' nor 'mr' is present")
    hm = np.asarray(d["head_mask"])
    if hm.ndim != 3 or hm.shape[1] != hm.shape[2] or hm.shape[0] == 0:
        raise InputError(path, "head_mask", f"expected shape (N, S, S) with N > 0, got {hm.shape}")
    n, s = hm.shape[0], hm.shape[1]
    for key in (*present, *MASK_KEYS):
        a = np.asarray(d[key])
        want = np.uint8 if key in IMAGE_KEYS else np.bool_
        if a.dtype != want:
            raise InputError(path, key, f"dtype {a.dtype}, expected {np.dtype(want)}")
        if a.shape != (n, s, s):
            raise InputError(path, key, f"shape {a.shape}, expected {(n, s, s)}")
    for key, (dtype, spec) in META_SPEC.items():
        a = np.asarray(d[key])
        shape = tuple(n if x == "N" else x for x in spec)
        if a.dtype != dtype:
            raise InputError(path, key, f"dtype {a.dtype}, expected {np.dtype(dtype)}")
        if a.shape != shape:
            raise InputError(path, key, f"shape {a.shape}, expected {shape}")
    for key in STR_KEYS:
        v = d[key]
        if not isinstance(v, str) and not (isinstance(v, np.ndarray) and v.dtype.kind == "U" and v.shape == ()):
            raise InputError(path, key, f"expected a string, got {type(v).__name__}")
    z = np.asarray(d["z_index"])
    nz = int(np.asarray(d["ref_shape"])[0])
    if z.size and (z.min() < 0 or z.max() >= nz):
        raise InputError(path, "z_index", f"values must lie in [0, {nz}) (ref_shape[0])")
    if int(d["crop_size"]) < s:
        raise InputError(path, "crop_size", f"{int(d['crop_size'])} is smaller than the slice side {s}")


def save_slices(path: str | os.PathLike[str], d: dict[str, Any]) -> None:
    """Validate ``d`` and write it atomically with ``np.savez_compressed`` (strings as 0-d unicode)."""
    validate_slices(d, path)
    arrays = {k: (np.array(str(v)) if k in STR_KEYS else np.asarray(v)) for k, v in d.items()
              if k in (*IMAGE_KEYS, *REQUIRED_KEYS)}
    write_npz(path, arrays)


def read_slice_arrays(path: str | os.PathLike[str], keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of a slice file as stored, unvalidated: every member, or only those of ``keys`` that it holds
    (one member is read without decompressing the others). A file that is not a zip of plain arrays (a text
    file, a ``.npy``, a pickle, an ``.npz`` of Python objects) is an :class:`InputError`, never handed to an
    unsafe loader."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "slice file not found")
    not_ours = "not a ct2mr slices .npz (the file `ct2mr slices` writes)"
    if not zipfile.is_zipfile(path):  # a text file, a .npy, a pickle: never handed to a loader
        raise InputError(path, None, f"cannot read npz: not a zip archive of arrays; {not_ours}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (z.files if keys is None else [k for k in keys if k in z.files])}
    except ValueError as exc:
        if "pickle" in str(exc):  # numpy's message for an array of Python objects suggests an unsafe load: never
            raise InputError(path, None, f"cannot read npz: it holds Python objects, which ct2mr never loads; "
                             f"{not_ours}") from exc
        raise InputError(path, None, f"cannot read npz: {exc}; {not_ours}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(path, None, f"cannot read npz: {exc}; {not_ours}") from exc


def load_slices(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read (:func:`read_slice_arrays`) and validate a slice file. Arrays as stored; ``patient``/``role``/``source``
    as ``str``."""
    d: dict[str, Any] = read_slice_arrays(path)
    validate_slices(d, path)
    for k in STR_KEYS:
        d[k] = str(d[k])
    return d


# ------------------------------------------------------------------ inverse


def volume_from_slices(slices: np.ndarray, meta: dict[str, Any], fill: float = 0) -> np.ndarray:
    """Put ``(N, size, size)`` slices back into an array of shape ``meta["ref_shape"]`` (z, y, x).

    Slice ``i`` goes to ``[z_index[i]]`` inside the square window
    ``crop_origin``/``crop_size``; when ``crop_size > size`` each slice is first
    resized up to ``crop_size`` (linear for numbers, nearest for bool). Pixels of
    the window outside the reference grid are dropped; everything else is
    ``fill``. The output dtype is ``slices.dtype`` when ``fill`` is exactly
    representable in it, else float32. For ``crop_size == size`` this is the
    exact inverse of :func:`extract_slices` on the kept voxels.
    """
    slices = np.asarray(slices)
    z = np.asarray(meta["z_index"], dtype=np.int64)
    if slices.ndim != 3 or slices.shape[0] != z.size or slices.shape[1] != slices.shape[2]:
        raise InputError(None, "slices", f"shape {slices.shape} does not match (N={z.size}, S, S)")
    ref_shape = tuple(int(v) for v in np.asarray(meta["ref_shape"]))
    side = int(meta["crop_size"])
    r0, c0 = (int(v) for v in np.asarray(meta["crop_origin"]))
    dtype = slices.dtype
    if np.asarray(fill).astype(dtype) != fill:
        dtype = np.dtype(np.float32)
    vol = np.full(ref_shape, fill, dtype=dtype)
    big = resize_stack(slices, side, mask=slices.dtype == np.bool_) if side != slices.shape[1] else slices
    h, w = ref_shape[1], ref_shape[2]
    rs, re = max(r0, 0), min(r0 + side, h)
    cs, ce = max(c0, 0), min(c0 + side, w)
    if rs < re and cs < ce:
        vol[z, rs:re, cs:ce] = big[:, rs - r0:re - r0, cs - c0:ce - c0]
    return vol


def volume_image_from_slices(slices: np.ndarray, meta: dict[str, Any], fill: float = 0) -> sitk.Image:
    """:func:`volume_from_slices` as a ``SimpleITK.Image`` on the reference grid (spacing/origin/direction)."""
    vol = volume_from_slices(slices, meta, fill)
    img = sitk.GetImageFromArray(vol.astype(np.uint8) if vol.dtype == np.bool_ else vol)
    img.SetSpacing(tuple(float(v) for v in np.asarray(meta["ref_spacing"])))
    img.SetOrigin(tuple(float(v) for v in np.asarray(meta["ref_origin"])))
    img.SetDirection(tuple(float(v) for v in np.asarray(meta["ref_direction"])))
    return img


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ct", type=Path, help="windowed CT, uint8 (reference grid)")
    parser.add_argument("--mr", type=Path, help="normalised MR, uint8 (on the CT grid when both given)")
    add_slice_arguments(parser)


def add_slice_arguments(parser: argparse.ArgumentParser) -> None:
    """Patient, masks, output and selection flags (``ct2mr slices``, ``ct2mr normalise-slices``)."""
    parser.add_argument("--patient", required=True, help="patient id")
    parser.add_argument("--role", required=True, help="patient role (from the patient table)")
    parser.add_argument("--head-mask", required=True, type=Path, help="head mask on the reference grid")
    parser.add_argument("--brain-mask", required=True, type=Path, help="brain mask on the reference grid")
    parser.add_argument("--output", required=True, type=Path, help="results/slices/{patient}.npz")
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels (default 256)")
    parser.add_argument("--min-brain-voxels", type=int, default=500,
                        help="keep axial slices with at least this many brain voxels (default 500)")
    parser.add_argument("--min-slices", type=int, default=5, help="fail below this many kept slices (default 5)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image  # noqa: PLC0415

    check_slice_arguments(args)
    write_slices(args, read_image(args.ct) if args.ct is not None else None,
                 read_image(args.mr) if args.mr is not None else None, args.ct, args.mr)


def check_slice_arguments(args: argparse.Namespace) -> None:
    """The slice flags' checks, before any work: an image, a valid size and slice minimum."""
    if args.ct is None and args.mr is None:
        raise InputError(None, "--ct/--mr", "give at least one of --ct and --mr")
    try:
        check_counts(size=args.size, min_slices=args.min_slices)
    except InputError as exc:
        raise InputError(None, f"--{(exc.field or '').replace('_', '-')}", exc.problem) from None


def write_slices(args: argparse.Namespace, ct: sitk.Image | None, mr: sitk.Image | None,
                 ct_path: str | os.PathLike[str] | None, mr_path: str | os.PathLike[str] | None) -> None:
    """Slices of the uint8 ``ct`` / ``mr`` with the mask files of ``args`` -> ``args.output``.

    ``ct_path`` / ``mr_path``: the files the images are (or were written to), named by errors.
    """
    from ct2mr.io.imageio import read_image  # noqa: PLC0415

    paths = {"ct": ct_path, "mr": mr_path, "head_mask": args.head_mask, "brain_mask": args.brain_mask}
    try:
        d = extract_slices(ct, mr, read_image(args.head_mask), read_image(args.brain_mask), patient=args.patient,
                           role=args.role, size=args.size, min_brain_voxels=args.min_brain_voxels,
                           min_slices=args.min_slices)
    except InputError as exc:
        culprit = paths.get(exc.field or "") or paths["ct"] or paths["mr"]
        raise InputError(culprit, exc.field, exc.problem) from exc
    save_slices(args.output, d)
    log.info("wrote %s (%d slices)", args.output, len(d["z_index"]))
