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
* **Dropped** with a warning naming the file and why (never trained on): an
  image that is no head slice -- a strip (sides more than :data:`MAX_ASPECT`
  to 1, e.g. 2000x40), a blank image (every pixel one value, e.g. all black),
  or an image whose head mask is empty or covers under
  :data:`MIN_HEAD_FRACTION` of the image (no head found).
  ``<file>: dropped from pool <patient>: <why>; it is not trained on``.
* **Refused** (:class:`InputError` naming the file, one line): no image found, a
  file that is not a PNG/JPEG image, a 16-bit image, an image under
  :data:`MIN_SIDE` px on a side, an image over PIL's decompression-bomb limit
  (``PIL.Image.MAX_IMAGE_PIXELS``, ~89 megapixels; found from the header before
  any pixel is decoded), and a pool whose every image is dropped.
* **Limits of the workflow** (the CLI and :func:`slices_from_pool`): the slice
  side ``size`` is at least :data:`MIN_SLICE_SIZE` (the config schema's
  ``slices.size`` minimum) and the pool id follows the patient table's id rule
  (:func:`is_patient_id`, the patient schema's ``patient`` pattern).

:func:`pool_image_info` reads one image's header only (mode, size, the refusals
and the strip rule above): ``ct2mr check-config --data`` uses it.

CLI (``ct2mr slices-pool``)::

    ct2mr slices-pool --patient POOL --role ct_only|mr_only --images FOLDER_OR_GLOB
                      --output results/slices/POOL.npz [--size 256]

Quote glob patterns in the shell so that ct2mr, not the shell, expands them.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ct2mr.errors import InputError
from ct2mr.preprocess.slices import save_slices

log = logging.getLogger(__name__)

#: file name endings of pool images (compared lower-case)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: smallest accepted image side in pixels (a thumbnail below it holds no anatomy)
MIN_SIDE = 32
#: an image whose longer side exceeds this many times its shorter side is a strip, not a head slice
#: (dropped; the 200 real web head CTs of ../shared/data/head_ct_2d reach 1.52)
MAX_ASPECT = 3.0
#: a head mask covering less than this fraction of the image's footprint on the canvas: no head found
#: (dropped; the real pools' smallest head mask covers over 20% of the canvas)
MIN_HEAD_FRACTION = 0.01
#: smallest slice side (px) the workflow accepts: the config schema's ``slices.size`` minimum
#: (workflow/schemas/config.schema.yaml; tests/test_image_pools.py checks they agree)
MIN_SLICE_SIZE = 32
#: a patient id (the patient schema's ``patient`` pattern, workflow/schemas/patients.schema.yaml;
#: ``..`` is refused besides; tests/test_image_pools.py checks they agree)
PATIENT_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: roles a pool can have (pools are unpaired training data)
POOL_ROLES: tuple[str, ...] = ("ct_only", "mr_only")
#: head threshold = background + LOW_FRACTION * (Otsu - background): low enough to keep
#: dim tissue (T2 scalp, grey matter under a bright skull), high enough to drop noise
LOW_FRACTION = 0.3
#: PIL modes converted to grey through luminance (or kept, for ``L``)
_GREY_MODES = ("L", "RGB", "RGBA", "P", "PA", "LA", "La", "RGBa", "RGBX", "CMYK", "YCbCr", "1")


def is_patient_id(value: str) -> bool:
    """True when ``value`` is a valid patient id of the patient table (letters, digits, ``_ - .``, starting
    with a letter or digit, no ``..``): the id becomes file names under ``results/``."""
    return bool(re.search(PATIENT_ID_PATTERN, value)) and ".." not in value


def check_pool_arguments(patient: str, role: str, size: int) -> None:
    """Refuse (:class:`InputError`, one line) what the workflow would never run: a role other than
    ``ct_only`` / ``mr_only``, a slice side under :data:`MIN_SLICE_SIZE`, an invalid patient id."""
    if role not in POOL_ROLES:
        raise InputError(None, "role", f"a pool of 2D images is unpaired data: role ct_only or mr_only, got {role}")
    if int(size) < MIN_SLICE_SIZE:
        raise InputError(None, "--size", f"{size} px: slices must be at least {MIN_SLICE_SIZE} px on a side "
                                         "(the workflow's slices.size minimum)")
    if not is_patient_id(patient):
        raise InputError(None, "--patient", f"{patient!r} is not a patient id: letters, digits, '_', '-' and '.', "
                                            "starting with a letter or digit, no '/' and no '..' (the patient "
                                            "table's rule: the id names files under results/)")


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


@dataclass(frozen=True)
class PoolImageInfo:
    """What the header of one pool image tells (no pixel decoded)."""

    path: Path
    width: int  # px
    height: int  # px
    mode: str  # PIL mode, e.g. "L", "RGB", "RGBA"
    format: str  # "PNG", "JPEG" or "MPO"

    @property
    def drop_reason(self) -> str | None:
        """Why the image is no head slice by its size alone (:func:`shape_drop_reason`), or ``None``."""
        return shape_drop_reason(self.width, self.height)


