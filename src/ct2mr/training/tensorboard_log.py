"""TensorBoard logging of a training run (optional: a no-op without tensorboard).

Written under ``{model folder}/tensorboard/`` (e.g.
``results/models/mrgan/seed0/tensorboard/``); view every run with::

    tensorboard --logdir results/models

* scalars, at each log interval (``settings.log_every``): ``loss/{term}`` for
  every generator term and ``G_total``, ``loss/{dis_term}`` and ``D_total`` for
  the discriminators (means since the previous row, as in ``losses.tsv``),
  ``lr`` and ``speed/iterations_per_s``;
* images, every ``settings.image_log_every`` iterations (0 = never): ``images/
  translation`` = CT | Syn_MR(CT) | reference MR of a fixed training slice
  (the first paired slice; with no pairs the first unpaired CT and a black
  reference), and for variants with Syn_CT ``images/cycles`` = CT |
  Syn_CT(Syn_MR(CT)) | MR | Syn_MR(Syn_CT(MR)). Grey levels: [-1, 1] mapped
  to [0, 1]; one 1-pixel white line between panels.

Uses ``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard``
package; when it is not importable (e.g. a bare GPU machine) :func:`open_writer`
returns None and the trainer logs nothing here (losses.tsv is written anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def tensorboard_available() -> bool:
    """True when ``torch.utils.tensorboard`` (i.e. the tensorboard package) imports."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def open_writer(log_dir: Path, purge_step: int | None = None) -> Any | None:
    """A SummaryWriter on ``log_dir``, or None without tensorboard.

    ``purge_step``: on resume, the checkpoint's iteration + 1: events the
    interrupted run logged from that step on are hidden by TensorBoard (no duplicates).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no TensorBoard events (losses.tsv is still written)")
        return None
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def log_scalars(writer: Any | None, row: Mapping[str, float], iteration: int, rate: float | None = None) -> None:
    """One losses.tsv row -> scalars ``loss/*``, ``lr`` (and ``speed/iterations_per_s``)."""
    if writer is None:
        return
    for key, value in row.items():
        if key in ("iteration", "seconds"):
            continue
        tag = "lr" if key == "lr" else f"loss/{key}"
        writer.add_scalar(tag, float(value), iteration)
    if rate is not None and rate == rate:  # not NaN
        writer.add_scalar("speed/iterations_per_s", float(rate), iteration)
    writer.flush()


def _panel_row(images: list[torch.Tensor]) -> torch.Tensor:
    """(H, W) images in [-1, 1] -> one (H, n*W + n-1) row in [0, 1] with white separators."""
    h = images[0].shape[-2]
    sep = torch.ones((h, 1))
    parts: list[torch.Tensor] = []
    for i, img in enumerate(images):
        if i:
            parts.append(sep)
        parts.append(((img.detach().float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def preview_grids(nets: Mapping[str, nn.Module], ct: torch.Tensor, mr: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Image grids of the current generators on one CT slice (and its MR).

    ``ct``, ``mr``: (1, 1, S, S) in [-1, 1] on the networks' device (``mr`` None
    when there is no reference). Returns ``{"translation": (H, W), "cycles": (H, W)}``
    (cycles only with Syn_CT and an MR), values in [0, 1], on the CPU. Runs in
    float32 without autograd; instance norm has no running statistics, so this does
    not change the networks.
    """
    syn_mr = nets["syn_mr"]
    fake_mr = syn_mr(ct)
    ref = mr if mr is not None else torch.full_like(ct, -1.0)
    out = {"translation": _panel_row([ct[0, 0], fake_mr[0, 0], ref[0, 0]])}
    if "syn_ct" in nets and mr is not None:
        syn_ct = nets["syn_ct"]
        rec_ct = syn_ct(fake_mr)
        rec_mr = syn_mr(syn_ct(mr))
        out["cycles"] = _panel_row([ct[0, 0], rec_ct[0, 0], mr[0, 0], rec_mr[0, 0]])
    return out


def log_images(writer: Any | None, grids: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Write :func:`preview_grids` output as ``images/{name}`` (single-channel HW)."""
    if writer is None:
        return
    for name, grid in grids.items():
        writer.add_image(f"images/{name}", grid, iteration, dataformats="HW")
    writer.flush()
