"""Three brain tissue classes (CSF, grey matter, white matter) of an MR, and their overlap metrics.

Judging a synthetic MR by what it is used for: segment the real and the synthetic
MR the same way and compare the tissue maps (Dice, HD95), the way SynthRAD 2025
compares TotalSegmentator's structures of real and synthetic CT.

* :func:`segment_tissues`: ANTs Atropos (antspyx) inside a given brain mask:
  k-means initialisation with 3 classes, then EM with a Markov random field
  prior (:class:`AtroposSettings`). Atropos' classes are then named by their
  mean intensity in the image: for a T1-like MR the darkest class is CSF and the
  brightest white matter; for a T2-like MR (the phantom's, the Harvard atlas')
  the reverse. Output labels (:data:`TISSUE_LABELS`): 0 background (outside the
  mask), 1 CSF, 2 GM, 3 WM, ``uint8``.
* :func:`dice_per_class`: Dice of each tissue between two label volumes.
* :func:`hd95`: 95th-percentile symmetric surface distance (mm) of two masks, as
  MONAI's ``HausdorffDistanceMetric(percentile=95)`` (used by SynthRAD 2025)
  defines it; :func:`hd95_per_class` for label volumes.

Arrays are ``(z, y, x)`` (``sitk.GetArrayFromImage`` order) with the spacing
given in the same order, ``(sz, sy, sx)`` in mm; SimpleITK images carry their own
spacing. ANTs runs on as many threads as ITK's default
(``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, read when ANTs first runs).

Speed and accuracy (``bench/results/segmentation.md``): with the default
settings the real T1 brain (1.3 million voxels) takes 7.7 CPU-seconds on one
core, the phantom brains (1.8-1.9 million) 8-9; against FreeSurfer's aseg on
that head Dice GM 0.90 and WM 0.90 (deep grey nuclei are WM-bright on T1 and
come out WM), on the phantom WM 0.98, GM 0.85-0.87, CSF 0.84-0.88.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import SimpleITK as sitk
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ct2mr.errors import InputError

log = logging.getLogger(__name__)

#: output label of each tissue class (0 is background: outside the brain mask)
TISSUE_LABELS: dict[str, int] = {"csf": 1, "gm": 2, "wm": 3}

Contrast = Literal["t1", "t2"]


@dataclass(frozen=True)
class AtroposSettings:
    """Atropos settings of :func:`segment_tissues`.

    Attributes
    ----------
    iterations:
        Maximum EM iterations after the k-means initialisation (Atropos ``-c
        [iterations, 0]``). 1 (one MRF-regularised update of the k-means
        classes): 2 or 3 change the Dice against FreeSurfer by < 0.01 on the real
        T1 head, lower the grey-matter Dice on the phantom, and cost ~3.5 CPU-s
        more per 1.3 M brain voxels (``bench/results/segmentation.md``, (d)).
    mrf_smoothing:
        MRF smoothing factor (Atropos ``-m [smoothing, radius]``; ANTs' own
        default is 0.3, antspyx's examples use 0.1-0.2); 0 turns the MRF off.
    mrf_radius:
        MRF neighbourhood radius in voxels, the same on every axis (1: the
        3x3x3 neighbourhood).
    """

    iterations: int = 1
    mrf_smoothing: float = 0.1
    mrf_radius: int = 1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not (0.0 <= self.mrf_smoothing <= 1.0):
            raise ValueError(f"mrf_smoothing must be in [0, 1], got {self.mrf_smoothing}")
        if self.mrf_radius < 1:
            raise ValueError(f"mrf_radius must be >= 1, got {self.mrf_radius}")

    def atropos_args(self) -> dict[str, str]:
        """The Atropos command-line values of these settings (``-i``, ``-c``, ``-m``)."""
        r = self.mrf_radius
        return {"i": "kmeans[3]", "c": f"[{self.iterations},0]", "m": f"[{self.mrf_smoothing},{r}x{r}x{r}]"}


DEFAULT_SETTINGS = AtroposSettings()


# --------------------------------------------------------------------------- segmentation


def _spacing3(spacing_mm: ArrayLike, name: str = "spacing_mm") -> tuple[float, float, float]:
    s = np.asarray(spacing_mm, dtype=float).ravel()
    if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{name} must be 3 positive numbers (sz, sy, sx) in mm, got {spacing_mm!r}")
    return float(s[0]), float(s[1]), float(s[2])


def _bbox(mask: NDArray[np.bool_], margin: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, grown by ``margin`` voxels within the array."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(out)


@contextlib.contextmanager
def _scratch_tempdir() -> Iterator[None]:
    """Point ``tempfile`` at a private folder removed afterwards (antspyx' ``atropos`` leaves files there)."""
    old = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="ct2mr_atropos_") as tmp:
        tempfile.tempdir = tmp
        try:
            yield
        finally:
            tempfile.tempdir = old


def _run_atropos(
    image: NDArray[np.float32], mask: NDArray[np.bool_], spacing_zyx: tuple[float, float, float],
    settings: AtroposSettings, backend: Literal["lib", "public"] = "lib",
) -> NDArray[np.uint8]:
    """Atropos' raw classes (1..3 inside the mask, 0 outside) of a (z, y, x) volume.

    ``backend``: "lib" calls antspyx' compiled Atropos directly (no files); "public" goes through
    ``ants.atropos`` (same Atropos call, plus probability images written to a temporary folder).
    """
    import ants

    spacing_xyz = spacing_zyx[::-1]
    img = ants.from_numpy(np.ascontiguousarray(image.transpose(2, 1, 0)), spacing=spacing_xyz)
    msk = ants.from_numpy(np.ascontiguousarray(mask.transpose(2, 1, 0).astype(np.uint32)), spacing=spacing_xyz)
    args = settings.atropos_args()
    if backend == "lib":
        # Atropos itself, asked for the label image only: ants.atropos also writes every class'
        # probability image (compressed NIfTI) to the system temp folder and leaves them there
        try:
            from ants.internal import get_lib_fn, process_arguments
        except ImportError:  # another antspyx layout: the public function, its files in a private folder
            backend = "public"
    if backend == "lib":
        out = img.clone("unsigned int")
        call: dict[str, Any] = {"d": 3, "a": img, "m": args["m"], "o": out, "c": args["c"], "i": args["i"],
                                "x": msk, "r": 0}  # r 0: Atropos' constant random seed (reproducible)
        status = get_lib_fn("Atropos")(process_arguments(call))
        if status != 0:
            raise RuntimeError(f"ANTs Atropos failed (exit status {status})")
        seg = out
    else:
        with _scratch_tempdir():
            seg = ants.atropos(a=img, x=msk, i=args["i"], m=args["m"], c=args["c"], r=0)["segmentation"]
    raw = np.rint(seg.numpy()).astype(np.int64).transpose(2, 1, 0)
    if raw.min() < 0 or raw.max() > 3:
        raise RuntimeError(f"ANTs Atropos returned labels outside 0..3 ({raw.min()}..{raw.max()})")
    raw[~mask] = 0
    return raw.astype(np.uint8)


def order_classes(image: ArrayLike, raw: ArrayLike, contrast: Contrast) -> NDArray[np.uint8]:
    """Rename 3 intensity classes (labels 1..3 in ``raw``, any order) CSF=1, GM=2, WM=3 by mean intensity.

    T1-like: CSF darkest, WM brightest; T2-like: CSF brightest, WM darkest.
    ``image`` and ``raw`` are ``(z, y, x)`` arrays of one shape; label 0 stays 0.

    Raises
    ------
    ValueError
        ``contrast`` is not "t1"/"t2", or fewer than 3 classes are present.
    """
    if contrast not in ("t1", "t2"):
        raise ValueError(f"contrast must be 't1' or 't2', got {contrast!r}")
    img = np.asarray(image, dtype=np.float64)
    lab = np.asarray(raw)
    means = {}
    for k in (1, 2, 3):
        sel = lab == k
        if sel.any():
            means[k] = float(img[sel].mean())
    if len(means) < 3:
        raise ValueError(f"expected 3 tissue classes inside the mask, found {len(means)} (labels {sorted(means)})")
    ranked = sorted(means, key=lambda k: means[k], reverse=(contrast == "t2"))  # CSF, GM, WM
    lut = np.zeros(max(int(lab.max()), 3) + 1, dtype=np.uint8)
    for new, old in enumerate(ranked, start=1):
        lut[old] = new
    return lut[lab.astype(np.int64)]


@overload
def segment_tissues(
    image: sitk.Image, brain_mask: sitk.Image, contrast: Contrast = ..., spacing_mm: None = ...,
    settings: AtroposSettings = ...,
) -> sitk.Image: ...


@overload
def segment_tissues(
    image: NDArray[Any], brain_mask: NDArray[Any], contrast: Contrast = ...,
    spacing_mm: tuple[float, float, float] | ArrayLike = ..., settings: AtroposSettings = ...,
) -> NDArray[np.uint8]: ...


def segment_tissues(
    image: sitk.Image | NDArray[Any],
    brain_mask: sitk.Image | NDArray[Any],
    contrast: Contrast = "t1",
    spacing_mm: tuple[float, float, float] | ArrayLike | None = None,
    settings: AtroposSettings = DEFAULT_SETTINGS,
) -> sitk.Image | NDArray[np.uint8]:
    """CSF / grey matter / white matter labels of an MR inside a brain mask (ANTs Atropos).

    Parameters
    ----------
    image:
        The MR: a SimpleITK image, or a ``(z, y, x)`` array (any real dtype; the
        pipeline's ``uint8`` 0..255 or raw scanner values). Intensities are used
        as they are (no bias-field correction).
    brain_mask:
        Where to segment: a SimpleITK image on the same grid as ``image``, or a
        ``(z, y, x)`` array of its shape (non-zero = brain).
    contrast:
        ``"t1"`` (CSF darkest, WM brightest) or ``"t2"`` (CSF brightest, WM
        darkest): how Atropos' three intensity classes are named.
    spacing_mm:
        Voxel size ``(sz, sy, sx)`` in mm, in the array's axis order; required for
        arrays, taken from the image (and must be None) for SimpleITK images. ANTs
        uses it for the MRF neighbourhood.
    settings:
        :class:`AtroposSettings` (k-means init, 3 classes, EM iterations, MRF).

    Returns
    -------
    sitk.Image or numpy.ndarray
        ``uint8`` labels, 0 outside the mask, 1 CSF, 2 GM, 3 WM
        (:data:`TISSUE_LABELS`); a SimpleITK image with ``image``'s geometry for
        image input, a ``(z, y, x)`` array for array input.

    Raises
    ------
    ValueError
        Not 3D, shapes (or grids) differ, missing / bad spacing, an empty mask, or
        image values inside the mask that are not finite or take fewer than 3
        distinct values.
    RuntimeError
        Atropos failed.

    Notes
    -----
    Deterministic (Atropos' constant random seed). Atropos runs on the mask's
    bounding box (plus one voxel), so its cost scales with the brain, not the
    field of view: about 3 s for the k-means initialisation plus ~3.5 s per EM
    iteration with the MRF, per 1.3 million brain voxels on one core.
    """
    as_image = isinstance(image, sitk.Image)
    if as_image:
        if not isinstance(brain_mask, sitk.Image):
            raise ValueError("brain_mask must be a SimpleITK image when image is one")
        if spacing_mm is not None:
            raise ValueError("spacing_mm is taken from the SimpleITK image; pass None")
        if image.GetDimension() != 3 or brain_mask.GetDimension() != 3:
            raise ValueError("image and brain_mask must be 3D")
        if image.GetSize() != brain_mask.GetSize() or not np.allclose(
            image.GetSpacing(), brain_mask.GetSpacing(), rtol=1e-4
        ) or not np.allclose(image.GetOrigin(), brain_mask.GetOrigin(), atol=1e-3):
            raise ValueError(
                f"brain_mask's grid (size {brain_mask.GetSize()}, spacing {brain_mask.GetSpacing()}) differs from "
                f"the image's (size {image.GetSize()}, spacing {image.GetSpacing()})"
            )
        arr = sitk.GetArrayFromImage(image)
        mask = sitk.GetArrayFromImage(brain_mask) != 0
        spacing = _spacing3(image.GetSpacing()[::-1])
    else:
        arr = np.asarray(image)
        mask = np.asarray(brain_mask)
        if arr.ndim != 3 or mask.ndim != 3:
            raise ValueError(f"expected 3D (z, y, x) arrays, got image {arr.shape} and brain_mask {mask.shape}")
        if arr.shape != mask.shape:
            raise ValueError(f"brain_mask of shape {mask.shape} differs from the image's shape {arr.shape}")
        if spacing_mm is None:
            raise ValueError("spacing_mm (sz, sy, sx) in mm is required for array input")
        spacing = _spacing3(spacing_mm)
        mask = mask != 0
    if contrast not in ("t1", "t2"):
        raise ValueError(f"contrast must be 't1' or 't2', got {contrast!r}")
    if not mask.any():
        raise ValueError("the brain mask is empty")
    box = _bbox(mask, margin=1)
    sub = np.asarray(arr[box], dtype=np.float32)
    sub_mask = mask[box]
    inside = sub[sub_mask]
    if not np.all(np.isfinite(inside)):
        raise ValueError("the image has non-finite values inside the brain mask")
    if np.unique(inside).size < 3:
        raise ValueError("the image takes fewer than 3 distinct values inside the brain mask: nothing to segment")
    raw = _run_atropos(sub, sub_mask, spacing, settings)
    labels = np.zeros(mask.shape, dtype=np.uint8)
    labels[box] = order_classes(sub, raw, contrast)
    if not as_image:
        return labels
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    return out


def class_means(image: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Mean image intensity of each tissue class of a label volume (NaN for an absent class); for QA."""
    img = np.asarray(image, dtype=np.float64)
    lab = np.asarray(labels)
    if img.shape != lab.shape:
        raise ValueError(f"image shape {img.shape} differs from labels shape {lab.shape}")
    return {name: float(img[lab == k].mean()) if np.any(lab == k) else math.nan
            for name, k in TISSUE_LABELS.items()}


# --------------------------------------------------------------------------- overlap metrics


def dice(mask_a: ArrayLike, mask_b: ArrayLike) -> float:
    """Dice coefficient ``2|A & B| / (|A| + |B|)`` of two boolean masks, in [0, 1]; NaN if both are empty."""
    a = np.asarray(mask_a).astype(bool, copy=False)
    b = np.asarray(mask_b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return math.nan
    return 2.0 * int(np.count_nonzero(a & b)) / total


def dice_per_class(
    labels_a: ArrayLike, labels_b: ArrayLike, labels: Mapping[str, int] = TISSUE_LABELS
) -> dict[str, float]:
    """Dice of every class between two label volumes of one shape, e.g. ``{"csf": .., "gm": .., "wm": ..}``.

    A class absent from both volumes gives NaN; absent from one of them, 0.
    """
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"label volumes differ in shape: {a.shape} vs {b.shape}")
    return {name: dice(a == k, b == k) for name, k in labels.items()}


def _surface(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Voxels of ``mask`` with a 6-neighbour outside it (or on the array's border)."""
    return mask & ~ndimage.binary_erosion(mask)


def hd95(mask_a: ArrayLike, mask_b: ArrayLike, spacing_mm: ArrayLike) -> float:
    """95th-percentile symmetric Hausdorff distance between two masks' surfaces, in mm.

    As MONAI's ``HausdorffDistanceMetric(percentile=95, directed=False)`` (the
    SynthRAD 2025 evaluation): a surface voxel is a mask voxel with a 6-neighbour
    outside the mask (``mask & ~binary_erosion(mask)``, the array's border counts
    as outside); for every surface voxel of A the Euclidean distance (mm, voxel
    centres, ``scipy.ndimage.distance_transform_edt(sampling=spacing_mm)``) to the
    nearest surface voxel of B, and vice versa; the result is the larger of the
    two directed 95th percentiles (``numpy.percentile``, linear interpolation).

    Parameters
    ----------
    mask_a, mask_b:
        Boolean ``(z, y, x)`` masks of one shape.
    spacing_mm:
        Voxel size ``(sz, sy, sx)`` in mm, in the arrays' axis order.

    Returns
    -------
    float
        mm, >= 0 (0 for identical masks); NaN if either mask is empty.
    """
    a = np.asarray(mask_a).astype(bool, copy=False)
    b = np.asarray(mask_b).astype(bool, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3:
        raise ValueError(f"expected 3D (z, y, x) masks, got shape {a.shape}")
    spacing = _spacing3(spacing_mm)
    if not a.any() or not b.any():
        return math.nan
    # the union's bounding box (+1 voxel: erosion treats outside as background either way) holds
    # every surface voxel, so distances computed inside it are exact
    box = _bbox(a | b, margin=1)
    a, b = a[box], b[box]
    sa, sb = _surface(a), _surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def hd95_per_class(
    labels_a: ArrayLike, labels_b: ArrayLike, spacing_mm: ArrayLike, labels: Mapping[str, int] = TISSUE_LABELS
) -> dict[str, float]:
    """:func:`hd95` (mm) of every class between two ``(z, y, x)`` label volumes; NaN where a class is empty."""
    a = np.asarray(labels_a)
    b = np.asarray(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"label volumes differ in shape: {a.shape} vs {b.shape}")
    return {name: hd95(a == k, b == k, spacing_mm) for name, k in labels.items()}


# --------------------------------------------------------------------------- the workflow's segmentation


def read_z_index(slices_path: str | Path) -> NDArray[np.int64]:
    """The axial indices (``z_index``, array axis 0 of the reference grid) of a slice file's kept slices.

    Reads only that member of ``results/slices/{patient}.npz``
    (:func:`ct2mr.preprocess.slices.read_slice_arrays`); InputError when it is missing.
    """
    from ct2mr.preprocess.slices import read_slice_arrays  # noqa: PLC0415

    arrays = read_slice_arrays(slices_path, ["z_index"])
    if "z_index" not in arrays:
        raise InputError(slices_path, "z_index", "missing: not a volume patient's slice file")
    return np.asarray(arrays["z_index"], dtype=np.int64)


def kept_slices_mask(mask: ArrayLike, z_index: ArrayLike) -> NDArray[np.bool_]:
    """``mask`` (``(z, y, x)``) restricted to the axial slices ``z_index`` (those a 2D model synthesized).

    Outside them the synthetic volume is 0 (``ct2mr synthesize``), so every 3D comparison is
    restricted to them. ValueError when an index is outside the volume.
    """
    m = np.asarray(mask) != 0
    z = np.asarray(z_index, dtype=np.int64)
    if z.size and (z.min() < 0 or z.max() >= m.shape[0]):
        raise ValueError(f"z_index {z.min()}..{z.max()} outside the volume's {m.shape[0]} axial slices")
    keep = np.zeros(m.shape[0], dtype=bool)
    keep[z] = True
    return m & keep[:, None, None]


def shrink(image: sitk.Image, factor: int, is_mask: bool = False) -> sitk.Image:
    """``image`` block-averaged ``factor`` x ``factor`` x ``factor`` (``sitk.BinShrink``: geometry kept exact).

    A mask (``is_mask``) keeps a coarse voxel where at least half of its fine voxels are inside
    (``uint8`` 0/1). ``factor`` 1 returns the image unchanged (a mask as ``uint8``).
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if is_mask:
        f = sitk.Cast(image != 0, sitk.sitkFloat32)
        if factor == 1:
            return sitk.Cast(f > 0.5, sitk.sitkUInt8)
        return sitk.Cast(sitk.BinShrink(f, [factor] * 3) >= 0.5, sitk.sitkUInt8)
    if factor == 1:
        return image
    return sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), [factor] * 3)


def segment_kept(
    image: sitk.Image, brain_mask: sitk.Image, z_index: ArrayLike, contrast: Contrast,
    settings: AtroposSettings = DEFAULT_SETTINGS, downsample: int = 1,
) -> sitk.Image:
    """Tissue labels (0 / 1 CSF / 2 GM / 3 WM, ``uint8``) of an MR inside its brain mask on the kept slices.

    The workflow's segmentation of the real and of the synthetic MR: the brain mask is
    restricted to the axial slices ``z_index`` (:func:`kept_slices_mask`), then, with
    ``downsample`` f > 1, image and mask are block-averaged f x f x f (:func:`shrink`: voxels of
    f mm on the 1 mm grid, f**3 times fewer) before :func:`segment_tissues`. The labels are on that
    (possibly coarser) grid, with its geometry; real and synthetic are segmented alike, so their
    label volumes share one grid.
    """
    arr = sitk.GetArrayFromImage(brain_mask)
    kept = sitk.GetImageFromArray(kept_slices_mask(arr, z_index).astype(np.uint8))
    kept.CopyInformation(brain_mask)
    img = shrink(image, downsample)
    msk = shrink(kept, downsample, is_mask=True)
    msk.CopyInformation(img)
    return segment_tissues(sitk.Cast(img, sitk.sitkFloat32), msk, contrast, settings=settings)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--contrast`` and the Atropos flags (``--iterations``, ``--mrf-smoothing``, ``--mrf-radius``, ``--downsample``)."""
    parser.add_argument("--contrast", choices=["t1", "t2"], default="t1",
                        help="t1: CSF darkest, WM brightest; t2: the reverse (the phantom's MR)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_SETTINGS.iterations, help="Atropos EM iterations")
    parser.add_argument("--mrf-smoothing", type=float, default=DEFAULT_SETTINGS.mrf_smoothing,
                        help="Atropos MRF smoothing factor, 0..1 (0: no MRF)")
    parser.add_argument("--mrf-radius", type=int, default=DEFAULT_SETTINGS.mrf_radius, help="MRF radius, voxels")
    parser.add_argument("--downsample", type=int, default=1,
                        help="segment on f x f x f block averages (1: the evaluation grid itself)")


def settings_of(args: argparse.Namespace) -> AtroposSettings:
    """The :class:`AtroposSettings` of the parsed flags; InputError naming the bad flag."""
    if args.downsample < 1:
        raise InputError(None, "--downsample", f"must be >= 1, got {args.downsample}")
    try:
        return AtroposSettings(args.iterations, args.mrf_smoothing, args.mrf_radius)
    except ValueError as exc:
        raise InputError(None, "Atropos settings", str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mr", required=True, help="MR, uint8 0..255 (results/preprocessed/{patient}/mr_norm.nii.gz)")
    parser.add_argument("--brain-mask", required=True, help="brain mask on the MR's grid (ct_brain_mask.nii.gz)")
    parser.add_argument("--slices", required=True, help="results/slices/{patient}.npz: its z_index are the kept slices")
    parser.add_argument("--output", required=True, help="tissue labels (.nii.gz, uint8: 0, 1 CSF, 2 GM, 3 WM)")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image, write_image  # noqa: PLC0415 - CLI only

    settings = settings_of(args)
    image, mask = read_image(args.mr), read_image(args.brain_mask)
    z_index = read_z_index(args.slices)
    try:
        labels = segment_kept(image, mask, z_index, args.contrast, settings, args.downsample)
    except ValueError as exc:
        raise InputError(args.mr, None, f"cannot segment: {exc}") from None
    write_image(labels, args.output)
    counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=4)
    log.info("%s: csf %d, gm %d, wm %d voxels (spacing %s mm)", args.output, counts[1], counts[2], counts[3],
             labels.GetSpacing())
