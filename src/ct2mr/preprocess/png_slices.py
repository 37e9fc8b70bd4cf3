"""Pre-registered 2D PNG slice pairs -> ``results/slices/{patient}.npz`` (same contract as volumes).

For data that only exists as 8-bit slices, e.g. the Harvard CT/MR pairs
(``CT/<case><slice:3>.png`` and ``MR/<case><slice:3>.png``: same file name =
same patient and slice, already registered and windowed).

Rules:

* ``ct`` / ``mr`` are a folder (its ``*.png``) or a glob pattern
  (``.../CT/16???.png``). Files are sorted by name; slice ``i`` of the sorted
  list gets ``z_index = i``.
* Pairing: when both are given, CT and MR files are matched by file name; a
  file without its partner raises :class:`InputError` naming it. Paired roles
  (``paired_*``) need both; ``ct_only`` / ``mr_only`` need theirs.
* Pixels: 8-bit grey (``L``); RGB(A) PNGs are converted to grey with PIL's
  ``convert("L")``; other modes (16-bit...) are refused. All slices of one
  patient must have the same size. Values are kept as they are (the PNGs are
  already windowed / normalised).
* Masks: no HU are available, so the **head mask** is, per slice, the largest
  2D connected component of ``CT > 20`` OR ``MR > Otsu threshold of the MR
  slice`` (whichever images are given; the brain-windowed CT shows fat as 0,
  the MR shows it), closed with a 3-pixel disk and holes filled; the
  **brain mask** equals the head mask (documented simplification).
* Geometry: the reference grid is a 1 mm identity grid of shape ``(N, H, W)``
  (origin 0). The window is centred on the image centre with side
  ``max(size, H, W)`` (padding with 0, never distorting); if that exceeds
  ``size`` it is resized down to ``size x size`` as in :mod:`ct2mr.preprocess.slices`.
  ``source = "png"``.

CLI (``ct2mr slices-png``)::

    ct2mr slices-png --patient P --role ROLE [--ct FOLDER_OR_GLOB] [--mr FOLDER_OR_GLOB]
                     --output results/slices/P.npz [--size 256]

Quote glob patterns in the shell so that ct2mr, not the shell, expands them.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ct2mr.errors import InputError
from ct2mr.preprocess.slices import check_counts, crop_window, cut_window, resize_stack, save_slices

log = logging.getLogger(__name__)

#: CT grey level above which a PNG pixel counts as head (8-bit, brain-windowed CT)
CT_HEAD_THRESHOLD = 20


def list_pngs(spec: str | os.PathLike[str]) -> list[Path]:
    """PNG files of a folder (``*.png``) or of a glob pattern, sorted by file name."""
    spec_s = str(spec)
    p = Path(spec_s)
    files = sorted(p.glob("*.png")) if p.is_dir() else sorted(Path(f) for f in glob.glob(spec_s))
    files = [f for f in files if f.suffix.lower() == ".png" and f.is_file()]
    if not files:
        raise InputError(spec_s, None, "no PNG files found (expected a folder of *.png or a glob pattern)")
    files.sort(key=lambda f: f.name)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise InputError(spec_s, None, "several PNG files share one file name; pairing needs unique names")
    return files


def read_png(path: Path) -> np.ndarray:
    """One 8-bit grey PNG as a (H, W) uint8 array."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA", "P", "LA"):
                im = im.convert("L")
            if im.mode != "L":
                raise InputError(path, "mode", f"expected an 8-bit grey PNG, got mode {im.mode!r}")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(path, None, f"cannot read PNG: {exc}") from exc


