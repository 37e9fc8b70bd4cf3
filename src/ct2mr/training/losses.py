"""MR-GAN objective (Jin et al. 2018, Eq. 2-5), the ablation table and the image pool.

Loss terms (all on images in [-1, 1]; every term is a mean over pixels/patches):

================== ============================================================ ========
term               definition (generator side)                                  weight
================== ============================================================ ========
adv_mr_unpaired    LS(Dis_MR(Syn_MR(ct_u)), 1)                                   1
adv_ct_unpaired    LS(Dis_CT(Syn_CT(mr_u)), 1)                                   1
adv_mr_paired      BCE(Dis_MR([ct_p, Syn_MR(ct_p)]), 1)                          1
adv_ct_paired      BCE(Dis_CT([Syn_CT(mr_p), mr_p]), 1)                          1
cyc_ct_unpaired    |Syn_CT(Syn_MR(ct_u)) - ct_u|  (forward unpaired cycle)       lambda
cyc_mr_unpaired    |Syn_MR(Syn_CT(mr_u)) - mr_u|  (backward unpaired cycle)      lambda
cyc_ct_paired      |Syn_CT(Syn_MR(ct_p)) - ct_p|  (forward paired cycle)         lambda
cyc_mr_paired      |Syn_MR(Syn_CT(mr_p)) - mr_p|  (backward paired cycle)        lambda
l1_mr_paired       |Syn_MR(ct_p) - mr_p|          (voxel-wise, CT -> MR)         gamma
l1_ct_paired       |Syn_CT(mr_p) - ct_p|          (voxel-wise, MR -> CT)         gamma
================== ============================================================ ========

LS(x, t) = mean((x - t)^2) (least squares GAN, unpaired data); BCE(x, t) = binary
cross-entropy with logits (the negative log-likelihood GAN, paired data). A pair
is always the 2-channel tensor [CT, MR] (channel 0 CT, channel 1 MR) for both
discriminators. The discriminator side of each adversarial term is
``0.5 * (crit(D(real), real_label) + crit(D(fake), 0))`` (halved as in
pytorch-CycleGAN); ``real_label`` is ``unpaired_real_label`` (1.0 by default; 0.9 =
the public code's one-sided label smoothing) for the LS terms and 1 for the BCE
terms. lambda = 10 and gamma = 100 in the paper.

:data:`VARIANT_TERMS` is the ablation table (Table 1 of the paper), plus ``regression``:
Syn_MR trained with ``l1_mr_paired`` alone (weight gamma; no adversarial term, no
discriminator, no Syn_CT), the fair supervised baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: every generator loss term, in logging order
ALL_TERMS: tuple[str, ...] = (
    "adv_mr_unpaired",
    "adv_ct_unpaired",
    "adv_mr_paired",
    "adv_ct_paired",
    "cyc_ct_unpaired",
    "cyc_mr_unpaired",
    "cyc_ct_paired",
    "cyc_mr_paired",
    "l1_mr_paired",
    "l1_ct_paired",
)

#: variant -> the generator loss terms it uses (the paper's ablation, Table 1)
VARIANT_TERMS: dict[str, tuple[str, ...]] = {
    # pix2pix: Syn_MR + Dis_MR, NLL adversarial on (CT, MR) pairs + voxel-wise L1
    "paired": ("adv_mr_paired", "l1_mr_paired"),
    # CycleGAN: both generators and discriminators, LSGAN + the two unpaired cycles
    "unpaired": ("adv_mr_unpaired", "adv_ct_unpaired", "cyc_ct_unpaired", "cyc_mr_unpaired"),
    # MR-GAN: everything
    "mrgan": ALL_TERMS,
    # regression: Syn_MR alone trained with the voxel-wise L1 on pairs, no discriminator,
    # no Syn_CT (the kind of model that won SynthRAD 2023/2025 on paired data)
    "regression": ("l1_mr_paired",),
}

VARIANTS: tuple[str, ...] = tuple(VARIANT_TERMS)


@dataclass(frozen=True)
class TermInfo:
    """What a loss term needs: its weight group, networks and data pools."""

    group: str  # "adv" (weight 1), "cyc" (lambda), "l1" (gamma)
    networks: tuple[str, ...]
    data: tuple[str, ...]  # "ct_unpaired", "mr_unpaired", "paired"


TERM_INFO: dict[str, TermInfo] = {
    "adv_mr_unpaired": TermInfo("adv", ("syn_mr", "dis_mr"), ("ct_unpaired", "mr_unpaired")),
    "adv_ct_unpaired": TermInfo("adv", ("syn_ct", "dis_ct"), ("mr_unpaired", "ct_unpaired")),
    "adv_mr_paired": TermInfo("adv", ("syn_mr", "dis_mr"), ("paired",)),
    "adv_ct_paired": TermInfo("adv", ("syn_ct", "dis_ct"), ("paired",)),
    "cyc_ct_unpaired": TermInfo("cyc", ("syn_mr", "syn_ct"), ("ct_unpaired",)),
    "cyc_mr_unpaired": TermInfo("cyc", ("syn_ct", "syn_mr"), ("mr_unpaired",)),
    "cyc_ct_paired": TermInfo("cyc", ("syn_mr", "syn_ct"), ("paired",)),
    "cyc_mr_paired": TermInfo("cyc", ("syn_ct", "syn_mr"), ("paired",)),
    "l1_mr_paired": TermInfo("l1", ("syn_mr",), ("paired",)),
    "l1_ct_paired": TermInfo("l1", ("syn_ct",), ("paired",)),
}


def networks_for(variant: str) -> tuple[str, ...]:
    """Networks a variant trains, in the order syn_mr, syn_ct, dis_mr, dis_ct."""
    used = {n for t in VARIANT_TERMS[variant] for n in TERM_INFO[t].networks}
    return tuple(n for n in ("syn_mr", "syn_ct", "dis_mr", "dis_ct") if n in used)


def data_for(variant: str) -> tuple[str, ...]:
    """Data pools a variant draws from each iteration (ct_unpaired, mr_unpaired, paired)."""
    used = {d for t in VARIANT_TERMS[variant] for d in TERM_INFO[t].data}
    return tuple(d for d in ("ct_unpaired", "mr_unpaired", "paired") if d in used)


def term_weight(term: str, lambda_cycle: float, gamma_l1: float) -> float:
    """Weight of a generator loss term in the total objective (Eq. 5)."""
    return {"adv": 1.0, "cyc": lambda_cycle, "l1": gamma_l1}[TERM_INFO[term].group]


def lsgan_loss(pred: torch.Tensor, target: float) -> torch.Tensor:
    """Least squares GAN loss: mean((pred - target)^2), computed in float32."""
    pred = pred.float()
    return F.mse_loss(pred, torch.full_like(pred, target))


def nll_gan_loss(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Negative log-likelihood GAN loss: BCE with logits against a constant target (1 real, 0 fake)."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def l1_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference, float32."""
    return F.l1_loss(a.float(), b.float())


