"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ct2mr.evaluation import metrics

C1 = (0.01 * 255) ** 2


def test_mae_and_mse_hand_values() -> None:
    a = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    b = np.array([[0, 14], [10, 30]], dtype=np.uint8)
    assert metrics.mae(a, b) == pytest.approx((0 + 4 + 10 + 0) / 4)
    assert metrics.mse(a, b) == pytest.approx((16 + 100) / 4)
    mask = np.array([[False, True], [True, False]])
    assert metrics.mae(a, b, mask=mask) == pytest.approx(7.0)
    assert metrics.mse(a, b, mask=mask) == pytest.approx(58.0)


def test_uint8_inputs_do_not_wrap() -> None:
    # 0 - 255 in uint8 arithmetic would wrap to 1
    a = np.zeros((3, 3), np.uint8)
    b = np.full((3, 3), 255, np.uint8)
    assert metrics.mae(a, b) == 255.0
    assert metrics.psnr(a, b) == pytest.approx(0.0)


def test_values_clipped_to_data_range() -> None:
    a = np.array([-50.0, 300.0])
    b = np.array([0.0, 255.0])
    assert metrics.mae(a, b) == 0.0
    assert metrics.psnr(a, b) == math.inf


def test_psnr_hand_value_and_data_range() -> None:
    a = np.zeros((4, 4))
    b = np.full((4, 4), 10.0)
    # MSE = 100 -> 10*log10(255^2/100)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255.0**2 / 100.0))
    assert metrics.psnr(a, b, data_range=100.0) == pytest.approx(10 * math.log10(100.0**2 / 100.0))
    assert metrics.psnr(a, b) == pytest.approx(28.1308036, abs=1e-6)


def test_psnr_masked() -> None:
    a = np.zeros((2, 4))
    b = np.zeros((2, 4))
    b[0, 0] = 51.0  # outside the mask
    b[1, :] = 5.0
    mask = np.zeros((2, 4), bool)
    mask[1] = True
    assert metrics.psnr(a, b, mask=mask) == pytest.approx(10 * math.log10(255.0**2 / 25.0))


def test_identical_images_psnr_inf_ssim_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32)).astype(np.uint8)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.mae(a, a) == 0.0
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    m = metrics.patient_metrics(a, a, head_mask=np.ones_like(a, bool))
    assert m["psnr"] == math.inf and m["psnr_paper_convention"] == math.inf
    assert m["ssim_head"] == pytest.approx(1.0)


def test_paper_psnr_convention() -> None:
    assert metrics.PAPER_PSNR_OFFSET_DB == pytest.approx(48.1308036, abs=1e-6)
    # the original code: 20*log10(65025) - 10*log10(mse)
    mse = 123.4
    paper = 20 * math.log10(65025) - 10 * math.log10(mse)
    ours = metrics.psnr_from_mse(mse)
    assert metrics.psnr_paper_convention(ours) == pytest.approx(paper)


def test_ssim_constant_images_equals_luminance_term() -> None:
    # two constant images: sigma terms vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a = np.full((16, 16), 100.0)
    b = np.full((16, 16), 120.0)
    expected = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    assert metrics.ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_masked_averages_map_inside_mask() -> None:
    # left half differs by a constant, right half identical; away from the edge the
    # SSIM map is exactly the luminance term (left) and 1 (right).
    a = np.full((32, 40), 100.0)
    b = a.copy()
    b[:, :20] = 120.0
    left = np.zeros_like(a, bool)
    left[5:27, 4:14] = True
    right = np.zeros_like(a, bool)
    right[5:27, 26:36] = True
    expected_left = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    assert metrics.ssim(a, b, mask=left) == pytest.approx(expected_left, rel=1e-9)
    assert metrics.ssim(a, b, mask=right) == pytest.approx(1.0)
    whole = metrics.ssim(a, b)
    assert whole < expected_left  # the edge between the halves lowers the structure term


def test_ssim_stack_is_mean_of_slices_and_skips_empty_masks() -> None:
    a = np.stack([np.full((16, 16), 100.0), np.full((16, 16), 100.0)])
    b = np.stack([np.full((16, 16), 120.0), np.full((16, 16), 100.0)])
    lum = (2 * 100 * 120 + C1) / (100**2 + 120**2 + C1)
    per = metrics.ssim_per_slice(a, b)
    np.testing.assert_allclose(per, [lum, 1.0])
    assert metrics.ssim(a, b) == pytest.approx((lum + 1.0) / 2)
    mask = np.zeros_like(a, bool)
    mask[1, 6:10, 6:10] = True  # slice 0 has an empty mask -> skipped
    assert metrics.ssim(a, b, mask=mask) == pytest.approx(1.0)


def test_patient_metrics_pooling() -> None:
    # slice 0: error 10 on 4 voxels inside the head mask, slice 1: error 0 on 12 voxels
    ref = np.zeros((2, 8, 8))
    syn = np.zeros((2, 8, 8))
    head = np.zeros((2, 8, 8), bool)
    head[0, 2:4, 2:4] = True
    head[1, 2:5, 2:6] = True
    syn[0, 2:4, 2:4] = 10.0
    m = metrics.patient_metrics(syn, ref, head_mask=head)
    assert m["n_slices"] == 2
    # whole slices: 4 voxels of 128 wrong by 10
    assert m["mae"] == pytest.approx(40 / 128)
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / (400 / 128)))
    # pooled inside the head: 4 of 16 voxels -> MAE 2.5 (a mean of per-slice MAEs would be 5)
    assert m["mae_head"] == pytest.approx(40 / 16)
    assert m["psnr_head"] == pytest.approx(10 * math.log10(255**2 / (400 / 16)))
    assert m["psnr_paper_convention"] == pytest.approx(m["psnr"] + 48.1308036, abs=1e-6)
    assert "mae_brain" not in m


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        metrics.mae(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mask"):
        metrics.mae(np.zeros((2, 2)), np.zeros((2, 2)), mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(np.zeros((2, 2)), np.zeros((2, 2)), data_range=0)
