"""Online augmentation of training slices (Jin et al. 2018, Sec. 3): flip, pad + crop, rotation.

TorchIO style: :func:`sample_params` draws the random parameters, :func:`apply`
applies them deterministically. A (CT, MR) pair is augmented with ONE draw
applied to both images (stack them as channels); unpaired CT and MR get
independent draws.

Steps of :func:`apply`, on images in [-1, 1] of shape (..., H, W), H = W = size:

1. horizontal flip (columns reversed) when ``params.flip``;
2. pad to ``pad_to`` x ``pad_to`` with the constant -1 (black = air in both the
   windowed CT and the normalised MR; reflection would mirror anatomy into the
   border), ``(pad_to - size) // 2`` before and the rest after;
3. crop ``size`` x ``size`` at (``params.top``, ``params.left``) of the padded image;
4. rotation by ``params.angle_deg`` degrees about the image centre (bilinear,
   ``affine_grid``/``grid_sample``, align_corners=False; positive angles turn the
   content counter-clockwise as displayed with row 0 at the top: +90 degrees
   equals ``torch.rot90(x, 1, dims=(-2, -1))``), filling with -1.

The paper pads 256 to 286 (=> shifts of up to +-15 pixels); for smaller models
``pad_to = round(size * 286 / 256)``. Rotation uniform in [-5, 5] degrees, flip
probability 0.5. Pure torch ops: it runs on the device holding the images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def default_pad_to(size: int) -> int:
    """The paper's 256 -> 286 padding scaled to ``size``: round(size * 286 / 256)."""
    return int(round(size * 286 / 256))


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings. ``enabled=False`` makes :func:`apply` the identity."""

    size: int
    pad_to: int
    flip_prob: float = 0.5
    max_rotation_deg: float = 5.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.pad_to < self.size:
            raise ValueError(f"pad_to ({self.pad_to}) must be >= size ({self.size})")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.max_rotation_deg < 0:
            raise ValueError(f"max_rotation_deg must be >= 0, got {self.max_rotation_deg}")


@dataclass(frozen=True)
class AugmentParams:
    """One draw: flip or not, crop offset (pixels, in the padded image), rotation (degrees)."""

    flip: bool
    top: int
    left: int
    angle_deg: float


def sample_params(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw one set of parameters. Always consumes the same four draws from ``rng``
    (flip, top, left, angle), whatever ``cfg`` says, so the random stream is stable."""
    u_flip = rng.random()
    top = int(rng.integers(0, cfg.pad_to - cfg.size + 1))
    left = int(rng.integers(0, cfg.pad_to - cfg.size + 1))
    angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    return AugmentParams(flip=bool(u_flip < cfg.flip_prob), top=top, left=left, angle_deg=angle)


_BASE_GRIDS: dict[tuple[str, int, int], torch.Tensor] = {}


def _base_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Identity sampling grid (1, h, w, 2) of ``affine_grid`` (align_corners=False), cached per device."""
    key = (str(device), h, w)
    if key not in _BASE_GRIDS:
        eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        _BASE_GRIDS[key] = F.affine_grid(eye, [1, 1, h, w], align_corners=False).to(device)
    return _BASE_GRIDS[key]


def rotate(images: torch.Tensor, angle_deg: float, fill: float = -1.0) -> torch.Tensor:
    """Rotate (..., H, W) images about their centre by ``angle_deg`` (bilinear), filling with ``fill``.

    The sampling grid is built from a cached identity grid and Python scalars, so
    no host-to-device copy (and no GPU synchronisation) happens per call.
    """
    if angle_deg == 0.0:
        return images
    shape = images.shape
    h, w = shape[-2], shape[-1]
    x = images.reshape(-1, 1, h, w)
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    base = _base_grid(h, w, images.device)
    bx, by = base[..., 0], base[..., 1]
    # output pixel (bx, by) samples the input at R (bx, by) (normalised coordinates; aspect corrected)
    grid = torch.stack([c * bx - s * (h / w) * by, s * (w / h) * bx + c * by], dim=-1)
    grid = grid.expand(x.shape[0], h, w, 2)
    # sample (x - fill) with zero padding, then add fill back: outside -> fill
    out = F.grid_sample((x - fill).float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    return out.to(images.dtype).reshape(shape)


def apply(images: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply ``params`` to images (..., size, size) in [-1, 1]; same shape out.

    All leading dimensions (e.g. the two channels of a CT/MR pair) get the same
    transform. Deterministic given ``params``.
    """
    if not cfg.enabled:
        return images
    if images.shape[-2:] != (cfg.size, cfg.size):
        raise ValueError(f"expected images of size {cfg.size}x{cfg.size}, got {tuple(images.shape[-2:])}")
    x = images
    if params.flip:
        x = torch.flip(x, dims=(-1,))
    extra = cfg.pad_to - cfg.size
    if extra > 0:
        before = extra // 2
        after = extra - before
        lead = x.shape[:-2]
        x4 = x.reshape(-1, 1, cfg.size, cfg.size)
        x4 = F.pad(x4, (before, after, before, after), mode="constant", value=-1.0)
        x4 = x4[:, :, params.top : params.top + cfg.size, params.left : params.left + cfg.size]
        x = x4.reshape(*lead, cfg.size, cfg.size)
    return rotate(x, params.angle_deg, fill=-1.0)
