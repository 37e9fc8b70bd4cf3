"""MR-GAN networks: generators (Syn_MR, Syn_CT), discriminators (Dis_MR, Dis_CT), init.

``build_generator`` / ``build_discriminator`` create a network from an
architecture dict (``image_size``, ``ngf``, ``ndf``, ``n_blocks``, ``norm``: the
``architecture`` entry of ``model.json``) so that later stages can rebuild a
trained Syn_MR from ``results/models/{variant}/model.json`` + ``syn_mr.pt``.

Beside the networks: :mod:`ct2mr.models.model_folder` (a model folder on disk:
save, load, device choice) and :mod:`ct2mr.models.apply` (a generator on uint8
slices). Training and inference both import this package; it imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ct2mr.models.discriminator import KINDS, DualPatchDiscriminator
from ct2mr.models.generator import ResidualBlock, ResnetGenerator

__all__ = [
    "KINDS",
    "DualPatchDiscriminator",
    "ResidualBlock",
    "ResnetGenerator",
    "build_discriminator",
    "build_generator",
    "init_weights",
]


def init_weights(module: nn.Module, gain: float = 0.02, generator: torch.Generator | None = None) -> None:
    """pix2pix/CycleGAN init: conv weights ~ N(0, gain), norm weights ~ N(1, gain), biases 0.

    Uses the global torch RNG unless ``generator`` is given (draws in module order,
    so a fixed seed gives fixed weights).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.InstanceNorm2d, nn.BatchNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain, generator=generator)
            nn.init.zeros_(m.bias)


def build_generator(arch: Mapping[str, Any]) -> ResnetGenerator:
    """Generator (1 channel in/out) for an architecture dict with ``ngf`` and ``n_blocks``."""
    _check_norm(arch)
    return ResnetGenerator(1, 1, ngf=int(arch["ngf"]), n_blocks=int(arch["n_blocks"]))


def build_discriminator(arch: Mapping[str, Any]) -> DualPatchDiscriminator:
    """Discriminator for an architecture dict with ``ndf``."""
    _check_norm(arch)
    return DualPatchDiscriminator(ndf=int(arch["ndf"]))


def _check_norm(arch: Mapping[str, Any]) -> None:
    norm = arch.get("norm", "instance")
    if norm != "instance":
        raise ValueError(f"only norm 'instance' is implemented, got {norm!r}")
