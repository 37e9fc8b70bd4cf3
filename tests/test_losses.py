"""Loss terms against hand computations, the ablation table, the image pool, step isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ct2mr.training.losses import (
    ALL_TERMS,
    VARIANT_TERMS,
    ImagePool,
    data_for,
    discriminator_loss,
    l1_loss,
    lsgan_loss,
    networks_for,
    nll_gan_loss,
    total_generator_loss,
)
from ct2mr.training.settings import preset_settings, settings_from_dict
from ct2mr.training.train import Trainer

TINY = settings_from_dict({**preset_settings("tiny").to_dict(), "image_size": 32, "ngf": 4, "ndf": 4})


def batch(seed: int = 0, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(1, 1, size, size, generator=g) * 2 - 1 for k in ("ct_u", "mr_u", "ct_p", "mr_p")}


def test_primitive_losses_by_hand() -> None:
    x = torch.tensor([[0.5, 1.5], [1.0, 3.0]])
    assert float(lsgan_loss(x, 1.0)) == pytest.approx((0.25 + 0.25 + 0 + 4) / 4)
    assert float(lsgan_loss(x, 0.0)) == pytest.approx((0.25 + 2.25 + 1 + 9) / 4)
    z = torch.tensor([0.0, 2.0])
    assert float(nll_gan_loss(z, 1.0)) == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    assert float(nll_gan_loss(z, 0.0)) == pytest.approx((math.log(2) + math.log(1 + math.exp(2))) / 2)
    assert float(l1_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]))) == pytest.approx(1.0)
    # discriminator: halved, one-sided smoothing on the real target only
    real, fake = torch.tensor([0.8]), torch.tensor([0.3])
    assert float(discriminator_loss(real, fake, "unpaired", 0.9)) == pytest.approx(0.5 * ((0.8 - 0.9) ** 2 + 0.3**2))
    want = 0.5 * (math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(0.3)))
    assert float(discriminator_loss(real, fake, "paired")) == pytest.approx(want)


def test_total_weights_lambda_and_gamma() -> None:
    terms = {"adv_mr_paired": torch.tensor(1.0), "cyc_ct_paired": torch.tensor(2.0), "l1_mr_paired": torch.tensor(3.0)}
    assert float(total_generator_loss(terms, 10.0, 100.0)) == pytest.approx(1 + 20 + 300)


def test_ablation_table() -> None:
    assert set(VARIANT_TERMS["paired"]) == {"adv_mr_paired", "l1_mr_paired"}
    assert set(VARIANT_TERMS["unpaired"]) == {"adv_mr_unpaired", "adv_ct_unpaired", "cyc_ct_unpaired", "cyc_mr_unpaired"}
    assert set(VARIANT_TERMS["mrgan"]) == set(ALL_TERMS) and len(ALL_TERMS) == 10
    assert [t for t in ALL_TERMS if t.startswith("cyc")] == ["cyc_ct_unpaired", "cyc_mr_unpaired", "cyc_ct_paired", "cyc_mr_paired"]
    assert networks_for("paired") == ("syn_mr", "dis_mr")
    assert networks_for("unpaired") == networks_for("mrgan") == ("syn_mr", "syn_ct", "dis_mr", "dis_ct")
    assert data_for("paired") == ("paired",)
    assert data_for("unpaired") == ("ct_unpaired", "mr_unpaired")
    assert data_for("mrgan") == ("ct_unpaired", "mr_unpaired", "paired")


@pytest.mark.parametrize("variant", ["paired", "unpaired", "mrgan"])
def test_each_variant_switches_on_exactly_its_terms(variant: str) -> None:
    tr = Trainer(TINY, variant)
    values = tr.step(batch())
    g_terms = {k for k in values if k in ALL_TERMS}
    assert g_terms == set(VARIANT_TERMS[variant])
    d_terms = {k for k in values if k.startswith("dis_")}
    assert d_terms == {"dis_" + t.removeprefix("adv_") for t in VARIANT_TERMS[variant] if t.startswith("adv_")}
    assert set(tr.nets) == set(networks_for(variant))
    assert values["G_total"] == pytest.approx(
        sum(values[t] * {"adv": 1, "cyc": TINY.lambda_cycle, "l1": TINY.gamma_l1}[t.split("_")[0]] for t in g_terms), rel=1e-5
    )


def test_mrgan_terms_match_hand_computation() -> None:
    tr = Trainer(TINY, "mrgan")
    b = batch(3)
    g_mr, g_ct, d_mr, d_ct = (tr.nets[k] for k in ("syn_mr", "syn_ct", "dis_mr", "dis_ct"))
    with torch.no_grad():
        ct_u, mr_u, ct_p, mr_p = b["ct_u"], b["mr_u"], b["ct_p"], b["mr_p"]
        f_mr_u, f_ct_u, f_mr_p, f_ct_p = g_mr(ct_u), g_ct(mr_u), g_mr(ct_p), g_ct(mr_p)
        softplus = torch.nn.functional.softplus
        want = {
            "adv_mr_unpaired": ((d_mr(f_mr_u, "unpaired") - 1) ** 2).mean(),
            "adv_ct_unpaired": ((d_ct(f_ct_u, "unpaired") - 1) ** 2).mean(),
            # BCE(x, 1) = softplus(-x); the pair is [CT, MR] for both discriminators
            "adv_mr_paired": softplus(-d_mr(torch.cat([ct_p, f_mr_p], 1), "paired")).mean(),
            "adv_ct_paired": softplus(-d_ct(torch.cat([f_ct_p, mr_p], 1), "paired")).mean(),
            "cyc_ct_unpaired": (g_ct(f_mr_u) - ct_u).abs().mean(),
            "cyc_mr_unpaired": (g_mr(f_ct_u) - mr_u).abs().mean(),
            "cyc_ct_paired": (g_ct(f_mr_p) - ct_p).abs().mean(),
            "cyc_mr_paired": (g_mr(f_ct_p) - mr_p).abs().mean(),
            "l1_mr_paired": (f_mr_p - mr_p).abs().mean(),
            "l1_ct_paired": (f_ct_p - ct_p).abs().mean(),
        }
    got = tr.generator_step(b)
    for k, v in want.items():
        assert got[k] == pytest.approx(float(v), rel=1e-4, abs=1e-6), k
    assert got["G_total"] == pytest.approx(
        sum(float(v) * (1 if k.startswith("adv") else 10 if k.startswith("cyc") else 100) for k, v in want.items()), rel=1e-4
    )


def _params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_generator_step_leaves_discriminators_alone_and_vice_versa() -> None:
    tr = Trainer(TINY, "mrgan")
    tr.step(batch(0))  # Adam moments exist for everything
    before = {k: _params(n) for k, n in tr.nets.items()}
    tr.generator_step(batch(1))
    for k in ("dis_mr", "dis_ct"):
        assert all(torch.equal(a, b) for a, b in zip(before[k], tr.nets[k].parameters(), strict=True)), k
        assert all(p.grad is None for p in tr.nets[k].parameters()), k  # frozen: no gradient at all
        assert all(p.requires_grad for p in tr.nets[k].parameters())  # unfrozen again afterwards
    for k in ("syn_mr", "syn_ct"):
        assert not all(torch.equal(a, b) for a, b in zip(before[k], tr.nets[k].parameters(), strict=True)), k
    mid = {k: _params(n) for k, n in tr.nets.items()}
    tr.discriminator_step()
    for k in ("syn_mr", "syn_ct"):
        assert all(torch.equal(a, b) for a, b in zip(mid[k], tr.nets[k].parameters(), strict=True)), k
    for k in ("dis_mr", "dis_ct"):
        assert not all(torch.equal(a, b) for a, b in zip(mid[k], tr.nets[k].parameters(), strict=True)), k


def test_image_pool() -> None:
    rng = np.random.default_rng(0)
    assert torch.equal(ImagePool(0).query(torch.ones(1, 1, 2, 2), rng), torch.ones(1, 1, 2, 2))
    pool = ImagePool(3)
    for v in range(3):  # filling: the new image is returned and stored
        assert float(pool.query(torch.full((1, 1, 2, 2), float(v)), rng).mean()) == v
    from_pool = 0
    for v in range(3, 403):
        out = float(pool.query(torch.full((1, 1, 2, 2), float(v)), rng).mean())
        assert out == v or out < v
        from_pool += out < v
        assert len(pool.images) == 3
    assert 150 < from_pool < 250  # p = 0.5
    state = pool.state_dict()
    clone = ImagePool(1)
    clone.load_state_dict(state)
    assert clone.size == 3 and all(torch.equal(a, b) for a, b in zip(clone.images, pool.images, strict=True))


def test_bf16_autocast_path_runs() -> None:
    """The mixed-precision code path (bf16 fakes, fp32 reals, pools) on the CPU's autocast;
    on CUDA the trainer takes the same path with ``amp: bf16``."""
    tr = Trainer(TINY, "mrgan")
    tr.autocast_dtype = torch.bfloat16
    for i in range(3):
        values = tr.step(batch(i))
    assert all(math.isfinite(v) for v in values.values())
    assert tr.pools["mr_unpaired"].images[0].dtype == torch.bfloat16
