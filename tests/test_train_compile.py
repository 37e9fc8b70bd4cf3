"""The trainer's torch.compile wiring (on the CPU with TorchDynamo's ``eager`` backend) and channels_last.

Inductor (the default backend) needs minutes on the shared CPU for even the tiny
preset (measured > 5 min for one variant), so the real compile modes are measured
by bench/gpu_check.py on a GPU; here Dynamo traces the networks (graph breaks and
guards included) and runs the captured graphs eagerly, which must reproduce the
uncompiled losses.
"""

from __future__ import annotations

import functools

import pytest
import torch

import ct2mr.training.train as train_mod
from ct2mr.training.augment import AugmentConfig
from ct2mr.training.data import SlicePools
from ct2mr.training.device_data import BatchedSampler
from ct2mr.training.losses import data_for
from ct2mr.training.settings import PRESETS, settings_from_dict
from ct2mr.training.train import Trainer


def pools(size: int) -> SlicePools:
    g = torch.Generator().manual_seed(0)

    def rnd() -> torch.Tensor:
        return torch.randint(0, 256, (4, size, size), generator=g, dtype=torch.uint8)

    return SlicePools(rnd(), rnd(), rnd(), rnd())


def run_steps(settings, variant: str, n: int) -> list[float]:
    trainer = Trainer(settings, variant, "cpu")
    sampler = BatchedSampler(pools(settings.image_size), data_for(variant), AugmentConfig(settings.image_size, 36), 0)
    return [trainer.step(sampler.draw())["G_total"] for _ in range(n)]


def test_compile_setting_compiles_every_network_with_its_mode(monkeypatch) -> None:
    calls: list[tuple[str, str | None]] = []

    def fake_compile(module, mode=None):  # noqa: ANN001, ANN202
        calls.append((type(module).__name__, mode))
        return module

    monkeypatch.setattr(train_mod, "_ALLOW_CPU_COMPILE", True)
    monkeypatch.setattr(torch, "compile", fake_compile)
    s = settings_from_dict({**PRESETS["tiny"], "compile": True, "compile_mode": "max-autotune-no-cudagraphs"})
    t = Trainer(s, "mrgan", "cpu")
    assert len(calls) == 4 and {m for _, m in calls} == {"max-autotune-no-cudagraphs"}
    assert t.compiled and not t._mark_steps  # CUDA graph step marks only on CUDA with reduce-overhead
    calls.clear()
    Trainer(settings_from_dict({**PRESETS["tiny"], "compile": True}), "paired", "cpu")
    assert [m for _, m in calls] == [None, None]  # "default" -> torch.compile's own default
    calls.clear()
    monkeypatch.setattr(train_mod, "_ALLOW_CPU_COMPILE", False)
    assert not Trainer(settings_from_dict({**PRESETS["tiny"], "compile": True}), "paired", "cpu").compiled
    assert calls == []  # the CPU ignores compile (CUDA only)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paired", "mrgan"])
def test_dynamo_traced_networks_reproduce_the_eager_losses(variant: str, monkeypatch) -> None:
    s = settings_from_dict({**PRESETS["tiny"], "num_threads": 1})
    torch.set_num_threads(1)
    eager = run_steps(s, variant, 3)
    torch._dynamo.reset()
    monkeypatch.setattr(train_mod, "_ALLOW_CPU_COMPILE", True)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    compiled = run_steps(settings_from_dict({**PRESETS["tiny"], "num_threads": 1, "compile": True}), variant, 3)
    torch._dynamo.reset()
    assert compiled == pytest.approx(eager, rel=1e-5)


def test_channels_last_gives_the_same_losses(monkeypatch) -> None:
    """channels_last changes the memory layout only (default off; measured on the GPU by gpu_check)."""
    torch.set_num_threads(1)
    base = {**PRESETS["tiny"], "num_threads": 1}
    plain = run_steps(settings_from_dict(base), "mrgan", 3)
    trainer = Trainer(settings_from_dict({**base, "channels_last": True}), "mrgan", "cpu")
    w = next(p for p in trainer.nets["syn_mr"].parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    nhwc = run_steps(settings_from_dict({**base, "channels_last": True}), "mrgan", 3)
    assert nhwc == pytest.approx(plain, rel=1e-4)
