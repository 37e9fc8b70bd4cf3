"""Unpaired 2D image pools -> ``results/slices/{patient}.npz`` (same contract as volumes).

A ``ct_only`` or ``mr_only`` row of the patient table may name a folder or a glob
pattern of 2D images (PNG or JPEG) of any size and colour mode: a **pool**. Each
image is one training slice; images need not share a size, a patient or a
scanner (e.g. ``../shared/data/head_ct_2d``: 200 web-sourced head CT images of
134 to 957 px, RGB(A); ``../shared/data/harvard_mr_unpaired``: 324 256x256 T2
slices of 13 patients). Pools only feed the unpaired training cycles: they are
never synthesized or evaluated, so the slice geometry of a pool is a placeholder
(an identity grid of ``(N, size, size)``, ``source = "pool"``) and the
minimum-slice rule of volumes does not apply.

Rules:

* **Files.** A folder gives its ``*.png``, ``*.jpg`` and ``*.jpeg`` files (any
  case; other files, e.g. a ``labels.csv`` beside the images, are skipped and
  counted in the log); a glob pattern gives every regular file it matches, and
  each must be an image. Files are sorted by path; slice ``i`` has
  ``z_index = i``.
* **Pixels.** Converted to 8-bit grey: grey (``L``) as is; ``RGB`` / ``RGBA`` /
  ``P`` / ``LA`` / ``CMYK`` / ``YCbCr`` through PIL's ITU-R 601-2 luminance
  ``L = 0.299 R + 0.587 G + 0.114 B`` (alpha ignored); 1-bit images to 0/255.
  16-bit or float images (modes ``I;16*``, ``I``, ``F``) are refused: their
  grey levels have no 8-bit window yet.
* **Canvas.** Each image is scaled so that its longer side equals ``size``
  (256; the same factor on both axes, so the aspect ratio is kept: linear
  interpolation, anti-aliased when shrinking) and centred on a black
  ``size x size`` canvas (padding 0, never cropped). A ``size``-square image is
  copied unchanged.
* **Head mask** (:func:`pool_head_mask`), per image on the canvas: pixels
  above the Otsu threshold of the image's own pixels, opened with a disk of
  radius ``~size/128`` (thin head holders, table lines and letters touching the
  head come off), the largest connected component kept (letters and labels in
  the corners are smaller), closed with a 3-pixel disk and its holes filled (the
  brain inside a bright skull, dark ventricles). The brain mask equals the head
  mask (documented simplification, as for PNG slice pairs).
* **Refused** (:class:`InputError` naming the file): no image found, a file
  that is not a PNG/JPEG image, a 16-bit image, an image under
  :data:`MIN_SIDE` px on a side.

CLI (``ct2mr slices-pool``)::

    ct2mr slices-pool --patient POOL --role ct_only|mr_only --images FOLDER_OR_GLOB
                      --output results/slices/POOL.npz [--size 256]

Quote glob patterns in the shell so that ct2mr, not the shell, expands them.
"""

from __future__ import annotations

import argparse
import glob
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ct2mr.errors import InputError
from ct2mr.preprocess.slices import check_counts, save_slices

log = logging.getLogger(__name__)

#: file name endings of pool images (compared lower-case)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: smallest accepted image side in pixels (a thumbnail below it holds no anatomy)
MIN_SIDE = 32
#: roles a pool can have (pools are unpaired training data)
POOL_ROLES: tuple[str, ...] = ("ct_only", "mr_only")
#: head threshold = background + LOW_FRACTION * (Otsu - background): low enough to keep
#: dim tissue (T2 scalp, grey matter under a bright skull), high enough to drop noise
LOW_FRACTION = 0.3
#: PIL modes converted to grey through luminance (or kept, for ``L``)
_GREY_MODES = ("L", "RGB", "RGBA", "P", "PA", "LA", "La", "RGBa", "RGBX", "CMYK", "YCbCr", "1")


