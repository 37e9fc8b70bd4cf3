"""The training loop: train MR-GAN or one of its baselines (``paired`` = pix2pix, ``unpaired`` =
CycleGAN, ``regression`` = Syn_MR with the voxel-wise L1 alone) on slice files (:func:`train`).

The ``ct2mr train`` command is :mod:`ct2mr.training.command`; checkpoint identity and
resume :mod:`ct2mr.training.checkpoint`; the losses.tsv text and loss_curve.png
:mod:`ct2mr.training.loss_log`.

Outputs in the model folder ``out_dir`` (DEVELOPING.md "Models"):

* ``checkpoint.pt``: full training state, every ``checkpoint_every`` iterations
  and at the end (atomic; identity, resume and ``superseded/``:
  :mod:`ct2mr.training.checkpoint`).
* ``losses.tsv``: one row every ``log_every`` iterations and at the last one
  (columns: :mod:`ct2mr.training.loss_log`). Rewritten at each checkpoint and at the end.
* at the end only: ``syn_ct.pt`` (variants with Syn_CT), ``model.json`` (with the
  ``preprocessing`` record when given: :mod:`ct2mr.models.model_folder`),
  ``loss_curve.png``, and LAST ``syn_mr.pt`` (state_dict; ``torch.load(...,
  weights_only=True)``), so a folder with ``syn_mr.pt`` is a finished run.
* ``train.log``: progress (it/s, ETA, losses), also on stderr.
* ``tensorboard/``: TensorBoard events (losses and lr every ``log_every``
  iterations, image grids every ``image_log_every``; :mod:`ct2mr.training.tensorboard_log`),
  when ``settings.tensorboard`` and the tensorboard package is installed.

Loop (:func:`train`): slice pools resident on the training device, augmentation
batched there (:class:`ct2mr.training.device_data.BatchedSampler`, the same random draws
as :class:`Sampler`), losses accumulated as device tensors and read back only at
log intervals (no host synchronisation per iteration), fused Adam on CUDA,
optional ``torch.compile`` (``compile``, ``compile_mode``) and ``channels_last``.

One iteration = one generator step (Adam on Syn_MR/Syn_CT with Dis_* frozen)
then one discriminator step (Adam on Dis_MR/Dis_CT), batch size 1 per data kind:
one unpaired CT, one unpaired MR and one (CT, MR) pair, as the variant needs.
Exact resume: on CPU a run interrupted and resumed from its checkpoint gives
bit-identical weights to an uninterrupted one (same settings). On CUDA the state
is restored exactly but cuDNN autotuning and bf16 make runs non bit-reproducible.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_json, write_text
from ct2mr.models import build_discriminator, build_generator, init_weights
from ct2mr.models.model_folder import check_preprocessing, resolve_device, save_torch
from ct2mr.training.augment import AugmentConfig, apply, sample_params
from ct2mr.training.checkpoint import (
    checkpoint_to_resume,
    data_hash,
    set_rng_state,
    to_cpu,
    write_checkpoint,
)
from ct2mr.training.data import SlicePools, build_pools, check_pools, to_unit_range
from ct2mr.training.device_data import BatchedSampler
from ct2mr.training.loss_log import losses_tsv, plot_losses
from ct2mr.training.losses import (
    VARIANT_TERMS,
    VARIANTS,
    ImagePool,
    data_for,
    discriminator_loss,
    l1_loss,
    lsgan_loss,
    networks_for,
    nll_gan_loss,
    total_generator_loss,
)
from ct2mr.training.settings import TrainSettings, settings_hash
from ct2mr.training.tensorboard_log import (
    log_images,
    log_scalars,
    open_writer,
    preview_grids,
)

log = logging.getLogger(__name__)

#: tests only: let ``settings.compile`` act on the CPU too (torch.compile is meant for CUDA here)
_ALLOW_CPU_COMPILE = False

#: adversarial generator term -> (discriminator, input kind, pool / fake key)
ADV_TERMS: dict[str, tuple[str, str, str]] = {
    "adv_mr_unpaired": ("dis_mr", "unpaired", "mr_unpaired"),
    "adv_ct_unpaired": ("dis_ct", "unpaired", "ct_unpaired"),
    "adv_mr_paired": ("dis_mr", "paired", "mr_paired"),
    "adv_ct_paired": ("dis_ct", "paired", "ct_paired"),
}


def dis_term_name(adv_term: str) -> str:
    """Name of the discriminator loss logged for a generator adversarial term."""
    return "dis_" + adv_term.removeprefix("adv_")


# --------------------------------------------------------------------------- sampler


class Sampler:
    """Draws each iteration's images from the pools and augments them, one image at a time.

    The reference for :class:`ct2mr.training.device_data.BatchedSampler` (what :func:`train`
    uses: the same draws, applied as one batch on the device); tests compare the two.

    Order of random draws per iteration (numpy ``rng``): for each data kind the
    variant needs, in the order ct_unpaired, mr_unpaired, paired: a slice index,
    then the augmentation parameters. A pair gets one draw for both images.
    """

    def __init__(self, pools: SlicePools, needs: Sequence[str], aug: AugmentConfig, seed: int) -> None:
        self.pools = pools
        self.needs = tuple(needs)
        self.aug = aug
        self.rng = np.random.default_rng([seed, 1])

    def draw(self) -> dict[str, torch.Tensor]:
        """-> dict with ``ct_u``, ``mr_u``, ``ct_p``, ``mr_p`` (those needed), each (1, 1, S, S) in [-1, 1]."""
        out: dict[str, torch.Tensor] = {}
        for need in self.needs:
            i = int(self.rng.integers(0, self.pools.count(need)))
            params = sample_params(self.rng, self.aug)
            if need == "paired":
                pair = torch.stack([self.pools.paired_ct[i], self.pools.paired_mr[i]], 0)
                pair = apply(to_unit_range(pair), params, self.aug)
                out["ct_p"], out["mr_p"] = pair[0:1].unsqueeze(0), pair[1:2].unsqueeze(0)
            else:
                src = self.pools.ct_unpaired if need == "ct_unpaired" else self.pools.mr_unpaired
                img = apply(to_unit_range(src[i]), params, self.aug)
                out["ct_u" if need == "ct_unpaired" else "mr_u"] = img[None, None]
        return out


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Networks, optimisers, image pools and one training iteration of a variant.

    Networks are built on the CPU and initialised from ``settings.seed`` (N(0,
    init_gain) convs, N(1, init_gain) norm scales), then moved to ``device``.
    One Adam for the generators and one for the discriminators (lr ``settings.lr``,
    betas ``(beta1, beta2)``); the learning rate is a function of the iteration
    (:meth:`lr_at`), so the iteration counter is the whole scheduler state.
    """

    def __init__(self, settings: TrainSettings, variant: str, device: torch.device | str = "cpu") -> None:
        if variant not in VARIANT_TERMS:
            raise InputError(None, "variant", f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.settings = settings
        self.variant = variant
        self.device = torch.device(device)
        self.terms = VARIANT_TERMS[variant]
        self.adv_terms = tuple(t for t in self.terms if t in ADV_TERMS)
        self.net_names = networks_for(variant)
        arch = settings.architecture()
        gen = torch.Generator().manual_seed(settings.seed)
        self.nets: dict[str, nn.Module] = {}
        for name in self.net_names:
            net = build_generator(arch) if name.startswith("syn") else build_discriminator(arch)
            init_weights(net, settings.init_gain, generator=gen)
            self.nets[name] = net.to(self.device)
        self.cuda = self.device.type == "cuda"
        self.autocast_dtype = torch.bfloat16 if (self.cuda and settings.amp == "bf16") else None
        # channels_last only on request (off by default: instance norm and reflection
        # padding hand back the standard layout, so each generator layer pays copies)
        self.channels_last = settings.channels_last
        if self.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.fwd: dict[str, Any] = dict(self.nets)
        self.compiled = settings.compile and (self.cuda or _ALLOW_CPU_COMPILE)
        # reduce-overhead replays CUDA graphs: each iteration must be marked as a new step
        self._mark_steps = self.compiled and self.cuda and settings.compile_mode == "reduce-overhead"
        if self.compiled:
            mode = None if settings.compile_mode == "default" else settings.compile_mode
            self.fwd = {k: torch.compile(v, mode=mode) for k, v in self.nets.items()}
        gens = [p for n in self.net_names if n.startswith("syn") for p in self.nets[n].parameters()]
        diss = [p for n in self.net_names if n.startswith("dis") for p in self.nets[n].parameters()]
        betas = (settings.beta1, settings.beta2)
        # fused Adam on CUDA (one kernel for all parameters); same state_dict layout
        self.opt_g = torch.optim.Adam(gens, lr=settings.lr, betas=betas, fused=self.cuda or None)
        # the regression variant has no discriminator: no discriminator optimiser
        self.opt_d = torch.optim.Adam(diss, lr=settings.lr, betas=betas, fused=self.cuda or None) if diss else None
        self.pools = {
            key: ImagePool(settings.pool_size if (kind == "unpaired" or settings.pool_paired) else 0)
            for _, (_, kind, key) in ADV_TERMS.items()
        }
        self.pool_rng = np.random.default_rng([settings.seed, 2])
        self.iteration = 0
        self._fakes: dict[str, torch.Tensor] = {}
        self._reals: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- helpers
    def lr_at(self, iteration: int) -> float:
        """lr for 0-based ``iteration``: constant for n_const, then linear to 0 over n_decay."""
        s = self.settings
        if iteration < s.n_const:
            return s.lr
        return s.lr * max(0.0, 1.0 - (iteration - s.n_const) / max(1, s.n_decay))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _prep(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.channels_last:
            out = {k: v.contiguous(memory_format=torch.channels_last) for k, v in out.items()}
        return out

    def _set_dis_grad(self, flag: bool) -> None:
        for name in self.net_names:
            if name.startswith("dis"):
                self.nets[name].requires_grad_(flag)

    @staticmethod
    def _run_batched(fn: Any, inputs: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Run ``fn`` once on the non-None inputs concatenated along the batch axis
        (instance norm is per sample, so this equals separate calls) and split back."""
        present = [x for x in inputs if x is not None]
        if not present:
            return [None] * len(inputs)
        y = fn(torch.cat(present, 0)) if len(present) > 1 else fn(present[0])
        parts = iter(torch.split(y, [x.shape[0] for x in present], 0))
        return [next(parts) if x is not None else None for x in inputs]

    # ----------------------------------------------------------------- steps
    def generator_step(self, batch: dict[str, torch.Tensor], sync: bool = True) -> dict[str, Any]:
        """One Adam step of the generators on the variant's terms; discriminators frozen.

        Returns the unweighted terms and ``G_total`` (the weighted sum): floats, or
        detached 0-d tensors with ``sync=False`` (no device synchronisation).
        Keeps the fakes for the following :meth:`discriminator_step`.
        """
        b = self._prep(batch)
        t = set(self.terms)
        ct_u, mr_u, ct_p, mr_p = b.get("ct_u"), b.get("mr_u"), b.get("ct_p"), b.get("mr_p")
        need_mr_u = bool(t & {"adv_mr_unpaired", "cyc_ct_unpaired"})
        need_ct_u = bool(t & {"adv_ct_unpaired", "cyc_mr_unpaired"})
        need_mr_p = bool(t & {"adv_mr_paired", "cyc_ct_paired", "l1_mr_paired"})
        need_ct_p = bool(t & {"adv_ct_paired", "cyc_mr_paired", "l1_ct_paired"})
        self._set_dis_grad(False)
        self.opt_g.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        try:
            with self._autocast():
                fake_mr_u = fake_mr_p = fake_ct_u = fake_ct_p = None
                if need_mr_u or need_mr_p:
                    fake_mr_u, fake_mr_p = self._run_batched(
                        self.fwd["syn_mr"], [ct_u if need_mr_u else None, ct_p if need_mr_p else None]
                    )
                if need_ct_u or need_ct_p:
                    fake_ct_u, fake_ct_p = self._run_batched(
                        self.fwd["syn_ct"], [mr_u if need_ct_u else None, mr_p if need_ct_p else None]
                    )
                # cycles: back through the other generator
                rec_ct_u, rec_ct_p = (None, None)
                if t & {"cyc_ct_unpaired", "cyc_ct_paired"}:
                    rec_ct_u, rec_ct_p = self._run_batched(
                        self.fwd["syn_ct"],
                        [fake_mr_u if "cyc_ct_unpaired" in t else None, fake_mr_p if "cyc_ct_paired" in t else None],
                    )
                rec_mr_u, rec_mr_p = (None, None)
                if t & {"cyc_mr_unpaired", "cyc_mr_paired"}:
                    rec_mr_u, rec_mr_p = self._run_batched(
                        self.fwd["syn_mr"],
                        [fake_ct_u if "cyc_mr_unpaired" in t else None, fake_ct_p if "cyc_mr_paired" in t else None],
                    )
                fakes: dict[str, torch.Tensor] = {}
                reals: dict[str, torch.Tensor] = {}
                if "adv_mr_unpaired" in t:
                    assert fake_mr_u is not None and mr_u is not None
                    fakes["mr_unpaired"], reals["mr_unpaired"] = fake_mr_u, mr_u
                    terms["adv_mr_unpaired"] = lsgan_loss(self.fwd["dis_mr"](fake_mr_u, "unpaired"), 1.0)
                if "adv_ct_unpaired" in t:
                    assert fake_ct_u is not None and ct_u is not None
                    fakes["ct_unpaired"], reals["ct_unpaired"] = fake_ct_u, ct_u
                    terms["adv_ct_unpaired"] = lsgan_loss(self.fwd["dis_ct"](fake_ct_u, "unpaired"), 1.0)
                if "adv_mr_paired" in t:
                    assert fake_mr_p is not None and ct_p is not None and mr_p is not None
                    pair_fake = torch.cat([ct_p.to(fake_mr_p.dtype), fake_mr_p], 1)
                    fakes["mr_paired"], reals["mr_paired"] = pair_fake, torch.cat([ct_p, mr_p], 1)
                    terms["adv_mr_paired"] = nll_gan_loss(self.fwd["dis_mr"](pair_fake, "paired"), 1.0)
                if "adv_ct_paired" in t:
                    assert fake_ct_p is not None and ct_p is not None and mr_p is not None
                    pair_fake = torch.cat([fake_ct_p, mr_p.to(fake_ct_p.dtype)], 1)
                    fakes["ct_paired"], reals["ct_paired"] = pair_fake, torch.cat([ct_p, mr_p], 1)
                    terms["adv_ct_paired"] = nll_gan_loss(self.fwd["dis_ct"](pair_fake, "paired"), 1.0)
                # the four cycles (reconstruction vs input) and the voxel-wise L1 on pairs
                l1_terms = {
                    "cyc_ct_unpaired": (rec_ct_u, ct_u),
                    "cyc_mr_unpaired": (rec_mr_u, mr_u),
                    "cyc_ct_paired": (rec_ct_p, ct_p),
                    "cyc_mr_paired": (rec_mr_p, mr_p),
                    "l1_mr_paired": (fake_mr_p, mr_p),
                    "l1_ct_paired": (fake_ct_p, ct_p),
                }
                for name, (estimate, target) in l1_terms.items():
                    if name in t:
                        terms[name] = l1_loss(estimate, target)  # type: ignore[arg-type]
            total = total_generator_loss(terms, self.settings.lambda_cycle, self.settings.gamma_l1)
            total.backward()
            self.opt_g.step()
            self.opt_g.zero_grad(set_to_none=True)  # free the gradients until the next step
        finally:
            self._set_dis_grad(True)
        self._fakes = {k: v.detach() for k, v in fakes.items()}
        self._reals = {k: v.detach() for k, v in reals.items()}
        out: dict[str, Any] = {k: terms[k].detach() for k in self.terms}
        out["G_total"] = total.detach()
        return {k: float(v) for k, v in out.items()} if sync else out

    def discriminator_step(self, sync: bool = True) -> dict[str, Any]:
        """One Adam step of the discriminators on the fakes of the last generator step.

        Each adversarial term contributes ``0.5 * (crit(D(real)) + crit(D(fake)))``;
        unpaired fakes (and paired ones with ``pool_paired``) come through the
        image pool. Returns the terms and ``D_total`` (floats, or 0-d tensors with
        ``sync=False``).
        """
        if not self.adv_terms or self.opt_d is None:
            return {}
        self.opt_d.zero_grad(set_to_none=True)
        dterms: dict[str, torch.Tensor] = {}
        with self._autocast():
            for term in self.adv_terms:
                dis, kind, key = ADV_TERMS[term]
                fake = self.pools[key].query(self._fakes[key], self.pool_rng)
                real = self._reals[key]
                scores = self.fwd[dis](torch.cat([real.to(fake.dtype), fake], 0), kind)
                pred_real, pred_fake = scores[:1], scores[1:]
                label = self.settings.unpaired_real_label if kind == "unpaired" else 1.0
                dterms[dis_term_name(term)] = discriminator_loss(pred_real, pred_fake, kind, label)
        total = dterms[dis_term_name(self.adv_terms[0])]
        for name in list(dterms)[1:]:
            total = total + dterms[name]
        total.backward()
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        out: dict[str, Any] = {k: v.detach() for k, v in dterms.items()}
        out["D_total"] = total.detach()
        return {k: float(v) for k, v in out.items()} if sync else out

    def step(self, batch: dict[str, torch.Tensor], sync: bool = True) -> dict[str, Any]:
        """One iteration: set the lr, generator step, discriminator step; returns all logged values
        (loss values as floats, or as 0-d device tensors with ``sync=False``; ``lr`` a float)."""
        lr = self.lr_at(self.iteration)
        if self._mark_steps:
            torch.compiler.cudagraph_mark_step_begin()
        for opt in (o for o in (self.opt_g, self.opt_d) if o is not None):
            for group in opt.param_groups:
                group["lr"] = lr
        values = self.generator_step(batch, sync)
        values.update(self.discriminator_step(sync))
        values["lr"] = lr
        self.iteration += 1
        return values

    def log_columns(self) -> list[str]:
        """Columns of one losses.tsv row after ``iteration`` (and before ``seconds``)."""
        cols = list(self.terms) + ["G_total"]
        if self.adv_terms:
            cols += [dis_term_name(t) for t in self.adv_terms] + ["D_total"]
        return cols + ["lr"]

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, pools, pool RNG and iteration (tensors on CPU)."""
        return {
            "iteration": self.iteration,
            "nets": {k: {n: t.detach().cpu() for n, t in v.state_dict().items()} for k, v in self.nets.items()},
            "opt_g": to_cpu(self.opt_g.state_dict()),
            "opt_d": to_cpu(self.opt_d.state_dict()) if self.opt_d is not None else {},
            "pools": {k: p.state_dict() for k, p in self.pools.items()},
            "pool_rng": self.pool_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        for k, net in self.nets.items():
            net.load_state_dict(state["nets"][k])
        self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], self.device)
        self.pool_rng.bit_generator.state = state["pool_rng"]


def _validation_due(history: list[dict[str, float]], it: int, total: int, val_every: int) -> bool:
    """Validate on the row of iteration ``it``: the last one, or the first row at or after
    a multiple of ``val_every`` not yet validated (``history``: the rows logged before)."""
    if it == total:
        return True
    last = max((int(r["iteration"]) for r in history if "val_mae" in r), default=0)
    return it // val_every > last // val_every


@contextlib.contextmanager
def _file_log(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    old_level = log.level
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(old_level)


@contextlib.contextmanager
def torch_runtime(settings: TrainSettings, device: torch.device) -> Iterator[None]:
    """Thread count, deterministic CPU algorithms, CUDA speed flags; restored afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------- train


def train(
    settings: TrainSettings,
    slice_files: Sequence[Path],
    out_dir: Path,
    variant: str,
    device: str = "auto",
    resume: bool = True,
    max_iterations_this_run: int | None = None,
    _fail_after: int | None = None,
    val_files: Sequence[Path] = (),
    roles: Mapping[str, str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``variant`` on ``slice_files``; write the model folder ``out_dir``.

    ``device``: ``auto`` uses ``settings.device`` (whose own ``auto`` = CUDA if
    available); anything else overrides it. ``resume``: continue from a matching
    ``out_dir/checkpoint.pt`` (a checkpoint of other settings is moved to
    ``out_dir/superseded/`` and training starts over: :func:`checkpoint_to_resume`);
    with False an existing checkpoint is an error.
    ``max_iterations_this_run``: stop after that many iterations, writing a
    checkpoint but no final outputs (call again to continue). ``_fail_after``:
    test hook raising RuntimeError after that many iterations in this call,
    without a checkpoint (a simulated kill). ``val_files``: validation slice files
    (``paired_val``), scored every ``settings.val_every`` iterations into
    losses.tsv (:mod:`ct2mr.training.validation`). ``roles``: patient id -> role in this
    job, overriding the files' own (a cross-validation fold: :func:`ct2mr.training.folds.fold_roles`).
    ``preprocessing``: the preprocessing the slice files were made with, checked
    (:func:`ct2mr.models.model_folder.check_preprocessing`) before training and recorded in
    ``model.json`` (``preprocessing``) for ``ct2mr predict``; None records none.

    Returns a summary dict (``iteration``, ``finished``, ``seconds``, ``out_dir``).
    Raises :class:`InputError` for an unknown variant, missing data, or a
    checkpoint that is corrupt (left in place).
    """
    if variant not in VARIANT_TERMS:
        raise InputError(None, "variant", f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    out_dir = Path(out_dir)
    if preprocessing is not None:
        preprocessing = check_preprocessing(dict(preprocessing), None)
    slice_files = [Path(p) for p in slice_files]
    dev = resolve_device(device if device != "auto" else settings.device)
    ckpt_path = out_dir / "checkpoint.pt"
    pools = build_pools(slice_files, settings.image_size, settings.unpaired_includes_paired, roles)
    needs = data_for(variant)
    check_pools(pools, variant, needs, slice_files, settings.unpaired_includes_paired)
    data = data_hash(slice_files)
    ckpt = checkpoint_to_resume(ckpt_path, variant, settings, resume, data)
    validator = None
    if val_files:
        from ct2mr.training.validation import Validator

        validator = Validator([Path(p) for p in val_files], settings.image_size, dev)
        trained_on = {p for ids in pools.patients.values() for p in ids}
        both = sorted(trained_on & set(validator.patient_ids))
        if both:
            raise InputError(None, "--val-slices", f"patient(s) {', '.join(both)} are also training data: "
                             "a validation patient must be held out")
    out_dir.mkdir(parents=True, exist_ok=True)
    # a run in progress must not look finished: drop the final outputs of an earlier run
    for name in ("syn_mr.pt", "syn_ct.pt", "model.json"):
        (out_dir / name).unlink(missing_ok=True)

    with _file_log(out_dir / "train.log"), torch_runtime(settings, dev), contextlib.ExitStack() as stack:
        aug = AugmentConfig(
            size=settings.image_size,
            pad_to=settings.effective_pad_to,
            flip_prob=settings.flip_prob,
            max_rotation_deg=settings.max_rotation_deg,
            enabled=settings.augment,
        )
        trainer = Trainer(settings, variant, dev)
        # pools resident on the device, augmentation batched there (same draws as Sampler)
        sampler = BatchedSampler(pools, needs, aug, settings.seed, dev)
        history: list[dict[str, float]] = []
        acc: dict[str, float] = {}
        acc_n = 0
        elapsed = 0.0
        if ckpt is not None:
            trainer.load_state_dict(ckpt["trainer"])
            sampler.rng.bit_generator.state = ckpt["sampler_rng"]
            set_rng_state(ckpt["rng"])
            history = list(ckpt["history"])
            acc, acc_n, elapsed = dict(ckpt["acc"]), int(ckpt["acc_n"]), float(ckpt["elapsed_s"])
            log.info("resuming %s from %s at iteration %d", variant, ckpt_path, trainer.iteration)
        else:
            random.seed(settings.seed)
            np.random.seed(settings.seed)
            torch.manual_seed(settings.seed)
        total = settings.total_iterations
        columns = trainer.log_columns()
        if validator is not None:
            from ct2mr.training.validation import VAL_COLUMNS

            columns += list(VAL_COLUMNS)
        loss_columns = [c for c in columns if not c.startswith("val_")]
        counts = {p: pools.count(p) for p in needs}
        log.info(
            "training %s on %s: %d iterations, image %d, ngf %d, ndf %d, blocks %d, slices %s, settings %s",
            variant, dev, total, settings.image_size, settings.ngf, settings.ndf, settings.n_blocks, counts,
            settings_hash(settings),
        )

        def extra() -> dict[str, Any]:
            return {
                "data_hash": data,
                "history": history,
                "acc": {k: float(v) for k, v in acc.items()},
                "acc_n": acc_n,
                "elapsed_s": elapsed + (time.perf_counter() - t0),
            }

        # on resume, hide the events an interrupted run logged after its checkpoint
        purge = trainer.iteration + 1 if ckpt is not None else None
        writer = open_writer(out_dir / "tensorboard", purge_step=purge) if settings.tensorboard else None
        stack.callback(lambda: writer.close() if writer is not None else None)
        preview = _preview_images(pools, dev) if writer is not None and settings.image_log_every else None
        t0 = time.perf_counter()
        start_it = trainer.iteration
        done_this_run = 0
        while trainer.iteration < total:
            values = trainer.step(sampler.draw(), sync=False)  # losses stay on the device until logged
            for k in loss_columns:
                acc[k] = acc.get(k, 0.0) + values[k]
            acc_n += 1
            done_this_run += 1
            it = trainer.iteration
            if it % settings.log_every == 0 or it == total:
                now = time.perf_counter() - t0
                row = {"iteration": float(it), **{k: float(acc[k]) / acc_n for k in loss_columns}, "seconds": elapsed + now}
                row["lr"] = values["lr"]
                if validator is not None and _validation_due(history, it, total, settings.val_every):
                    row.update(validator.score(trainer.nets["syn_mr"]))  # logged only: never picks the weights
                history.append(row)
                acc, acc_n = {}, 0
                rate = (it - start_it) / now if now > 0 else float("nan")
                eta = (total - it) / rate if rate > 0 else float("nan")
                log_scalars(writer, row, it, rate)
                log.info(
                    "%s it %d/%d (%.1f%%) | %.2f it/s | ETA %s | G %.4g%s | lr %.3g%s",
                    variant, it, total, 100 * it / total, rate, _fmt_s(eta) if math.isfinite(eta) else "?",
                    row["G_total"], f" D {row['D_total']:.4g}" if "D_total" in row else "", row["lr"],
                    f" | val MAE {row['val_mae']:.3g} (head {row['val_mae_head']:.3g})" if "val_mae" in row else "",
                )
            if preview is not None and (it % settings.image_log_every == 0 or it == total):
                log_images(writer, preview_grids(trainer.nets, *preview), it)
            if _fail_after is not None and done_this_run >= _fail_after:
                raise RuntimeError(f"simulated interruption after iteration {it}")
            stop_now = max_iterations_this_run is not None and done_this_run >= max_iterations_this_run
            if it % settings.checkpoint_every == 0 or it == total or stop_now:
                write_checkpoint(ckpt_path, trainer, sampler, extra())
                write_text(out_dir / "losses.tsv", losses_tsv(columns, history))
            if stop_now and it < total:
                log.info("stopping after %d iterations this run (checkpoint at %d)", done_this_run, it)
                return {"iteration": it, "finished": False, "seconds": extra()["elapsed_s"], "out_dir": str(out_dir)}

        seconds = extra()["elapsed_s"]
        write_text(out_dir / "losses.tsv", losses_tsv(columns, history))
        plot_losses(out_dir / "loss_curve.png", columns, history, f"{variant}: {settings.image_size}px, {total} iterations")
        info = {
            "variant": variant,
            "architecture": settings.architecture(),
            "image_size": settings.image_size,
            "networks": list(trainer.net_names),
            "loss_terms": list(trainer.terms),
            "settings": settings.to_dict(),
            "settings_hash": settings_hash(settings),
            "iterations": total,
            "training_seconds": round(seconds, 3),
            "device": str(dev),
            "torch_version": torch.__version__,
            "slice_files": [str(p) for p in slice_files],
            "patients": pools.patients,
            "slices_per_pool": counts,
            "final_losses": {k: history[-1][k] for k in columns if k in history[-1]} if history else {},
            "validation_patients": validator.patient_ids if validator is not None else [],
            "weights": {"syn_mr": "syn_mr.pt", **({"syn_ct": "syn_ct.pt"} if "syn_ct" in trainer.nets else {})},
            "value_range": "inputs and outputs in [-1, 1] = uint8 / 127.5 - 1",
            **({"preprocessing": preprocessing} if preprocessing is not None else {}),
        }
        if "syn_ct" in trainer.nets:
            _save_state(out_dir / "syn_ct.pt", trainer.nets["syn_ct"])
        write_json(out_dir / "model.json", info)
        _save_state(out_dir / "syn_mr.pt", trainer.nets["syn_mr"])  # last: marks a finished run
        log.info("finished %s: %d iterations in %s -> %s", variant, total, _fmt_s(seconds), out_dir)
        return {"iteration": total, "finished": True, "seconds": seconds, "out_dir": str(out_dir)}


def _preview_images(pools: SlicePools, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed slice of the TensorBoard image grids: first paired (CT, MR), else first unpaired CT."""
    if pools.count("paired"):
        ct, mr = pools.paired_ct[0], pools.paired_mr[0]
        return to_unit_range(ct)[None, None].to(device), to_unit_range(mr)[None, None].to(device)
    return to_unit_range(pools.ct_unpaired[0])[None, None].to(device), None


def _save_state(path: Path, net: nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_torch(state, path, suffix=".pt.tmp")
