"""Device-side batched augmentation (ct2mr.training.device_data) against the per-image reference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ct2mr.training.augment import AugmentConfig
from ct2mr.training.data import SlicePools
from ct2mr.training.device_data import BatchedSampler
from ct2mr.training.train import Sampler

NEEDS = ("ct_unpaired", "mr_unpaired", "paired")


def random_pools(size: int, seed: int = 0) -> SlicePools:
    rng = np.random.default_rng(seed)

    def pool(n: int) -> torch.Tensor:
        # smooth content plus noise: rotation errors show up as differences
        return torch.from_numpy(rng.integers(0, 256, (n, size, size), dtype=np.uint8))

    return SlicePools(pool(5), pool(5), pool(4), pool(6))


@pytest.mark.parametrize(
    "aug",
    [
        AugmentConfig(size=32, pad_to=36, flip_prob=0.5, max_rotation_deg=5.0),
        AugmentConfig(size=32, pad_to=48, flip_prob=0.5, max_rotation_deg=45.0),
        AugmentConfig(size=32, pad_to=32, flip_prob=1.0, max_rotation_deg=5.0),
    ],
)
def test_batched_equals_reference_within_interpolation_tolerance(aug: AugmentConfig) -> None:
    pools = random_pools(aug.size)
    ref = Sampler(pools, NEEDS, aug, seed=3)
    dev = BatchedSampler(pools, NEEDS, aug, seed=3, device="cpu")
    for _ in range(25):
        a, b = ref.draw(), dev.draw()
        assert a.keys() == b.keys() == {"ct_u", "mr_u", "ct_p", "mr_p"}
        for k in a:
            assert b[k].shape == a[k].shape == (1, 1, aug.size, aug.size)
            assert b[k].dtype == torch.float32
            # float rounding of the sampling grid only (values span [-1, 1])
            assert torch.allclose(a[k], b[k], atol=1e-4, rtol=0), (k, (a[k] - b[k]).abs().max())
    # the same random stream consumed
    assert ref.rng.bit_generator.state == dev.rng.bit_generator.state


def test_without_rotation_or_augmentation_the_results_are_exact() -> None:
    pools = random_pools(16, seed=1)
    for aug in (AugmentConfig(16, 20, max_rotation_deg=0.0), AugmentConfig(16, 20, enabled=False)):
        ref, dev = Sampler(pools, NEEDS, aug, seed=0), BatchedSampler(pools, NEEDS, aug, seed=0)
        for _ in range(10):
            a, b = ref.draw(), dev.draw()
            for k in a:
                assert torch.equal(a[k], b[k])


def test_pairs_share_one_draw_and_subsets_of_kinds() -> None:
    size = 16
    img = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, size, size), dtype=np.uint8))
    pools = SlicePools(img, img.clone(), img.clone(), img.clone())
    dev = BatchedSampler(pools, NEEDS, AugmentConfig(size, 20), seed=0)
    assert dev.params_shape == (4, 6)
    diff = 0
    for _ in range(20):
        b = dev.draw()
        assert torch.equal(b["ct_p"], b["mr_p"])
        diff += int(not torch.equal(b["ct_u"], b["mr_u"]))
    assert diff >= 18
    only_pairs = BatchedSampler(pools, ("paired",), AugmentConfig(size, 20), seed=0)
    assert set(only_pairs.draw()) == {"ct_p", "mr_p"}


def test_draw_params_layout() -> None:
    pools = random_pools(16)
    aug = AugmentConfig(16, 20, max_rotation_deg=10.0)
    dev = BatchedSampler(pools, NEEDS, aug, seed=0)
    rows = dev.draw_params()
    assert rows.dtype == np.float32 and rows.shape == (4, 6)
    # bank layout: ct_unpaired (4), mr_unpaired (6), paired_ct (5), paired_mr (5)
    assert 0 <= rows[0, 0] < 4 and 4 <= rows[1, 0] < 10 and 10 <= rows[2, 0] < 15
    assert rows[3, 0] == rows[2, 0] + 5 and np.array_equal(rows[3, 1:], rows[2, 1:])
    assert np.allclose(rows[:, 4] ** 2 + rows[:, 5] ** 2, 1.0, atol=1e-6)
    assert np.all(np.abs(np.degrees(np.arctan2(rows[:, 5], rows[:, 4]))) <= 10.0 + 1e-4)
