"""Discriminators Dis_MR and Dis_CT: PatchGAN with per-input heads and per-task tails.

Jin et al. (2018), Fig. 4: one convolution as an extra HEAD per input kind, four
strided convolutions as a SHARED trunk, two convolutions as an extra TAIL per
task. Our exact layers (D = ndf, k = kernel, s = stride, p = zero padding):

==========================  =================================  ============
part                        layer                              channels
==========================  =================================  ============
head ``unpaired``           conv k3 s1 p1 (+bias), LReLU 0.2   1 -> D
head ``paired``             conv k3 s1 p1 (+bias), LReLU 0.2   2 -> D
trunk (shared)              conv k4 s2 p1, IN, LReLU 0.2       D -> 2D
                            conv k4 s2 p1, IN, LReLU 0.2       2D -> 4D
                            conv k4 s2 p1, IN, LReLU 0.2       4D -> 8D
                            conv k4 s2 p1, IN, LReLU 0.2       8D -> 8D
tail ``unpaired``/``paired``conv k3 s1 p1, IN, LReLU 0.2       8D -> 8D
                            conv k3 s1 p1 (+bias)              8D -> 1
==========================  =================================  ============

The first convolution (head) has no normalisation and the last (tail output) has
neither normalisation nor activation; every other one is followed by
``InstanceNorm2d(affine=True)`` and leaky ReLU (slope 0.2). The head keeps a
leaky ReLU (as in pix2pix's PatchGAN) so that head and trunk do not collapse into
one linear map. 3x3 stride-1 convolutions in head and tails keep the spatial size,
so an H x W input gives an (H/16) x (W/16) map of patch logits (16 x 16 for 256 x
256; any H, W multiple of 16 work, down to 32: instance norm needs more
than one pixel per channel).

Parameter count (C = D)::

    heads 10 D + 19 D, trunk 1696 D^2 + 44 D, two tails 2 (576 D^2 + 88 D + 1)
    total 2848 D^2 + 249 D + 2          (11 681 346 for D = 64)

Input: ``kind="unpaired"`` -> (N, 1, H, W), the image alone; ``kind="paired"`` ->
(N, 2, H, W), channel 0 = CT, channel 1 = MR, values in [-1, 1]. Output: raw
scores (N, 1, H/16, W/16); the losses apply least squares (unpaired) or a sigmoid
with binary cross-entropy (paired).
"""

from __future__ import annotations

import torch
from torch import nn

#: input kind -> input channels of its head
KINDS: dict[str, int] = {"unpaired": 1, "paired": 2}


def _conv_in_lrelu(cin: int, cout: int, k: int, s: int, p: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(0.2, inplace=True),
    ]


class DualPatchDiscriminator(nn.Module):
    """PatchGAN discriminator with a head and a tail for each input kind.

    Parameters
    ----------
    ndf:
        Width D of the head (64 in the paper preset).
    """

    def __init__(self, ndf: int = 64) -> None:
        super().__init__()
        if ndf < 1:
            raise ValueError(f"ndf must be >= 1, got {ndf}")
        d = ndf
        self.heads = nn.ModuleDict(
            {
                kind: nn.Sequential(nn.Conv2d(ch, d, 3, stride=1, padding=1, bias=True), nn.LeakyReLU(0.2, inplace=True))
                for kind, ch in KINDS.items()
            }
        )
        self.trunk = nn.Sequential(
            *_conv_in_lrelu(d, 2 * d, 4, 2, 1),
            *_conv_in_lrelu(2 * d, 4 * d, 4, 2, 1),
            *_conv_in_lrelu(4 * d, 8 * d, 4, 2, 1),
            *_conv_in_lrelu(8 * d, 8 * d, 4, 2, 1),
        )
        self.tails = nn.ModuleDict(
            {
                kind: nn.Sequential(
                    *_conv_in_lrelu(8 * d, 8 * d, 3, 1, 1),
                    nn.Conv2d(8 * d, 1, 3, stride=1, padding=1, bias=True),
                )
                for kind in KINDS
            }
        )

    def forward(self, x: torch.Tensor, kind: str = "unpaired") -> torch.Tensor:
        """Patch scores (N, 1, H/16, W/16) for ``x`` of the given ``kind`` (see module docstring)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        return self.tails[kind](self.trunk(self.heads[kind](x)))