def list_pool_images(spec: str | os.PathLike[str]) -> list[Path]:
    """Image files of a pool: a folder's ``*.png/*.jpg/*.jpeg`` or every file a glob matches, sorted by path."""
    spec_s = str(spec)
    p = Path(spec_s)
    if p.is_dir():
        everything = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        files = [f for f in everything if f.suffix.lower() in IMAGE_SUFFIXES]
        if len(files) < len(everything):
            log.info("%s: %d file(s) without a .png/.jpg/.jpeg ending skipped (e.g. %s)", spec_s,
                     len(everything) - len(files), next(f.name for f in everything if f not in files))
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(f) for f in glob.glob(spec_s) if Path(f).is_file())
    if not files:
        raise InputError(spec_s, None, "no images found (expected a folder of PNG/JPEG images or a glob pattern "
                                       "matching them)")
    return files


def read_pool_image(path: Path) -> np.ndarray:
    """One pool image as 8-bit grey, shape (H, W) uint8 (see module docstring for the conversions)."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as im:
            fmt = im.format
            if fmt not in ("PNG", "JPEG", "MPO"):
                raise InputError(path, None, f"not a PNG or JPEG image (found {fmt} data)")
            mode = im.mode
            if mode not in _GREY_MODES:
                bits = "16-bit" if mode.startswith("I;16") or mode == "I" else f"mode {mode!r}"
                raise InputError(path, "mode", f"{bits} image: a pool takes 8-bit grey or colour images; "
                                               "window it to 8 bit first")
            a = np.asarray(im if mode == "L" else im.convert("L"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise InputError(path, None, "not an image (PIL cannot identify it; a pool takes PNG or JPEG)") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read image: {exc}") from None
    if min(a.shape) < MIN_SIDE:
        raise InputError(path, "size", f"{a.shape[1]}x{a.shape[0]} px: images must be at least "
                                       f"{MIN_SIDE} px on each side")
    return a


def place_on_canvas(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale ``image`` (H, W) so its longer side is ``size``, centre it on a black square canvas.

    Returns ``(canvas uint8 (size, size), footprint bool (size, size), scale)``;
    ``footprint`` marks the canvas pixels covered by the image, ``scale`` the
    factor applied (canvas px per image px, same on both axes).
    """
    from skimage.transform import resize  # noqa: PLC0415

    h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        small = image
    else:
        res = resize(image.astype(np.float32), (nh, nw), order=1, anti_aliasing=scale < 1, preserve_range=True)
        small = np.clip(np.rint(res), 0, 255).astype(np.uint8)
    canvas = np.zeros((size, size), np.uint8)
    foot = np.zeros((size, size), bool)
    r0, c0 = (size - nh) // 2, (size - nw) // 2
    canvas[r0:r0 + nh, c0:c0 + nw] = small
    foot[r0:r0 + nh, c0:c0 + nw] = True
    return canvas, foot, scale


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    return np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r


def pool_head_mask(canvas: np.ndarray, footprint: np.ndarray | None = None) -> np.ndarray:
    """Head mask (bool, canvas shape) of one pool image on its canvas (see module docstring).

    ``footprint`` limits the Otsu threshold to the image's own pixels (not the
    padding). An image without contrast gives an empty mask.
    """
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    foot = np.ones(canvas.shape, bool) if footprint is None else footprint
    values = canvas[foot]
    if values.size == 0 or values.min() == values.max():
        return np.zeros(canvas.shape, bool)
    otsu = float(threshold_otsu(values))
    ring = foot & ~ndimage.binary_erosion(foot, iterations=3, border_value=0)
    background = float(np.median(canvas[ring])) if ring.any() else 0.0
    threshold = background + LOW_FRACTION * (otsu - background) if background < otsu else otsu
    m = (canvas > threshold) & foot
    size = max(canvas.shape)
    pad = 4
    r_open = max(1, round(size / 128))
    m = ndimage.binary_fill_holes(m)  # a scalp ring around a dark skull joins the brain
    m = ndimage.binary_opening(np.pad(m, pad), structure=_disk(r_open))[pad:-pad, pad:-pad]
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    counts = np.bincount(lab.ravel())
    counts[0] = 0
    m = lab == int(np.argmax(counts))
    m = ndimage.binary_closing(np.pad(m, pad), structure=_disk(3))[pad:-pad, pad:-pad]
    return ndimage.binary_fill_holes(m)