def shape_drop_reason(width: int, height: int) -> str | None:
    """Why a ``width x height`` px image is no head slice by its shape alone (a strip: sides more than
    :data:`MAX_ASPECT` to 1), or ``None``."""
    long, short = max(width, height), min(width, height)
    if long > MAX_ASPECT * short:
        return (f"a {width}x{height} px strip (sides {long / short:.1f} to 1, more than {MAX_ASPECT:g} to 1): "
                "not a head slice")
    return None


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@contextlib.contextmanager
def open_image_header(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The PIL image of ``path`` opened from its header, no pixel decoded (any 2D image: pools, PNG pairs).

    Raises :class:`InputError` naming the file (one line): not an image PIL identifies, unreadable, or
    over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``; PIL itself raises only over
    twice the limit and merely warns between: both are refused here, with the pixel count).
    """
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with open(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(fh)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                found = _BOMB_PIXELS.search(str(exc))
                count = f"{found.group(1)} pixels" if found else "too many pixels"
                raise InputError(path, "size", f"{count}, over the {Image.MAX_IMAGE_PIXELS} pixel limit of PIL's "
                                 "decompression-bomb guard: refused unread (a head slice has far fewer)") from None
            with im:
                yield im
    except UnidentifiedImageError:
        raise InputError(path, None, "not an image (PIL cannot identify it; a pool takes PNG or JPEG)") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read image: {' '.join(str(exc).split())}") from None


@contextlib.contextmanager
def _open_pool_image(path: Path) -> Iterator[Any]:
    """:func:`open_image_header` plus the pool's header rules (format, mode, size)."""
    with open_image_header(path) as im:
        fmt = im.format
        if fmt not in ("PNG", "JPEG", "MPO"):
            raise InputError(path, None, f"not a PNG or JPEG image (found {fmt} data)")
        mode = im.mode
        if mode not in _GREY_MODES:
            bits = "16-bit" if mode.startswith("I;16") or mode == "I" else f"mode {mode!r}"
            raise InputError(path, "mode", f"{bits} image: a pool takes 8-bit grey or colour images; "
                                           "window it to 8 bit first")
        width, height = im.size
        if min(width, height) < MIN_SIDE:
            raise InputError(path, "size", f"{width}x{height} px: images must be at least {MIN_SIDE} px on each side")
        yield im


def pool_image_info(path: str | os.PathLike[str]) -> PoolImageInfo:
    """Header of one pool image (PIL ``Image.open`` without loading: milliseconds, any image size).

    Raises :class:`InputError` for every refusal the header tells (see the module docstring);
    :attr:`PoolImageInfo.drop_reason` says whether the image would be dropped as a strip.
    """
    p = Path(path)
    with _open_pool_image(p) as im:
        return PoolImageInfo(p, int(im.size[0]), int(im.size[1]), str(im.mode), str(im.format))


def read_pool_image(path: Path) -> np.ndarray:
    """One pool image as 8-bit grey, shape (H, W) uint8 (see module docstring for the conversions)."""
    with _open_pool_image(path) as im:
        return np.asarray(im if im.mode == "L" else im.convert("L"), dtype=np.uint8).copy()


def pixel_drop_reason(image: np.ndarray, head: np.ndarray, footprint: np.ndarray) -> str | None:
    """Why an image (H, W uint8) with its head mask (bool, canvas) is no head slice, or ``None``:
    blank (one value everywhere) or no head found (mask empty or under :data:`MIN_HEAD_FRACTION`
    of the image's ``footprint`` on the canvas)."""
    if image.min() == image.max():
        return f"blank: every pixel is {int(image.min())}"
    area = int(head.sum())
    if area == 0:
        return "no head found: its head mask is empty"
    fraction = area / max(int(footprint.sum()), 1)
    if fraction < MIN_HEAD_FRACTION:
        return (f"no head found: its head mask covers {100 * fraction:.2g}% of the image "
                f"(under {100 * MIN_HEAD_FRACTION:g}%)")
    return None


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

    ``role`` is ``ct_only`` (images go to key ``ct``) or ``mr_only`` (key ``mr``). Images that are
    no head slice are dropped with a warning (see the module docstring); InputError when all are.
    """
    check_pool_arguments(patient, role, size)
    t0 = time.perf_counter()
    files = list_pool_images(images)
    stack = np.zeros((len(files), size, size), np.uint8)
    head = np.zeros((len(files), size, size), bool)
    scales = np.zeros(len(files))
    dropped: list[tuple[Path, str]] = []
    n = 0
    for f in files:
        image = read_pool_image(f)
        why = shape_drop_reason(image.shape[1], image.shape[0])
        if why is None:
            canvas, foot, scale = place_on_canvas(image, size)
            mask = pool_head_mask(canvas, foot)
            why = pixel_drop_reason(image, mask, foot)
        if why is not None:
            log.warning("%s: dropped from pool %s: %s; it is not trained on", f, patient, why)
            dropped.append((f, why))
            continue
        stack[n], head[n], scales[n] = canvas, mask, scale
        n += 1
    if n == 0:
        f, why = dropped[0]
        raise InputError(images, None, f"every image of the pool was dropped ({len(dropped)} of {len(files)}), "
                                       f"e.g. {f.name}: {why}; a pool needs head slices")
    stack, head, scales = stack[:n], head[:n], scales[:n]
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
    log.info("%s: pool of %d images (%s) -> %d x %dx%d %s slices in %.2f s; scale %.3g..%.3g; "
             "head mask %.0f%% of the canvas on average%s", patient, len(files), images, n, size, size, key,
             time.perf_counter() - t0, scales.min(), scales.max(), 100 * head.mean(),
             f"; {len(dropped)} image(s) dropped (warned above)" if dropped else "")
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
