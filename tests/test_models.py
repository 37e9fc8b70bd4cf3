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


# --------------------------------------------------------------------------- model.json checks (issue 22, item 5)


def _folder(tmp_path, name: str = "m", variant: str = "paired"):
    from ct2mr.models.model_folder import make_untrained_model

    return make_untrained_model(tmp_path / name, variant, image_size=32, ngf=4, n_blocks=1)


def _edit(folder, **changes) -> None:
    import json

    path = folder / "model.json"
    info = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = info
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    path.write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"variant": "cyclegan"}, "variant",
         "unknown variant 'cyclegan'; expected one of paired, unpaired, mrgan, regression"),
        ({"variant": None}, "variant", "missing; expected one of paired, unpaired, mrgan, regression"),
        # an edited top-level size (train writes both) and an edited architecture size: never run silently
        ({"image_size": 33}, "image_size",
         "33 disagrees with architecture.image_size 32 (the slice size the network runs at)"),
        ({"architecture__image_size": 64, "settings__image_size": 32}, "architecture.image_size",
         "64 disagrees with settings.image_size 32, the value the model was trained with"),
        ({"architecture__ngf": 8}, "architecture.ngf",
         "8 does not fit the weights: syn_mr.pt holds a generator with ngf 4"),
        ({"architecture__n_blocks": 3}, "architecture.n_blocks",
         "3 does not fit the weights: syn_mr.pt holds a generator with n_blocks 1"),
        ({"preprocessing": {"resample": {"spacing_mm": [1, 1, 1]}}}, "preprocessing.skull_mask", "missing"),
    ],
)
def test_model_json_is_checked_against_the_weights_and_the_known_variants(tmp_path, changes, field, problem) -> None:
    """Each problem: one line naming model.json, the field and what is wrong."""
    from ct2mr.errors import InputError
    from ct2mr.models.model_folder import load_generators

    folder = _folder(tmp_path)
    _edit(folder, **changes)
    with pytest.raises(InputError) as exc:
        load_generators(folder, device="cpu")
    assert str(exc.value) == f"{folder / 'model.json'}: {field}: {problem}"


def test_syn_ct_weights_must_match_the_variant(tmp_path) -> None:
    import shutil

    from ct2mr.errors import InputError
    from ct2mr.models.model_folder import load_generators

    paired, cycle = _folder(tmp_path, "p", "paired"), _folder(tmp_path, "c", "mrgan")
    shutil.copy(cycle / "syn_ct.pt", paired / "syn_ct.pt")
    with pytest.raises(InputError, match=r"p/model\.json: variant: 'paired' trains no Syn_CT, but the folder holds "
                                         r"syn_ct\.pt"):
        load_generators(paired, device="cpu")
    _edit(cycle, weights={"syn_mr": "syn_mr.pt", "syn_ct": "syn_ct.pt"})
    (cycle / "syn_ct.pt").unlink()
    with pytest.raises(InputError, match=r"c/syn_ct\.pt: model folder .* is missing its weights syn_ct\.pt"):
        load_generators(cycle, device="cpu")


def test_known_variants_are_the_trainers_and_the_preprocessing_keys_the_configs() -> None:
    """model_folder's lists are the trainer's variants and the config schema's preprocessing sections, whole:
    the workflow's train job passes those sections as they are (workflow/rules/train.smk)."""
    import yaml

    from ct2mr.cohort.config import validate_config
    from ct2mr.cohort.schema import CONFIG_SCHEMA
    from ct2mr.models.model_folder import KNOWN_VARIANTS, PREPROCESSING_KEYS, VARIANTS_WITH_SYN_CT, check_preprocessing
    from ct2mr.training.losses import VARIANTS

    assert KNOWN_VARIANTS == VARIANTS and set(VARIANTS_WITH_SYN_CT) <= set(VARIANTS)
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())["properties"]
    assert {s: tuple(schema[s]["properties"]) for s in PREPROCESSING_KEYS} == PREPROCESSING_KEYS
    config = validate_config({})
    record = {s: config[s] for s in PREPROCESSING_KEYS}  # what train.smk passes
    assert check_preprocessing(record, None)["resample"]["spacing_mm"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("window", "ct_width", 80, "preprocessing.window.ct_width: unknown key; expected ct_width_hu, ct_level_hu, "
                                   "mr_percentiles"),
        ("resample", "spacing_mm", [1, 0, 1], "preprocessing.resample.spacing_mm: expected a list of 3 numbers > 0, "
                                              "got [1, 0, 1]"),
        ("slices", "size", 25.5, "preprocessing.slices.size: expected an integer >= 1, got 25.5"),
        ("skull_mask", "ct_head_threshold_hu", "low", "preprocessing.skull_mask.ct_head_threshold_hu: expected a "
                                                      "number, got 'low'"),
    ],
)
def test_check_preprocessing_names_the_key(section, key, value, message) -> None:
    from ct2mr.cohort.config import validate_config
    from ct2mr.errors import InputError
    from ct2mr.models.model_folder import PREPROCESSING_KEYS, check_preprocessing

    config = validate_config({})
    record = {s: dict(config[s]) for s in PREPROCESSING_KEYS}
    record[section][key] = value
    with pytest.raises(InputError) as exc:
        check_preprocessing(record, "model.json")
    assert str(exc.value) == f"model.json: {message}"