def discriminator_loss(
    pred_real: torch.Tensor, pred_fake: torch.Tensor, kind: str, real_label: float = 1.0
) -> torch.Tensor:
    """0.5 * (crit(real, real_label) + crit(fake, 0)); crit = LS for ``unpaired``, BCE for ``paired``."""
    crit = lsgan_loss if kind == "unpaired" else nll_gan_loss
    return 0.5 * (crit(pred_real, real_label) + crit(pred_fake, 0.0))


def total_generator_loss(terms: dict[str, torch.Tensor], lambda_cycle: float, gamma_l1: float) -> torch.Tensor:
    """Weighted sum of the generator terms present in ``terms`` (Eq. 5)."""
    if not terms:
        raise ValueError("no loss terms")
    items: Iterable[tuple[str, torch.Tensor]] = terms.items()
    weighted = [term_weight(k, lambda_cycle, gamma_l1) * v for k, v in items]
    total = weighted[0]
    for w in weighted[1:]:
        total = total + w
    return total


class ImagePool:
    """History of past fakes (Shrivastava et al. 2017; pytorch-CycleGAN's ImagePool).

    While fewer than ``size`` images are stored, each new fake is stored and
    returned. Afterwards, with probability 0.5 a stored fake is returned and
    replaced by the new one, else the new one is returned. ``size`` 0 disables
    the pool. Randomness comes from the numpy ``rng`` given to :meth:`query`, so a
    run is reproducible and resumable. Images are kept detached (any device).
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Return a batch of the same shape as ``images`` (N, C, H, W), drawn through the pool."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for img in images:
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif rng.random() < 0.5:
                j = int(rng.integers(0, self.size))
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, object]:
        """Picklable state (tensors on CPU) for checkpoints."""
        return {"size": self.size, "images": [t.cpu() for t in self.images]}

    def load_state_dict(self, state: dict[str, object], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])  # type: ignore[arg-type]
        self.images = [t.to(device) for t in state["images"]]  # type: ignore[union-attr]
