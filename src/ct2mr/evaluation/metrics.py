"""Image similarity metrics for synthesized vs reference MR (MAE, PSNR, SSIM).

Conventions (SynthRAD-style, every choice explicit):

* Images are grey levels on the 0..``data_range`` scale (8-bit: 0..255, the
  default). Both images are converted to float64 and **clipped to
  [0, data_range]** before any metric is computed.
* ``mask`` (bool, same shape as the images) restricts a metric to the voxels
  where it is True; ``None`` means the whole array (for a 256x256 slice that is
  the paper's "whole slice" convention, background included).
* :func:`mae` is the mean absolute difference over the voxels considered, in
  grey levels. :func:`psnr` is ``10 * log10(data_range**2 / MSE)`` in dB with
  the MSE over the same voxels; identical images give ``inf``.
* :func:`ssim` computes, per 2D axial slice, scikit-image's
  ``structural_similarity(full=True)`` map (7x7 uniform window, sample
  covariance, K1=0.01, K2=0.03). Without a mask the slice's value is
  scikit-image's mean SSIM (the map averaged with a 3-pixel border cropped);
  with a mask it is the map averaged over the mask voxels, the same border
  cropped (as in the SynthRAD challenge's evaluation code). A 3D array
  (N, H, W) gives the mean of the per-slice values; slices whose mask is empty
  are skipped.

The paper's PSNR convention. The authors' public code computed
``20*log10(65025) - 10*log10(MSE)`` (65025 = 255**2, squared twice) instead of
``20*log10(255) - 10*log10(MSE)``, so every PSNR reported in the paper (about
65 dB in Table 1) is ``20*log10(255) = 48.13 dB`` higher than the standard
PSNR computed here. :func:`psnr_paper_convention` maps our value onto the
paper's scale for side-by-side comparison only.

Per-patient aggregation (:func:`patient_metrics`), used for the paper's Table 1:

* MAE: pooled over every voxel of all the patient's slices (i.e. the mean
  absolute error of the stacked (N, 256, 256) arrays restricted to the mask),
  which for the whole-slice case equals the mean of the per-slice MAEs.
* PSNR: from the MSE pooled over the same voxels (one PSNR per patient, not a
  mean of per-slice PSNRs).
* SSIM: mean of the per-slice SSIM values.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: dB added to a standard PSNR (data range 255) to obtain the paper's convention.
PAPER_PSNR_OFFSET_DB: float = 20.0 * math.log10(255.0)

#: SSIM window side (pixels) and the border scikit-image crops from the mean.
SSIM_WIN_SIZE: int = 7
_SSIM_PAD: int = (SSIM_WIN_SIZE - 1) // 2


def _prepare(
    a: ArrayLike, b: ArrayLike, mask: ArrayLike | None, data_range: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_] | None]:
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    x = np.clip(np.asarray(a, dtype=np.float64), 0.0, data_range)
    y = np.clip(np.asarray(b, dtype=np.float64), 0.0, data_range)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    m = None
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.shape != x.shape:
            raise ValueError(f"mask shape {m.shape} differs from image shape {x.shape}")
    return x, y, m


def _select(d: NDArray[np.float64], m: NDArray[np.bool_] | None) -> NDArray[np.float64]:
    v = d if m is None else d[m]
    if v.size == 0:
        raise ValueError("the mask selects no voxel")
    return v


def mae(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None = None, data_range: float = 255.0) -> float:
    """Mean absolute error in grey levels over ``mask`` (whole array if None)."""
    x, y, m = _prepare(a, b, mask, data_range)
    return float(np.mean(np.abs(_select(x - y, m))))


def mse(a: ArrayLike, b: ArrayLike, mask: ArrayLike | None = None, data_range: float = 255.0) -> float:
    """Mean squared error in grey levels^2 over ``mask`` (whole array if None)."""
    x, y, m = _prepare(a, b, mask, data_range)
    return float(np.mean(np.square(_select(x - y, m))))


def psnr_from_mse(mse_value: float, data_range: float = 255.0) -> float:
    """``10*log10(data_range**2 / mse)`` in dB; ``inf`` when ``mse == 0``."""
    if mse_value < 0:
        raise ValueError(f"MSE must be >= 0, got {mse_value}")
    if mse_value == 0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse_value)


def psnr(a: ArrayLike, b: ArrayLike, data_range: float = 255.0, mask: ArrayLike | None = None) -> float:
    """Peak signal-to-noise ratio in dB (standard definition, declared data range).

    ``inf`` for identical images. Add :data:`PAPER_PSNR_OFFSET_DB` (or call
    :func:`psnr_paper_convention`) to compare with the paper's numbers.
    """
    return psnr_from_mse(mse(a, b, mask=mask, data_range=data_range), data_range)


def psnr_paper_convention(psnr_db: float) -> float:
    """Map a standard PSNR (data range 255) onto the paper's scale (+48.13 dB).

    The paper's code used ``20*log10(65025)`` where ``20*log10(255)`` belongs, so
    paper PSNR = our PSNR + ``20*log10(255)``. For comparison with Table 1 only.
    """
    return psnr_db + PAPER_PSNR_OFFSET_DB


class SsimMaps:
    """scikit-image's SSIM map of each 2D slice of a (N, H, W) pair, computed once.

    ``means``: (N,) scikit-image mean SSIM per slice (the map with a 3-pixel border
    cropped, averaged); ``maps``: (N, H, W) the full maps. :meth:`per_slice` averages
    them over a mask, so the whole-slice, head and brain SSIM of one patient share
    one map computation per slice.
    """

    def __init__(self, a: ArrayLike, b: ArrayLike, data_range: float = 255.0) -> None:
        from skimage.metrics import structural_similarity

        x, y, _ = _prepare(a, b, None, data_range)
        #: the images' shape as given ((H, W) or (N, H, W)): a mask must have it
        self.shape = x.shape
        if x.ndim == 2:
            x, y = x[None], y[None]
        if x.ndim != 3:
            raise ValueError(f"expected a 2D slice or a (N, H, W) stack, got shape {x.shape}")
        if min(x.shape[1:]) < SSIM_WIN_SIZE:
            raise ValueError(f"slices of {x.shape[1:]} are smaller than the SSIM window {SSIM_WIN_SIZE}")
        self.means = np.empty(x.shape[0])
        self.maps = np.empty(x.shape)
        for i in range(x.shape[0]):
            mean_ssim, smap = structural_similarity(
                x[i], y[i], data_range=data_range, win_size=SSIM_WIN_SIZE, full=True
            )
            self.means[i] = float(mean_ssim)
            self.maps[i] = smap

    def per_slice(self, mask: ArrayLike | None = None) -> NDArray[np.float64]:
        """SSIM per slice, over the whole slice (``mask`` None) or over the mask (bool, the
        shape of the images as given); NaN where it is empty."""
        if mask is None:
            return self.means.copy()
        m = np.asarray(mask).astype(bool)
        if m.shape != self.shape:
            raise ValueError(f"mask shape {m.shape} differs from image shape {self.shape}")
        m = m.reshape(self.maps.shape)
        p = _SSIM_PAD
        out = np.full(m.shape[0], np.nan)
        for i in range(m.shape[0]):
            sel = m[i][p:-p, p:-p]
            if sel.any():
                out[i] = float(self.maps[i][p:-p, p:-p][sel].mean())
        return out


def ssim_per_slice(
    a: ArrayLike, b: ArrayLike, data_range: float = 255.0, mask: ArrayLike | None = None
) -> NDArray[np.float64]:
    """SSIM of each 2D slice of (N, H, W) (or one (H, W)) arrays; NaN where the mask is empty.

    See the module docstring for the exact definition (scikit-image map, 7x7
    window, 3-pixel border cropped, averaged over the mask when given).
    """
    return SsimMaps(a, b, data_range).per_slice(mask)


def _mean_ssim(values: NDArray[np.float64]) -> float:
    if np.all(np.isnan(values)):
        raise ValueError("the mask selects no voxel")
    return float(np.nanmean(values))


def ssim(a: ArrayLike, b: ArrayLike, data_range: float = 255.0, mask: ArrayLike | None = None) -> float:
    """Mean SSIM over the 2D slices of ``a``/``b`` (one slice or a (N, H, W) stack).

    Slices whose mask holds no voxel (after the 3-pixel border crop) are
    skipped; if every slice is skipped a ValueError is raised.
    """
    return _mean_ssim(ssim_per_slice(a, b, data_range=data_range, mask=mask))


def patient_metrics(
    syn: ArrayLike,
    ref: ArrayLike,
    head_mask: ArrayLike | None = None,
    brain_mask: ArrayLike | None = None,
    data_range: float = 255.0,
) -> dict[str, float]:
    """Per-patient metrics of stacked (N, H, W) synthesized vs reference slices.

    Returns ``n_slices``, ``mae``, ``psnr``, ``ssim`` (whole slices, the paper's
    convention), ``psnr_paper_convention`` (= ``psnr`` + 48.13 dB), and the same
    three inside the head mask (``*_head``) and the brain mask (``*_brain``)
    when those masks are given. MAE and PSNR are pooled over all voxels of the
    patient's slices (restricted to the mask), SSIM is the mean of per-slice
    values. Grey levels 0..``data_range``; PSNR in dB.
    """
    x = np.asarray(syn)
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W) slices, got shape {x.shape}")
    out: dict[str, float] = {"n_slices": int(x.shape[0])}
    maps = SsimMaps(syn, ref, data_range)  # one SSIM map per slice, averaged over each mask below
    for suffix, m in (("", None), ("_head", head_mask), ("_brain", brain_mask)):
        if suffix and m is None:
            continue
        if m is not None and not np.asarray(m).any():
            out.update({f"mae{suffix}": math.nan, f"psnr{suffix}": math.nan, f"ssim{suffix}": math.nan})
            continue
        out[f"mae{suffix}"] = mae(syn, ref, mask=m, data_range=data_range)
        out[f"psnr{suffix}"] = psnr(syn, ref, data_range=data_range, mask=m)
        out[f"ssim{suffix}"] = _mean_ssim(maps.per_slice(m))
    out["psnr_paper_convention"] = psnr_paper_convention(out["psnr"])
    return out
