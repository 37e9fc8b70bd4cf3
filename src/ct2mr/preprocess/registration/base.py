"""Types and helpers shared by the registration backends.

Convention used everywhere in :mod:`ct2mr.preprocess.registration`: the *fixed* image is
the CT (skull-stripped, 1 mm, LPS), the *moving* image is the MR (skull-stripped,
1 mm, on its own grid). An estimated transform is a :class:`SimpleITK.AffineTransform`
in the ITK convention: it maps a **fixed (CT) physical point in mm (LPS)** to the
corresponding **moving (MR) physical point in mm (LPS)**, so that::

    mr_on_ct_grid = sitk.Resample(mr, ct, transform, sitk.sitkLinear, 0.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.imageio import grid_difference


class BackendUnavailable(InputError):
    """A registration backend's external program or library is not installed."""

    def __init__(self, backend: str, problem: str) -> None:
        super().__init__(None, f"registration backend {backend!r}", problem)
        self.backend = backend


@dataclass(frozen=True)
class RegistrationSettings:
    """Settings common to all backends (each maps them onto its own options).

    Attributes
    ----------
    mi_bins:
        Histogram bins of the (Mattes) mutual information metric, >= 8.
    sampling_fraction:
        Fraction (0, 1] of the (dilated) fixed-mask voxels sampled by the
        metric at each resolution level, but at least ``min_samples``.
    min_samples:
        Minimum metric samples per level (all voxels when fewer), so coarse
        levels are not starved. Defaults (0.02, 20000) were tuned with
        ``bench/bench_registration.py``: ~45k samples at the 1 mm level of a
        head, 20k at the coarser ones. Backend mapping: simpleitk per level as
        said; antspy one rate for all levels, ``max(fraction, 5 * min_samples / N)``;
        elastix 2048..5000 new random samples every iteration; afni ignores it.
    iterations:
        Maximum optimizer iterations per resolution level (and per stage).
    shrink_factors:
        Multi-resolution pyramid, coarse to fine (e.g. ``(4, 2, 1)``); the
        smoothing sigma per level (antspy) is :meth:`smoothing_sigmas`;
        simpleitk block-averages, elastix uses its own smoothing pyramid.
    seed:
        Seed of the random metric sampling; with ``threads=1`` the simpleitk
        backend gives bit-identical transforms for the same inputs and seed.
    threads:
        Worker threads for the backend; ``None`` = library default (all cores).
        Default 1: ITK's multi-threaded metric sums in a run-dependent order, so
        only single-threaded SimpleITK runs are bit-reproducible (two threads
        were ~1.5x faster in wall time in our benchmark: 1-3 s -> 1-1.5 s).
    clip_percentiles:
        Intensity preparation before any backend sees the images (see
        :func:`prepare_intensities`): each image is clipped to these
        percentiles of its foreground, and the fixed image's voxels outside its
        (undilated) mask are set just below the clipped range. Without it a
        skull-stripped CT (brain 0..80 HU, background -1024 HU) puts the whole
        brain into one or two of the MI histogram's bins. ``None`` = images as given.
    mask_dilation_mm:
        The fixed (CT brain) mask is dilated by this many mm before it restricts
        the metric, so the brain outline (brain vs background) contributes to
        the mutual information. 0 = use the mask as given.
    """

    mi_bins: int = 32
    sampling_fraction: float = 0.02
    min_samples: int = 20000
    iterations: int = 200
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    seed: int = 0
    threads: int | None = 1
    mask_dilation_mm: float = 4.0
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)

    def __post_init__(self) -> None:
        if int(self.mi_bins) < 8:
            raise InputError(None, "mi_bins", f"must be >= 8, got {self.mi_bins}")
        if not 0.0 < float(self.sampling_fraction) <= 1.0:
            raise InputError(None, "sampling_fraction", f"must be in (0, 1], got {self.sampling_fraction}")
        if int(self.min_samples) < 0:
            raise InputError(None, "min_samples", f"must be >= 0, got {self.min_samples}")
        if int(self.iterations) < 1:
            raise InputError(None, "iterations", f"must be >= 1, got {self.iterations}")
        sf = tuple(int(s) for s in self.shrink_factors)
        if not sf or any(s < 1 for s in sf):
            raise InputError(None, "shrink_factors", f"must be integers >= 1, got {self.shrink_factors}")
        object.__setattr__(self, "shrink_factors", sf)
        if self.threads is not None and int(self.threads) < 1:
            raise InputError(None, "threads", f"must be >= 1 or None, got {self.threads}")
        if self.clip_percentiles is not None:
            lo, hi = (float(v) for v in self.clip_percentiles)
            if not 0.0 <= lo < hi <= 100.0:
                raise InputError(None, "clip_percentiles", f"need 0 <= low < high <= 100, got {self.clip_percentiles}")
            object.__setattr__(self, "clip_percentiles", (lo, hi))
        if float(self.mask_dilation_mm) < 0:
            raise InputError(None, "mask_dilation_mm", f"must be >= 0, got {self.mask_dilation_mm}")

    def smoothing_sigmas(self) -> tuple[float, ...]:
        """Gaussian smoothing sigma (in voxels of the full-resolution grid) per level: ``factor / 2`` (0 at factor 1)."""
        return tuple(0.0 if s == 1 else s / 2.0 for s in self.shrink_factors)

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["shrink_factors"] = list(self.shrink_factors)
        if self.clip_percentiles is not None:
            d["clip_percentiles"] = list(self.clip_percentiles)
        return d