def slices_from_pool(
    images: str | os.PathLike[str],
    *,
    patient: str,
    role: str,
    size: int = 256,
) -> dict[str, Any]:
    """Slice dictionary (npz contract of DEVELOPING.md) of a pool: one slice per image.

    ``role`` is ``ct_only`` (images go to key ``ct``) or ``mr_only`` (key ``mr``).
    """
    if role not in POOL_ROLES:
        raise InputError(None, "role", f"a pool of 2D images is unpaired data: role ct_only or mr_only, got {role}")
    check_counts(size=size)
    t0 = time.perf_counter()
    files = list_pool_images(images)
    n = len(files)
    stack = np.zeros((n, size, size), np.uint8)
    head = np.zeros((n, size, size), bool)
    scales = np.zeros(n)
    for i, f in enumerate(files):
        canvas, foot, scales[i] = place_on_canvas(read_pool_image(f), size)
        stack[i] = canvas
        head[i] = pool_head_mask(canvas, foot)
    key = "ct" if role == "ct_only" else "mr"
    out: dict[str, Any] = {
        key: stack,
        "head_mask": head,
        "brain_mask": head.copy(),
        "z_index": np.arange(n, dtype=np.int64),
        "crop_origin": np.zeros(2, dtype=np.int64),
        "crop_size": np.array(size, dtype=np.int64),
        "ref_shape": np.array([n, size, size], dtype=np.int64),
        "ref_spacing": np.ones(3, dtype=np.float64),
        "ref_origin": np.zeros(3, dtype=np.float64),
        "ref_direction": np.eye(3, dtype=np.float64).ravel(),
        "patient": str(patient),
        "role": str(role),
        "source": "pool",
    }
    empty = int((head.sum(axis=(1, 2)) == 0).sum())
    log.info("%s: pool of %d images (%s) -> %d x %dx%d %s slices in %.2f s; scale %.3g..%.3g; "
             "head mask %.0f%% of the canvas on average%s", patient, n, images, n, size, size, key,
             time.perf_counter() - t0, scales.min(), scales.max(), 100 * head.mean(),
             f"; {empty} image(s) with an empty head mask" if empty else "")
    return out


def pool_summary(d: dict[str, Any]) -> dict[str, float]:
    """Slice count and head-mask coverage of a pool's slice dictionary (for logs and benchmarks)."""
    head = np.asarray(d["head_mask"])
    area = head.sum(axis=(1, 2)) / math.prod(head.shape[1:])
    return {"n_slices": int(head.shape[0]), "head_fraction_mean": float(area.mean()),
            "head_fraction_min": float(area.min()), "empty_masks": int((area == 0).sum())}


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", required=True, help="pool id (the patient table's patient column)")
    parser.add_argument("--role", required=True, choices=POOL_ROLES, help="ct_only or mr_only")
    parser.add_argument("--images", required=True, help="folder of PNG/JPEG images or a (quoted) glob pattern")
    parser.add_argument("--output", required=True, type=Path, help="results/slices/POOL.npz")
    parser.add_argument("--size", type=int, default=256, help="canvas side in pixels (default 256)")


def run(args: argparse.Namespace) -> None:
    d = slices_from_pool(args.images, patient=args.patient, role=args.role, size=args.size)
    save_slices(args.output, d)
    log.info("wrote %s (%s)", args.output, pool_summary(d))
