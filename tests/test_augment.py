"""Online augmentation: known-answer transforms, draw statistics, pair/unpaired sharing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ct2mr.training.augment import AugmentConfig, AugmentParams, apply, default_pad_to, rotate, sample_params
from ct2mr.training.data import SlicePools
from ct2mr.training.train import Sampler


def test_default_pad_to_scales_the_paper_286() -> None:
    assert default_pad_to(256) == 286
    assert default_pad_to(64) == 72
    assert default_pad_to(32) == 36


def test_flip_and_rotation_known_answers() -> None:
    cfg = AugmentConfig(size=8, pad_to=8)
    x = torch.rand(2, 8, 8) * 2 - 1
    assert torch.equal(apply(x, AugmentParams(True, 0, 0, 0.0), cfg), torch.flip(x, dims=(-1,)))
    assert torch.equal(apply(x, AugmentParams(False, 0, 0, 0.0), cfg), x)
    # +90 degrees maps pixel centres onto pixel centres: equals rot90 (counter-clockwise)
    assert torch.allclose(rotate(x, 90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    # a small rotation keeps the centre pixel of a constant image and fills corners with -1
    ones = torch.ones(9, 9)
    r = rotate(ones, 5.0)
    assert r[4, 4] == pytest.approx(1.0) and r[0, 0] < 1.0 and r.min() >= -1.0


def test_pad_and_crop_shift_with_black_fill() -> None:
    cfg = AugmentConfig(size=6, pad_to=10, max_rotation_deg=0.0)
    x = torch.arange(36, dtype=torch.float32).reshape(6, 6) / 36
    # padding is 2 on each side; crop at (0, 0) shifts the content 2 down and 2 right
    y = apply(x, AugmentParams(False, 0, 0, 0.0), cfg)
    assert torch.equal(y[2:, 2:], x[:4, :4])
    assert torch.all(y[:2] == -1) and torch.all(y[:, :2] == -1)
    # crop at the centre (2, 2) is the identity
    assert torch.equal(apply(x, AugmentParams(False, 2, 2, 0.0), cfg), x)


def test_draw_statistics() -> None:
    cfg = AugmentConfig(size=64, pad_to=72)
    rng = np.random.default_rng(0)
    draws = [sample_params(rng, cfg) for _ in range(4000)]
    angles = np.array([d.angle_deg for d in draws])
    assert angles.min() >= -5.0 and angles.max() <= 5.0
    assert angles.min() < -4.9 and angles.max() > 4.9  # the whole range is used
    flips = np.mean([d.flip for d in draws])
    assert abs(flips - 0.5) < 0.04  # binomial sd 0.008
    tops = {d.top for d in draws}
    assert tops == set(range(0, 9))


def test_sample_is_deterministic_and_disabled_is_identity() -> None:
    cfg = AugmentConfig(size=16, pad_to=18)
    a = [sample_params(np.random.default_rng(5), cfg) for _ in range(2)]
    assert a[0] == a[1]
    x = torch.rand(16, 16)
    assert torch.equal(apply(x, a[0], cfg), apply(x, a[0], cfg))
    off = AugmentConfig(size=16, pad_to=18, enabled=False)
    assert torch.equal(apply(x, a[0], off), x)


def test_sampler_pairs_share_a_draw_unpaired_are_independent() -> None:
    size = 16
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(0, 256, (1, size, size), dtype=np.uint8))
    # the same single image in every pool: only the augmentation can differ
    pools = SlicePools(img, img.clone(), img.clone(), img.clone())
    sampler = Sampler(pools, ("ct_unpaired", "mr_unpaired", "paired"), AugmentConfig(size, 20), seed=0)
    n_diff_unpaired = 0
    for _ in range(40):
        b = sampler.draw()
        assert b["ct_p"].shape == (1, 1, size, size)
        assert torch.equal(b["ct_p"], b["mr_p"])  # one draw for both images of a pair
        n_diff_unpaired += int(not torch.equal(b["ct_u"], b["mr_u"]))
    assert n_diff_unpaired >= 38  # independent draws: (almost) never equal
