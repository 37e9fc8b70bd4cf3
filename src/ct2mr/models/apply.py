"""A trained generator applied to uint8 slices: the one forward path of training's
validation, ``ct2mr synthesize``, ``ct2mr predict`` and the GPU check.

Grey levels: uint8 0..255 slices (N, S, S) become ``x / 127.5 - 1`` in [-1, 1]
(:func:`to_unit`); a generator's tanh output in [-1, 1] becomes
``round((y + 1) * 127.5)`` clipped to uint8 (:func:`to_uint8`). Slices are brought
to the model's ``image_size`` exactly as in training (:func:`resize_uint8`: area
averaging when shrinking, bilinear when growing) and the outputs back bilinearly.
Inference runs under ``torch.inference_mode`` with bfloat16 autocast on CUDA and
float32 on CPU. Orientation is untouched: ``flip`` in :func:`translate_tta` mirrors
the last axis (the image's columns, the patient's left-right axis).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ct2mr.models.model_folder import LoadedModel


def resize_uint8(slices: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S) uint8 -> (N, size, size) uint8 tensor (area when shrinking, bilinear when growing)."""
    t = torch.from_numpy(np.ascontiguousarray(slices))
    if slices.shape[-1] == size:
        return t.clone()
    x = t.float().unsqueeze(1)
    if size < slices.shape[-1]:
        y = F.interpolate(x, size=(size, size), mode="area")
    else:
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y.squeeze(1).round().clamp(0, 255).to(torch.uint8)



def to_unit(x_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 grey levels (N, H, W) -> float32 (N, 1, H, W) in [-1, 1] (``x / 127.5 - 1``)."""
    t = torch.as_tensor(np.asarray(x_uint8)) if not isinstance(x_uint8, torch.Tensor) else x_uint8
    return (t.to(torch.float32) / 127.5 - 1.0).unsqueeze(1)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) in [-1, 1] -> uint8 (N, H, W): ``round((y + 1) * 127.5)`` clipped to 0..255."""
    g = torch.round((y.float() + 1.0) * 127.5).clamp(0, 255)
    return g[:, 0].to(torch.uint8).cpu().numpy()


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    if t.shape[-1] == size and t.shape[-2] == size:
        return t
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


def _autocast(device: torch.device):  # noqa: ANN202
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def translate(net: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One generator on a float batch (N, 1, S, S) in [-1, 1] -> float32 (N, 1, S, S) clamped to [-1, 1].

    ``torch.inference_mode``; bfloat16 autocast on CUDA, float32 on CPU.
    """
    with torch.inference_mode():
        with _autocast(device):
            y = net(x.to(device, non_blocking=True))
        return y.float().clamp(-1.0, 1.0)


def translate_tta(net: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Horizontal-flip test-time augmentation: ``(f(x) + flip(f(flip(x)))) / 2``, flip = last axis.

    Same shapes and range as :func:`translate` (float32 (N, 1, S, S) in [-1, 1]).
    """
    y = translate(net, x, device)
    y_flip = translate(net, torch.flip(x, dims=(-1,)), device)
    return 0.5 * (y + torch.flip(y_flip, dims=(-1,)))


def synthesize_slices(
    model: LoadedModel | Sequence[LoadedModel], ct: np.ndarray, batch_size: int = 16, cycle: bool = True,
    tta: bool = False,
) -> dict[str, np.ndarray | None]:
    """Syn_MR (and Syn_CT(Syn_MR) when ``cycle`` and the model has Syn_CT) on uint8 CT slices.

    ``ct``: uint8 (N, 256, 256) windowed CT. The slices are brought to the
    model's ``image_size`` exactly as in training
    (:func:`resize_uint8`: area averaging when shrinking),
    the outputs back to 256 bilinearly. Returns ``mr_slices`` uint8
    (N, 256, 256) and ``recon_ct_slices`` uint8 (N, 256, 256) or None. ``tta``:
    Syn_MR through :func:`translate_tta` (horizontal-flip averaging).

    ``model`` a sequence of several models: an **ensemble** (e.g. a variant's fold and seed
    models): each model's Syn_MR, back at the slices' size in [-1, 1], is averaged before the
    one rounding to uint8; no reconstructed CT (it belongs to one model's cycle).
    """
    models = [model] if isinstance(model, LoadedModel) else list(model)
    if not models:
        raise ValueError("no model given")
    ct = np.asarray(ct)
    if ct.ndim != 3 or ct.dtype != np.uint8:
        raise ValueError(f"expected uint8 CT slices (N, H, W), got {ct.dtype} {ct.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n, side = ct.shape[0], ct.shape[-1]
    mr_out = np.zeros(ct.shape, np.uint8)
    first = models[0]
    do_cycle = cycle and len(models) == 1 and first.syn_ct is not None
    rec_out = np.zeros(ct.shape, np.uint8) if do_cycle else None
    step = translate_tta if tta else translate
    for start in range(0, n, batch_size):
        batch = ct[start : start + batch_size]
        total = None
        for m in models:
            y = step(m.syn_mr, to_unit(resize_uint8(batch, m.image_size)), m.device)
            if do_cycle:  # one model: its Syn_CT of its own Syn_MR, at the model's size
                rec_out[start : start + len(batch)] = to_uint8(_resize(translate(m.syn_ct, y, m.device), side))
            y = _resize(y, side)
            total = y if total is None else total + y
        mr_out[start : start + len(batch)] = to_uint8(total / len(models))  # / 1 is exact: one model unchanged
    return {"mr_slices": mr_out, "recon_ct_slices": rec_out}
