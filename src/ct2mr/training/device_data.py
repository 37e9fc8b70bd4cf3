"""Device-resident slice pools and batched augmentation for the training loop.

:class:`BatchedSampler` is what ``ct2mr train`` draws its images with. It makes
exactly the random draws of the reference :class:`ct2mr.training.train.Sampler` (same
numpy stream ``default_rng([seed, 1])``, same order: per data kind a slice
index, then :func:`ct2mr.training.augment.sample_params`), so a checkpoint's sampler
state means the same thing for both, but it applies the augmentation to all
images of an iteration at once, as a handful of batched tensor operations on
the device that holds the pools:

1. one ``index_select`` from a single uint8 bank holding every pool (resident on
   the training device: 64 KiB per 256 x 256 slice);
2. ``x / 127.5 - 1``; flip as ``torch.where`` of the reversed batch;
3. pad with -1 and crop each image at its own offset by advanced indexing
   (exact: integer shifts);
4. rotation of every image by its own angle in one ``grid_sample`` (bilinear,
   zero padding of ``x + 1`` then ``- 1`` = fill with -1, align_corners=False),
   the same sampling grid formula as :func:`ct2mr.training.augment.rotate`.

A (CT, MR) pair is two images with one shared parameter row. The per-iteration
parameters (index, flip, top, left, cos, sin; float32) travel to the device as
one small tensor; on CUDA from pinned memory with ``non_blocking=True``, so the
host never waits for the device (no synchronisation per iteration). Results equal
the per-image reference path within interpolation tolerance (float rounding of
the sampling grid: < 1e-4 in [-1, 1] units; tests/test_device_data.py).

Slice indices travel as float32: a bank of more than 2**24 slices is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ct2mr.training.augment import AugmentConfig, sample_params
from ct2mr.training.data import SlicePools

#: output key(s) per data kind, in draw order
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "ct_unpaired": ("ct_u",),
    "mr_unpaired": ("mr_u",),
    "paired": ("ct_p", "mr_p"),
}


class BatchedSampler:
    """Draws each iteration's images (same random stream as :class:`ct2mr.training.train.Sampler`),
    augmenting them together on ``device``.

    ``pools``: uint8 slice pools (any device; copied once into a bank on ``device``).
    ``needs``: data kinds the variant draws, in the order ct_unpaired, mr_unpaired, paired.
    :meth:`draw` -> dict with ``ct_u``, ``mr_u``, ``ct_p``, ``mr_p`` (those needed),
    each float32 (1, 1, S, S) in [-1, 1] on ``device``.
    """

    def __init__(
        self, pools: SlicePools, needs: Sequence[str], aug: AugmentConfig, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        self.needs = tuple(needs)
        self.aug = aug
        self.device = torch.device(device)
        self.rng = np.random.default_rng([seed, 1])
        sources = {
            "ct_unpaired": (pools.ct_unpaired,),
            "mr_unpaired": (pools.mr_unpaired,),
            "paired": (pools.paired_ct, pools.paired_mr),
        }
        parts: list[torch.Tensor] = []
        self.offsets: dict[str, tuple[int, ...]] = {}
        self.counts: dict[str, int] = {}
        start = 0
        for need in self.needs:
            offs = []
            for t in sources[need]:
                offs.append(start)
                parts.append(t.to(self.device))
                start += int(t.shape[0])
            self.offsets[need] = tuple(offs)
            self.counts[need] = int(sources[need][0].shape[0])
        if start >= 2**24:
            raise ValueError(f"{start} slices in the training pools: more than 2**24 cannot be indexed in float32")
        size = aug.size
        self.bank = torch.cat(parts, 0) if parts else torch.zeros((0, size, size), dtype=torch.uint8, device=self.device)
        self.keys = tuple(k for need in self.needs for k in KIND_KEYS[need])
        self.n_images = len(self.keys)
        self._pin = self.device.type == "cuda"
        # constants of the batched transform, on the device
        eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        self._base = F.affine_grid(eye, [1, 1, size, size], align_corners=False).to(self.device)  # (1, S, S, 2)
        self._arange = torch.arange(size, device=self.device)
        self._batch_idx = torch.arange(self.n_images, device=self.device)[:, None, None]

    def count(self, need: str) -> int:
        return self.counts[need]

    @property
    def params_shape(self) -> tuple[int, int]:
        """Shape of one iteration's parameter rows: (images drawn, 6)."""
        return (self.n_images, 6)

    # ----------------------------------------------------------------- host side
    def draw_params(self) -> np.ndarray:
        """The iteration's random draws -> float32 (n_images, 6): bank index, flip (0/1),
        top, left [pixels], cos and sin of the angle. Consumes ``self.rng`` exactly as
        :meth:`ct2mr.training.train.Sampler.draw`."""
        rows = np.zeros((self.n_images, 6), np.float32)
        r = 0
        for need in self.needs:
            i = int(self.rng.integers(0, self.counts[need]))
            p = sample_params(self.rng, self.aug)
            a = math.radians(p.angle_deg)
            for off in self.offsets[need]:
                rows[r] = (off + i, float(p.flip), p.top, p.left, math.cos(a), math.sin(a))
                r += 1
        return rows

    def _to_device(self, rows: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(rows)
        if self._pin:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    # ----------------------------------------------------------------- device side
    def transform(self, params: torch.Tensor) -> torch.Tensor:
        """Gather and augment: ``params`` (n_images, 6) on the device -> float32 (n_images, S, S) in [-1, 1]."""
        aug = self.aug
        idx = params[:, 0].long()
        x = self.bank.index_select(0, idx).float() / 127.5 - 1.0
        if not aug.enabled:
            return x
        flip = params[:, 1] > 0.5
        x = torch.where(flip[:, None, None], x.flip(-1), x)
        extra = aug.pad_to - aug.size
        if extra > 0:
            before = extra // 2
            xp = F.pad(x[:, None], (before, extra - before, before, extra - before), mode="constant", value=-1.0)[:, 0]
            rows = params[:, 2].long()[:, None] + self._arange[None, :]  # (B, S)
            cols = params[:, 3].long()[:, None] + self._arange[None, :]
            x = xp[self._batch_idx, rows[:, :, None], cols[:, None, :]]
        if aug.max_rotation_deg == 0:
            return x
        c = params[:, 4][:, None, None]
        s = params[:, 5][:, None, None]
        bx, by = self._base[..., 0], self._base[..., 1]
        grid = torch.stack([c * bx - s * by, s * bx + c * by], dim=-1)  # square images: aspect 1
        out = F.grid_sample((x + 1.0)[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out[:, 0] - 1.0

    def draw(self) -> dict[str, torch.Tensor]:
        """One iteration's images (see the class docstring)."""
        x = self.transform(self._to_device(self.draw_params()))
        return {k: x[j : j + 1, None] for j, k in enumerate(self.keys)}