@dataclass
class RegistrationResult:
    """Output of :func:`ct2mr.preprocess.registration.register_affine`.

    ``transform`` maps fixed (CT) physical points (mm, LPS) to moving (MR) physical points.
    """

    transform: sitk.AffineTransform
    runtime_s: float
    backend: str
    log: str = ""
    extra: dict[str, object] = field(default_factory=dict)


@contextlib.contextmanager
def itk_threads(n: int | None) -> Iterator[None]:
    """Temporarily set SimpleITK's global default number of threads (``None``: leave it)."""
    if n is None:
        yield
        return
    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(n))
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


def affine_from_matrix(matrix: np.ndarray, translation: np.ndarray, center: np.ndarray | None = None) -> sitk.AffineTransform:
    """AffineTransform ``x -> M (x - c) + c + t`` (mm, LPS)."""
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in np.asarray(matrix, dtype=float).ravel()])
    tx.SetTranslation([float(v) for v in np.asarray(translation, dtype=float).ravel()])
    if center is not None:
        tx.SetCenter([float(v) for v in np.asarray(center, dtype=float).ravel()])
    return tx


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Flatten any 3-D linear transform (Euler, Similarity, composite of linear ones...) to one AffineTransform.

    The result maps the same points (mm) to the same points; its centre is
    always the origin (0, 0, 0), whatever the input's centre was.
    """
    if transform.GetDimension() != 3:
        raise InputError(None, "transform", f"expected a 3-D transform, got {transform.GetDimension()}-D")
    # Generic route: sample the transform at 4 non-coplanar points and solve for (M, t).
    pts = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in pts])
    t = mapped[0]
    m = ((mapped[1:] - t) / 100.0).T
    # check it is linear: a fifth point must agree
    p5 = np.array([37.0, -52.0, 81.0])
    if not np.allclose(np.array(transform.TransformPoint(tuple(p5))), m @ p5 + t, atol=1e-4):
        raise InputError(None, "transform", f"{transform.GetName()} is not an affine (linear) transform")
    return affine_from_matrix(m, t)


def matrix_offset(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(M, t) with ``y = M x + t`` for a linear 3-D transform (mm)."""
    aff = as_affine(transform)
    m = np.array(aff.GetMatrix(), dtype=float).reshape(3, 3)
    c = np.array(aff.GetCenter(), dtype=float)
    t = np.array(aff.GetTranslation(), dtype=float)
    return m, t + c - m @ c


def check_image(img: sitk.Image, name: str) -> sitk.Image:
    """Check a 3-D scalar image and return it as float32."""
    if not isinstance(img, sitk.Image):
        raise InputError(None, name, f"expected a SimpleITK image, got {type(img).__name__}")
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, name, f"expected a 3-D scalar image, got {img.GetDimension()}-D with "
                         f"{img.GetNumberOfComponentsPerPixel()} components")
    if min(img.GetSize()) < 4:
        raise InputError(None, name, f"image too small for registration: size {img.GetSize()}")
    return sitk.Cast(img, sitk.sitkFloat32)


