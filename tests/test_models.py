"""Networks: parameter counts derived by hand, shapes, heads/tails, init, rebuild from model.json."""

from __future__ import annotations

import pytest
import torch

from ct2mr.models import (
    DualPatchDiscriminator,
    ResnetGenerator,
    build_discriminator,
    build_generator,
    init_weights,
)


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def inorm(c: int) -> int:  # affine instance norm: scale + shift
    return 2 * c


def test_generator_parameter_count_paper_size() -> None:
    c, blocks = 64, 9
    expected = (
        conv(1, c, 7, False) + inorm(c)  # c7s1-64
        + conv(c, 2 * c, 3, False) + inorm(2 * c)  # d128
        + conv(2 * c, 4 * c, 3, False) + inorm(4 * c)  # d256
        + blocks * 2 * (conv(4 * c, 4 * c, 3, False) + inorm(4 * c))  # R256 x 9
        + conv(4 * c, 2 * c, 3, False) + inorm(2 * c)  # u128 (transposed: same count)
        + conv(2 * c, c, 3, False) + inorm(c)  # u64
        + conv(c, 1, 7, True)  # c7s1-1, with bias, then tanh
    )
    assert expected == 11_370_881
    assert n_params(ResnetGenerator(1, 1, ngf=64, n_blocks=9)) == expected


def test_discriminator_parameter_count_paper_size() -> None:
    d = 64
    heads = conv(1, d, 3, True) + conv(2, d, 3, True)
    trunk = sum(conv(a, b, 4, False) + inorm(b) for a, b in [(d, 2 * d), (2 * d, 4 * d), (4 * d, 8 * d), (8 * d, 8 * d)])
    tail = conv(8 * d, 8 * d, 3, False) + inorm(8 * d) + conv(8 * d, 1, 3, True)
    expected = heads + trunk + 2 * tail
    assert expected == 11_681_346
    assert n_params(DualPatchDiscriminator(ndf=64)) == expected


def test_generator_shape_and_range() -> None:
    g = ResnetGenerator(1, 1, ngf=4, n_blocks=2)
    x = torch.randn(2, 1, 32, 48) * 3
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0


def test_discriminator_shapes_and_kinds() -> None:
    d = DualPatchDiscriminator(ndf=4)
    assert d(torch.randn(3, 1, 64, 64), "unpaired").shape == (3, 1, 4, 4)
    assert d(torch.randn(1, 2, 256, 256), "paired").shape == (1, 1, 16, 16)
    with pytest.raises(RuntimeError):  # a pair is 2 channels
        d(torch.randn(1, 1, 64, 64), "paired")
    with pytest.raises(ValueError):
        d(torch.randn(1, 1, 64, 64), "triplet")


def test_trunk_is_shared_heads_and_tails_are_not() -> None:
    d = DualPatchDiscriminator(ndf=4)
    d(torch.randn(1, 1, 32, 32), "unpaired").sum().backward()
    assert all(p.grad is not None for p in d.trunk.parameters())
    assert all(p.grad is not None for p in d.heads["unpaired"].parameters())
    assert all(p.grad is not None for p in d.tails["unpaired"].parameters())
    assert all(p.grad is None for p in d.heads["paired"].parameters())
    assert all(p.grad is None for p in d.tails["paired"].parameters())


def test_init_weights_statistics() -> None:
    g = ResnetGenerator(1, 1, ngf=32, n_blocks=2)
    init_weights(g, 0.02, generator=torch.Generator().manual_seed(0))
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3
    s = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)])
    assert abs(float(s.mean()) - 1.0) < 5e-3 and abs(float(s.std()) - 0.02) < 5e-3
    biases = [m.bias for m in g.modules() if getattr(m, "bias", None) is not None]
    assert all(torch.count_nonzero(b) == 0 for b in biases)
    # same seed, same weights
    g2 = ResnetGenerator(1, 1, ngf=32, n_blocks=2)
    init_weights(g2, 0.02, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), g2.state_dict().values(), strict=True))


def test_rebuild_from_architecture_dict(tmp_path) -> None:
    arch = {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "norm": "instance"}
    g = build_generator(arch)
    torch.save(g.state_dict(), tmp_path / "syn_mr.pt")
    g2 = build_generator(arch)
    g2.load_state_dict(torch.load(tmp_path / "syn_mr.pt", weights_only=True))
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert torch.equal(g.eval()(x), g2.eval()(x))
    assert n_params(build_discriminator(arch)) == 2848 * 16 + 249 * 4 + 2
    with pytest.raises(ValueError):
        build_generator({**arch, "norm": "batch"})
