"""Registration quality: histogram mutual information and target registration error (TRE).

* :func:`mutual_information` -- MI in nats between two images on the same grid
  (the fixed CT and the MR already resampled onto it), from a joint histogram,
  optionally inside a mask. The same function is used before (identity) and
  after (estimated transform) registration, so the two values are comparable.
* :func:`mask_points` -- physical (mm, LPS) centres of mask voxels, subsampled
  with a fixed seed: the points at which TRE is measured.
* :func:`tre_mm` -- mean Euclidean distance (mm) between where two transforms
  send the same points.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.imageio import grid_difference
from ct2mr.preprocess.registration.base import matrix_offset


def mutual_information(fixed: sitk.Image, moving_resampled: sitk.Image, mask: sitk.Image | None = None,
                       bins: int = 32) -> float:
    """Mutual information (nats, >= 0) of two images on the same grid.

    Each image's intensities inside ``mask`` (all voxels when ``None``) are
    binned into ``bins`` equal-width bins between their min and max there;
    MI = sum p(a,b) log(p(a,b) / (p(a) p(b))).
    """
    if grid_difference(fixed, moving_resampled) is not None:
        raise InputError(None, "moving_resampled", "must be on the fixed image's grid (resample it first)")
    a = sitk.GetArrayViewFromImage(fixed).astype(np.float64).ravel()
    b = sitk.GetArrayViewFromImage(moving_resampled).astype(np.float64).ravel()
    if mask is not None:
        if grid_difference(fixed, mask) is not None:
            raise InputError(None, "mask", "must be on the fixed image's grid")
        sel = sitk.GetArrayViewFromImage(mask).ravel() > 0
        a, b = a[sel], b[sel]
    if a.size == 0:
        raise InputError(None, "mask", "is empty")
    hist, _, _ = np.histogram2d(a, b, bins=int(bins))
    p = hist / hist.sum()
    pa = p.sum(axis=1, keepdims=True)
    pb = p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def mask_points(mask: sitk.Image, n_points: int = 5000, seed: int = 0) -> np.ndarray:
    """Physical centres (mm, LPS; shape (N, 3), x y z) of up to ``n_points`` voxels of ``mask`` > 0.

    Voxels are drawn without replacement with ``numpy.random.default_rng(seed)``;
    all voxels when the mask has fewer than ``n_points``.
    """
    arr = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(arr > 0)
    if len(zyx) == 0:
        raise InputError(None, "mask", "is empty: no points for TRE")
    if len(zyx) > n_points:
        rng = np.random.default_rng(seed)
        zyx = zyx[np.sort(rng.choice(len(zyx), size=n_points, replace=False))]
    ijk = zyx[:, ::-1].astype(np.float64)
    spacing = np.array(mask.GetSpacing())
    direction = np.array(mask.GetDirection()).reshape(3, 3)
    origin = np.array(mask.GetOrigin())
    return origin + (ijk * spacing) @ direction.T


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Apply a linear 3-D transform to points (N, 3) in mm (vectorised)."""
    m, t = matrix_offset(transform)
    return np.asarray(points, dtype=float) @ m.T + t


def tre_mm(estimated: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> float:
    """Mean target registration error (mm): mean over ``points`` of ``|estimated(p) - truth(p)|``.

    Both transforms map fixed (CT) points to moving (MR) points, so the error is
    measured in the MR's physical space (same units, mm).
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(None, "points", f"expected an (N, 3) array of mm positions, got shape {pts.shape}")
    d = transform_points(estimated, pts) - transform_points(truth, pts)
    return float(np.mean(np.linalg.norm(d, axis=1)))


def tre_stats(estimated: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> dict[str, float]:
    """Mean, median, 95th percentile and max TRE (mm)."""
    pts = np.asarray(points, dtype=float)
    d = np.linalg.norm(transform_points(estimated, pts) - transform_points(truth, pts), axis=1)
    return {"mean": float(d.mean()), "median": float(np.median(d)), "p95": float(np.percentile(d, 95)),
            "max": float(d.max())}
