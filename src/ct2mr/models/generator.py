"""Synthesis networks Syn_MR (CT -> MR) and Syn_CT (MR -> CT).

ResNet generator of Johnson et al. (2016) as used by MR-GAN (Jin et al. 2018):

=====================  ===========================================  ==========
layer                  operation                                    channels
=====================  ===========================================  ==========
c7s1                   reflection pad 3, conv 7x7 s1, IN, ReLU      1 -> ngf
down 1                 conv 3x3 s2 pad 1, IN, ReLU                  ngf -> 2ngf
down 2                 conv 3x3 s2 pad 1, IN, ReLU                  2ngf -> 4ngf
n_blocks x residual    [refl pad 1, conv 3x3, IN, ReLU,             4ngf
                       refl pad 1, conv 3x3, IN] + identity
up 1                   transposed conv 3x3 s2 pad 1 out_pad 1,      4ngf -> 2ngf
                       IN, ReLU
up 2                   transposed conv 3x3 s2 pad 1 out_pad 1,      2ngf -> ngf
                       IN, ReLU
out                    reflection pad 3, conv 7x7 s1 (+bias), tanh  ngf -> 1
=====================  ===========================================  ==========

IN = ``InstanceNorm2d(affine=True)`` (per-channel scale and shift). Convolutions
followed by IN have no bias (the IN shift makes it redundant); only the last
convolution has one. Parameter count (in = out = 1 channel, C = ngf, B = n_blocks)::

    180 C^2 + 118 C + 1 + B (288 C^2 + 16 C)

(11 370 881 for C = 64, B = 9). Input and output: float tensors (N, 1, H, W) in
[-1, 1] (``uint8 / 127.5 - 1``); H and W multiples of 4; the output has the
input's size.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions (reflection padded, IN, ReLU between) plus identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Johnson et al. ResNet image-to-image generator (see module docstring).

    Parameters
    ----------
    in_channels, out_channels:
        Image channels (1 for CT and MR slices).
    ngf:
        Width of the first layer (64 in the paper).
    n_blocks:
        Number of residual blocks at 1/4 resolution (9 in the paper).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ValueError(f"ngf must be >= 1 and n_blocks >= 0, got {ngf}, {n_blocks}")
        c = ngf
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, c, 7, bias=False),
            _norm(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False),
            _norm(2 * c),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1, bias=False),
            _norm(4 * c),
            nn.ReLU(inplace=True),
        ]
        layers += [ResidualBlock(4 * c) for _ in range(n_blocks)]
        layers += [
            nn.ConvTranspose2d(4 * c, 2 * c, 3, stride=2, padding=1, output_padding=1, bias=False),
            _norm(2 * c),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1, bias=False),
            _norm(c),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c, out_channels, 7, bias=True),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) in [-1, 1] -> (N, out_channels, H, W) in [-1, 1]."""
        return self.model(x)