def _largest_2d(m: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def head_mask_2d(ct: np.ndarray | None, mr: np.ndarray | None) -> np.ndarray:
    """Head mask of one 8-bit slice pair (either may be ``None``; see module docstring)."""
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    ref = ct if ct is not None else mr
    assert ref is not None
    m = np.zeros(ref.shape, bool)
    if ct is not None:
        m |= ct > CT_HEAD_THRESHOLD
    if mr is not None and mr.max() > mr.min():
        m |= mr > threshold_otsu(mr)
    m = _largest_2d(m)
    disk = np.hypot(*np.mgrid[-3:4, -3:4]) <= 3
    m = ndimage.binary_closing(np.pad(m, 3), structure=disk)[3:-3, 3:-3]
    return ndimage.binary_fill_holes(m)


def _stack(files: list[Path]) -> np.ndarray:
    arrays = [read_png(f) for f in files]
    shape = arrays[0].shape
    for f, a in zip(files, arrays, strict=True):
        if a.shape != shape:
            raise InputError(f, "size", f"{a.shape[1]}x{a.shape[0]} differs from {files[0].name}'s "
                                        f"{shape[1]}x{shape[0]}")
    return np.stack(arrays)


def slices_from_png(
    ct: str | os.PathLike[str] | None,
    mr: str | os.PathLike[str] | None,
    *,
    patient: str,
    role: str,
    size: int = 256,
) -> dict[str, Any]:
    """Slice dictionary (npz contract of DEVELOPING.md) from PNG slices (see module docstring)."""
    if ct is None and mr is None:
        raise InputError(None, "ct/mr", "give at least one of the CT and MR PNG folders / patterns")
    if role.startswith("paired") and (ct is None or mr is None):
        raise InputError(None, "role", f"role {role} needs both CT and MR PNGs")
    check_counts(size=size)
    ct_files = list_pngs(ct) if ct is not None else None
    mr_files = list_pngs(mr) if mr is not None else None
    if ct_files is not None and mr_files is not None:
        ct_names = {f.name for f in ct_files}
        mr_names = {f.name for f in mr_files}
        for f in ct_files:
            if f.name not in mr_names:
                raise InputError(f, None, f"CT slice has no MR partner of the same name in {mr}")
        for f in mr_files:
            if f.name not in ct_names:
                raise InputError(f, None, f"MR slice has no CT partner of the same name in {ct}")
    stacks: dict[str, np.ndarray] = {}
    if ct_files is not None:
        stacks["ct"] = _stack(ct_files)
    if mr_files is not None:
        stacks["mr"] = _stack(mr_files)
    if "ct" in stacks and "mr" in stacks and stacks["ct"].shape != stacks["mr"].shape:
        raise InputError(mr_files[0], "size", "MR slices differ in size from the CT slices")  # type: ignore[index]
    src = "ct" if "ct" in stacks else "mr"
    ref = stacks[src]
    n, h, w = ref.shape
    ct_s, mr_s = stacks.get("ct"), stacks.get("mr")
    head = np.stack([head_mask_2d(None if ct_s is None else ct_s[i], None if mr_s is None else mr_s[i])
                     for i in range(n)])
    (r0, c0), side = crop_window((0, h - 1, 0, w - 1), size)
    out: dict[str, Any] = {}
    for key, arr in stacks.items():
        out[key] = resize_stack(cut_window(arr, (r0, c0), side), size, mask=False)
    hm = resize_stack(cut_window(head, (r0, c0), side), size, mask=True)
    out["head_mask"] = hm
    out["brain_mask"] = hm.copy()
    out.update(
        z_index=np.arange(n, dtype=np.int64),
        crop_origin=np.array([r0, c0], dtype=np.int64),
        crop_size=np.array(side, dtype=np.int64),
        ref_shape=np.array([n, h, w], dtype=np.int64),
        ref_spacing=np.ones(3, dtype=np.float64),
        ref_origin=np.zeros(3, dtype=np.float64),
        ref_direction=np.eye(3, dtype=np.float64).ravel(),
        patient=str(patient),
        role=str(role),
        source="png",
    )
    log.info("%s: %d PNG slices %dx%d -> %d", patient, n, w, h, size)
    return out


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", required=True, help="patient id")
    parser.add_argument("--role", required=True, help="paired_train, paired_test, ct_only or mr_only")
    parser.add_argument("--ct", help="folder of CT PNGs or a (quoted) glob pattern")
    parser.add_argument("--mr", help="folder of MR PNGs or a (quoted) glob pattern")
    parser.add_argument("--output", required=True, type=Path, help="results/slices/{patient}.npz")
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels (default 256)")


def run(args: argparse.Namespace) -> None:
    d = slices_from_png(args.ct, args.mr, patient=args.patient, role=args.role, size=args.size)
    save_slices(args.output, d)
    log.info("wrote %s (%d slices)", args.output, len(d["z_index"]))
