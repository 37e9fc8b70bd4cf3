"""3D metrics of synthetic vs real MR (ct2mr.evaluation.metrics3d): MAE, PSNR, MS-SSIM, slice jumps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, uniform_filter

from ct2mr.evaluation.metrics3d import (
    MS_SSIM_WEIGHTS,
    mae_3d,
    ms_ssim_3d,
    ms_ssim_3d_scales,
    psnr_3d,
    slice_jump,
)

VARIANTS = ("wang", "synthrad2025")


def smooth_volume(shape: tuple[int, int, int], seed: int = 0, lo: float = 20.0, hi: float = 220.0) -> np.ndarray:
    """A structured volume (smoothed noise) scaled to [lo, hi] grey levels."""
    rng = np.random.default_rng(seed)
    v = gaussian_filter(rng.uniform(0.0, 255.0, shape), 3.0)
    return (v - v.min()) / (v.max() - v.min()) * (hi - lo) + lo


def ball(shape: tuple[int, int, int], radius_frac: float = 0.4) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    return zz**2 + yy**2 + xx**2 <= (2 * radius_frac) ** 2


# --------------------------------------------------------------------------- identical volumes, analytic values


@pytest.mark.parametrize("variant", VARIANTS)
def test_identical_volumes(variant: str) -> None:
    real = smooth_volume((40, 50, 45))
    mask = ball(real.shape)
    assert mae_3d(real, real, mask) == 0.0
    assert psnr_3d(real, real, mask) == math.inf
    assert ms_ssim_3d(real, real, mask, variant=variant) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim_3d(real, real, variant=variant) == pytest.approx(1.0, abs=1e-12)
    assert slice_jump(real, real, mask) == 0.0


def test_mae_psnr_analytic() -> None:
    real = np.zeros((4, 6, 8))
    syn = np.zeros((4, 6, 8))
    syn[:2] = 10.0  # half the voxels off by 10 grey levels
    assert mae_3d(real, syn, data_range=255) == pytest.approx(5.0)
    assert psnr_3d(real, syn, data_range=255) == pytest.approx(10 * math.log10(255**2 / 50.0))
    # masked: only the voxels that differ (MAE 10, MSE 100), only those that agree (0, inf)
    diff = np.zeros(real.shape, dtype=bool)
    diff[:2] = True
    assert mae_3d(real, syn, diff) == pytest.approx(10.0)
    assert psnr_3d(real, syn, diff) == pytest.approx(10 * math.log10(255**2 / 100.0))
    assert mae_3d(real, syn, ~diff) == 0.0
    assert psnr_3d(real, syn, ~diff) == math.inf
    # a mask given as 0/1 integers is the same mask
    assert mae_3d(real, syn, diff.astype(np.uint8)) == pytest.approx(10.0)
    # another data range: PSNR uses it, MAE does not
    assert psnr_3d(real, syn, data_range=100.0) == pytest.approx(10 * math.log10(100**2 / 50.0))


def test_values_are_clipped_to_the_data_range() -> None:
    real = np.full((3, 4, 5), 255.0)
    syn = np.full((3, 4, 5), 300.0)  # above the range: clipped to 255
    assert mae_3d(real, syn) == 0.0
    syn[0] = -20.0  # below: clipped to 0
    assert mae_3d(real, syn) == pytest.approx(255.0 / 3)


def test_masked_metrics_ignore_errors_outside_the_mask() -> None:
    real = smooth_volume((48, 56, 52), seed=1)
    mask = ball(real.shape, 0.35)
    rng = np.random.default_rng(2)
    syn = np.clip(real + rng.normal(0, 8, real.shape), 0, 255)
    worse = syn.copy()
    worse[~mask] = 255.0 - worse[~mask]  # wreck everything outside the mask
    assert mae_3d(real, worse, mask) == mae_3d(real, syn, mask)
    assert psnr_3d(real, worse, mask) == psnr_3d(real, syn, mask)
    for variant in VARIANTS:
        assert ms_ssim_3d(real, worse, mask, variant=variant) == ms_ssim_3d(real, syn, mask, variant=variant)
    # ... which the unmasked metrics do see
    assert mae_3d(real, worse) > mae_3d(real, syn) + 10
    assert ms_ssim_3d(real, worse) < ms_ssim_3d(real, syn) - 0.05
    # and the masked value is not the unmasked one
    assert mae_3d(real, syn, mask) != pytest.approx(mae_3d(real, syn), rel=1e-6)


def test_empty_mask_gives_nan() -> None:
    real = smooth_volume((20, 20, 20))
    empty = np.zeros(real.shape, dtype=bool)
    assert math.isnan(mae_3d(real, real + 1, empty))
    assert math.isnan(psnr_3d(real, real + 1, empty))
    assert math.isnan(slice_jump(real, real + 1, empty))
    for variant in VARIANTS:
        assert math.isnan(ms_ssim_3d(real, real, empty, variant=variant))
    # a mask without two z-neighbours inside: no slice pair to compare
    single = np.zeros(real.shape, dtype=bool)
    single[::2] = True
    assert math.isnan(slice_jump(real, real + 1, single))


# --------------------------------------------------------------------------- slice jumps


def test_slice_jump_zero_for_a_constant_offset() -> None:
    real = smooth_volume((30, 32, 34), lo=20, hi=200)
    mask = ball(real.shape)
    assert slice_jump(real, real + 17.0, mask) == pytest.approx(0.0, abs=1e-12)
    # ... but not for an offset that changes from slice to slice
    steps = real + (np.arange(real.shape[0]) % 2 * 10.0)[:, None, None]
    assert slice_jump(real, steps, mask) == pytest.approx(10.0)


def test_slice_jump_hand_computed() -> None:
    real = np.zeros((3, 2, 2))
    real[1] = [[1, 2], [3, 4]]
    real[2] = [[1, 2], [3, 4]]
    syn = np.zeros((3, 2, 2))
    syn[1] = [[2, 2], [3, 6]]
    syn[2] = [[2, 5], [3, 6]]
    # z 0->1: |syn step - real step| = [[1, 0], [0, 2]]; z 1->2: [[0, 3], [0, 0]]
    full = np.ones(real.shape, dtype=bool)
    assert slice_jump(real, syn, full) == pytest.approx(6 / 8)
    mask = full.copy()
    mask[2, 0, 1] = False  # drops the pair (1, 0, 1)-(2, 0, 1), the one with error 3
    assert slice_jump(real, syn, mask) == pytest.approx(3 / 7)
    mask[0, 1, 1] = False  # drops (0, 1, 1)-(1, 1, 1), error 2
    assert slice_jump(real, syn, mask) == pytest.approx(1 / 6)


# --------------------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize(("shape", "degradation"), [((112, 112, 112), "noise"), ((112, 128, 144), "blur")])
def test_ms_ssim_matches_pytorch_msssim_unmasked(shape: tuple[int, int, int], degradation: str) -> None:
    """The default ("wang") definition equals pytorch-msssim's 3D ms_ssim with a uniform 7-tap window.

    Sides >= 97 and divisible by 16, so neither padding nor odd-size downsampling (where the two
    differ by design) is involved.
    """
    torch = pytest.importorskip("torch")
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    real = smooth_volume(shape, seed=3)
    rng = np.random.default_rng(4)
    if degradation == "noise":
        syn = np.clip(real + rng.normal(0, 20, shape), 0, 255)
    else:
        syn = gaussian_filter(real, 1.5)
    win = torch.full((1, 1, 1, 1, 7), 1.0 / 7.0, dtype=torch.float64)  # separable 7x7x7 uniform window
    ref = pytorch_msssim.ms_ssim(
        torch.from_numpy(real)[None, None], torch.from_numpy(syn)[None, None], data_range=255.0, win=win,
        weights=list(MS_SSIM_WEIGHTS), K=(0.01, 0.03),
    ).item()
    ours = ms_ssim_3d(real, syn, data_range=255.0)
    assert 0.3 < ours < 0.999
    assert ours == pytest.approx(ref, abs=1e-4)
    assert ours == pytest.approx(ref, abs=1e-9)  # in fact to floating-point precision


@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_ms_ssim_decreases_with_degradation(variant: str) -> None:
    real = smooth_volume((64, 72, 60), seed=5)  # smaller than 97: exercises the padding
    mask = ball(real.shape, 0.42)
    rng = np.random.default_rng(6)
    noise = rng.normal(0, 1, real.shape)
    values = [ms_ssim_3d(real, np.clip(real + s * noise, 0, 255), mask, variant=variant)
              for s in (0.0, 2.0, 5.0, 10.0, 20.0, 40.0)]
    assert values[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values
    blurred = [ms_ssim_3d(real, gaussian_filter(real, s), mask, variant=variant) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(blurred, blurred[1:], strict=False)), blurred
    assert all(0.0 <= v <= 1.0 for v in values + blurred)


def test_ms_ssim_scales() -> None:
    real = smooth_volume((50, 60, 55), seed=7)
    syn = np.clip(real + np.random.default_rng(8).normal(0, 15, real.shape), 0, 255)
    mask = ball(real.shape)
    cs = ms_ssim_3d_scales(real, syn, mask)
    assert len(cs) == 5
    assert all(-1.0 <= v <= 1.0 for v in cs)
    # the product of the weighted scales is the MS-SSIM
    expected = math.prod(max(v, 0.0) ** w for v, w in zip(cs, MS_SSIM_WEIGHTS, strict=True))
    assert ms_ssim_3d(real, syn, mask) == pytest.approx(expected, rel=1e-12)
    # fine scales see the noise, coarse ones hardly
    assert cs[0] < cs[-1]
    assert ms_ssim_3d_scales(real, syn, np.zeros(real.shape, bool)) == []


def _synthrad2025_reference(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """Independent transcription of SynthRAD 2025's masked MS-SSIM (scipy's fftconvolve downsampling)."""
    from scipy.signal import fftconvolve

    gt = np.where(mask, np.clip(gt, 0, data_range), 0.0)
    pred = np.where(mask, np.clip(pred, 0, data_range), 0.0)
    msk = mask.astype(float)
    widths = [(max((97 - n) // 2, 0), max(97 - n - (97 - n) // 2, 0)) for n in gt.shape]
    gt, pred, msk = (np.pad(a, widths, mode="edge") for a in (gt, pred, msk))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    values = []
    for w in MS_SSIM_WEIGHTS:
        ux, uy = uniform_filter(gt, 7), uniform_filter(pred, 7)
        norm = 343 / 342
        vx = norm * (uniform_filter(gt * gt, 7) - ux * ux)
        vy = norm * (uniform_filter(pred * pred, 7) - uy * uy)
        vxy = norm * (uniform_filter(gt * pred, 7) - ux * uy)
        sx, sy = np.sqrt(np.clip(vx, 0, None)), np.sqrt(np.clip(vy, 0, None))
        lum = np.clip((2 * ux * uy + c1) / (ux * ux + uy * uy + c1), 0, None)
        con = np.clip((2 * sx * sy + c2) / (vx + vy + c2), 0, None)
        st = np.clip((vxy + c3) / (sx * sy + c3), 0, None)
        smap = (lum**w) * (con**w) * (st**w)
        values.append(smap[3:-3, 3:-3, 3:-3][msk[3:-3, 3:-3, 3:-3].astype(bool)].mean())
        box = np.ones((2, 2, 2)) / 8
        gt, pred = (fftconvolve(a, box, mode="same") for a in (gt, pred))
        gt, pred, msk = (a[::2, ::2, ::2] for a in (gt, pred, msk))
    return float(np.prod(np.clip(values, 0, 1)))


@pytest.mark.parametrize("shape", [(81, 100, 90), (120, 103, 99)])
def test_synthrad2025_variant_matches_the_challenge_definition(shape: tuple[int, int, int]) -> None:
    real = smooth_volume(shape, seed=9)
    mask = ball(shape, 0.45)
    blurred = np.clip(gaussian_filter(real, 1.0) + np.random.default_rng(10).normal(0, 6, shape), 0, 255)
    brighter = np.clip(real + 20.0, 0, 255)
    for syn in (blurred, brighter):
        ours = ms_ssim_3d(real, syn, mask, variant="synthrad2025")
        assert ours == pytest.approx(_synthrad2025_reference(real, syn, mask, 255.0), abs=1e-9)
    # the definitions differ most on a brightness offset: SynthRAD's map holds the luminance term at
    # every scale, Wang's MS-SSIM only at the coarsest
    assert ms_ssim_3d(real, brighter, mask) - ms_ssim_3d(real, brighter, mask, variant="synthrad2025") > 5e-3


# --------------------------------------------------------------------------- input errors


def test_input_errors() -> None:
    a = np.zeros((10, 10, 10))
    with pytest.raises(ValueError, match="differ in shape"):
        mae_3d(a, np.zeros((10, 10, 11)))
    with pytest.raises(ValueError, match="3D"):
        psnr_3d(np.zeros((10, 10)), np.zeros((10, 10)))
    with pytest.raises(ValueError, match="mask of shape"):
        mae_3d(a, a, np.ones((10, 10, 9), dtype=bool))
    with pytest.raises(ValueError, match="brain_mask of shape"):
        slice_jump(a, a, np.ones((9, 10, 10), dtype=bool))
    with pytest.raises(ValueError, match="data_range"):
        mae_3d(a, a, data_range=0)
    with pytest.raises(ValueError, match="data_range"):
        ms_ssim_3d(a, a, data_range=float("nan"))
    with pytest.raises(ValueError, match="at least 7 voxels"):
        ms_ssim_3d(np.zeros((6, 40, 40)), np.zeros((6, 40, 40)))
    with pytest.raises(ValueError, match="at least 2 axial slices"):
        slice_jump(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones((1, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="variant"):
        ms_ssim_3d(a, a, variant="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty volume"):
        mae_3d(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))