def prepare_mask(mask: sitk.Image | None, ref: sitk.Image, name: str, dilation_mm: float = 0.0) -> sitk.Image | None:
    """A uint8 0/1 mask on ``ref``'s grid (nearest-neighbour resampled if needed), dilated by ``dilation_mm``."""
    if mask is None:
        return None
    if mask.GetDimension() != 3:
        raise InputError(None, name, "mask must be 3-D")
    m = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if grid_difference(m, ref) is not None:
        m = sitk.Resample(m, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if dilation_mm > 0:
        radius = [max(1, int(round(dilation_mm / s))) for s in m.GetSpacing()]
        m = sitk.BinaryDilate(m, radius, sitk.sitkBall, 0, 1)
    if sitk.GetArrayViewFromImage(m).sum() < 100:
        raise InputError(None, name, "mask has fewer than 100 voxels inside the image")
    return m


def backend_inputs(
    fixed: sitk.Image,
    moving: sitk.Image,
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
    settings: RegistrationSettings,
    *,
    shift_to_nonnegative: bool = True,
) -> tuple[sitk.Image, sitk.Image, sitk.Image | None, sitk.Image | None]:
    """What every backend starts from: checked images (shifted to >= 0 for the
    command-line tools' histograms) and the masks dilated by ``settings.mask_dilation_mm``
    that restrict where the metric is evaluated."""
    fixed = check_image(fixed, "fixed")
    moving = check_image(moving, "moving")
    if shift_to_nonnegative:
        fixed, moving = nonnegative(fixed), nonnegative(moving)
    fmask = prepare_mask(fixed_mask, fixed, "fixed_mask", settings.mask_dilation_mm)
    mmask = prepare_mask(moving_mask, moving, "moving_mask", settings.mask_dilation_mm)
    return fixed, moving, fmask, mmask


def nonnegative(img: sitk.Image) -> sitk.Image:
    """``img - min(img)`` as float32: intensities >= 0 with the background at 0.

    Mutual information does not change under an intensity shift, but
    intensity-weighted centre-of-mass initialisers (ANTs ``-r [f,m,1]``,
    elastix ``CenterOfGravity``, AFNI ``-cmass``) need non-negative weights, and
    a skull-stripped CT has -1024 HU outside the brain.
    """
    arr = sitk.GetArrayViewFromImage(img)
    return sitk.Cast(img - float(arr.min()), sitk.sitkFloat32)


def moments_initializer(fixed: sitk.Image, moving: sitk.Image) -> sitk.AffineTransform:
    """Centre-of-mass (image moments) alignment as an AffineTransform centred on the fixed centre of mass.

    Uses each image's intensities shifted to be >= 0 (so CT's -1024 background weighs 0).
    """
    init = sitk.CenteredTransformInitializer(
        nonnegative(fixed), nonnegative(moving), sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    return sitk.AffineTransform(init)


def _foreground(img: sitk.Image, mask: sitk.Image | None) -> np.ndarray:
    arr = sitk.GetArrayViewFromImage(img)
    if mask is not None:
        m = sitk.GetArrayViewFromImage(mask) > 0
    else:
        m = arr > arr.min()
    vals = arr[m]
    return vals if vals.size else arr.ravel()


def prepare_intensities(
    fixed: sitk.Image,
    moving: sitk.Image,
    fixed_mask: sitk.Image | None,
    moving_mask: sitk.Image | None,
    percentiles: tuple[float, float] | None,
) -> tuple[sitk.Image, sitk.Image]:
    """Robust intensity ranges for the MI histogram (float32 outputs, same grids).

    Each image is clipped to ``percentiles`` of its foreground (voxels inside
    its mask, else voxels above its minimum). The fixed image's voxels outside
    ``fixed_mask`` are then set to ``low - 5 % of the range``: one background
    bin distinct from every tissue (for a skull-stripped CT: -1024 HU -> just
    below the darkest brain voxel). Masks must already be on their image's grid.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    if percentiles is None:
        return fixed, moving
    out = []
    for img, mask, is_fixed in ((fixed, fixed_mask, True), (moving, moving_mask, False)):
        vals = _foreground(img, mask)
        lo, hi = (float(v) for v in np.percentile(vals, percentiles))
        arr = np.clip(sitk.GetArrayFromImage(img), lo, hi)
        if is_fixed and mask is not None and hi > lo:
            arr[sitk.GetArrayViewFromImage(mask) == 0] = lo - 0.05 * (hi - lo)
        elif not is_fixed:
            amin = float(sitk.GetArrayViewFromImage(img).min())
            arr[sitk.GetArrayViewFromImage(img) <= amin] = min(lo, amin)
        res = sitk.GetImageFromArray(arr.astype(np.float32))
        res.CopyInformation(img)
        out.append(res)
    return out[0], out[1]


def crop_to_foreground(img: sitk.Image, region: sitk.Image | None, margin_mm: float,
                       mask: sitk.Image | None = None) -> tuple[sitk.Image, sitk.Image | None]:
    """Crop ``img`` (and ``mask``, same grid) to the bounding box of ``region`` > 0, plus ``margin_mm``.

    ``region`` ``None`` = voxels of ``img`` above its minimum. Physical
    positions are unchanged (the origin moves with the crop), so a transform
    estimated on the crop is valid for the whole image. Registration cost then
    scales with the head, not with the field of view (a 1 mm MR resampled from
    a large FOV is mostly background).
    """
    if region is None:
        arr = sitk.GetArrayViewFromImage(img)
        fg = arr > arr.min()
    else:
        fg = sitk.GetArrayViewFromImage(region) > 0
    if not fg.any():
        return img, mask
    size = img.GetSize()
    lo, hi = [], []
    for axis_np, sp in zip((2, 1, 0), img.GetSpacing(), strict=True):  # numpy axes of x, y, z
        other = tuple(a for a in range(3) if a != axis_np)
        idx = np.flatnonzero(fg.any(axis=other))
        pad = int(np.ceil(margin_mm / sp))
        lo.append(max(0, int(idx[0]) - pad))
        hi.append(min(size[2 - axis_np], int(idx[-1]) + pad + 1))
    crop_size = [h - l for l, h in zip(lo, hi, strict=True)]
    if crop_size == list(size):
        return img, mask
    out = sitk.RegionOfInterest(img, crop_size, lo)
    return out, (None if mask is None else sitk.RegionOfInterest(mask, crop_size, lo))
