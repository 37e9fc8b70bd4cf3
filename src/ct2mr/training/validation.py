"""Validation during training: the ``paired_val`` patients' MAE, every ``val_every`` iterations.

A ``paired_val`` patient (patient table role) is preprocessed like a
``paired_test`` one (registered CT and MR, ``results/slices/{patient}.npz``) but
is neither trained on nor evaluated: :class:`Validator` synthesizes its MR with the
current Syn_MR exactly as ``ct2mr synthesize`` does (CT slices resized to the
model's ``image_size`` by area averaging, output resized back to 256 bilinearly
and rounded to uint8 grey levels 0..255; bf16 autocast on CUDA), and scores it
against the reference MR:

* ``val_mae``: mean absolute error over the whole slices (grey levels 0-255), the
  paper's convention;
* ``val_mae_head``: the same inside the head mask (SynthRAD-style).

Each is the mean over the validation patients of the patient's MAE pooled over all
its slices (as ``ct2mr evaluate``'s ``mae`` / ``mae_head``). The trainer logs them
in ``losses.tsv`` beside the losses so a user sees when the ranking between the
variants settles. They are never used to pick a checkpoint or the tested model:
the final weights are always those of the last iteration.

Scoring does not touch the training state: no random numbers are drawn, the
generator runs under ``torch.inference_mode`` and is put back in its previous
train/eval mode, so a run with validation gives the same weights as one without.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ct2mr.errors import InputError

log = logging.getLogger(__name__)

#: the columns a validation adds to losses.tsv
VAL_COLUMNS: tuple[str, ...] = ("val_mae", "val_mae_head")


@dataclass
class _ValPatient:
    patient: str
    ct: np.ndarray  # uint8 (N, S, S)
    mr: np.ndarray  # uint8 (N, S, S)
    head: np.ndarray  # bool (N, S, S)


class Validator:
    """Scores a Syn_MR on validation slice files (see the module docstring).

    ``slice_files``: ``results/slices/{patient}.npz`` with ``ct``, ``mr`` and
    ``head_mask`` (role ``paired_val``, though any paired file is accepted);
    ``image_size``: the model's input size [pixels]; ``device``: where the
    generator lives; ``batch_size``: slices per forward pass.
    Raises :class:`InputError` for a file without CT or MR, or no files.
    """

    def __init__(self, slice_files: Sequence[Path], image_size: int, device: torch.device, batch_size: int = 16) -> None:
        from ct2mr.preprocess.slices import load_slices

        if not slice_files:
            raise InputError(None, "--val-slices", "no validation slice files given")
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.patients: list[_ValPatient] = []
        for path in map(Path, slice_files):
            d = load_slices(path)
            for key in ("ct", "mr"):
                if key not in d:
                    raise InputError(path, key, f"missing: a validation patient needs CT and MR slices (role {d.get('role', '?')})")
            head = np.asarray(d["head_mask"], bool) if "head_mask" in d else np.ones(np.shape(d["mr"]), bool)
            self.patients.append(_ValPatient(str(d.get("patient", path.stem)), np.asarray(d["ct"]), np.asarray(d["mr"]), head))

    @property
    def patient_ids(self) -> list[str]:
        return [p.patient for p in self.patients]

    def score(self, syn_mr: nn.Module) -> dict[str, float]:
        """``{"val_mae": ..., "val_mae_head": ...}`` (grey levels 0-255) of ``syn_mr`` now."""
        from ct2mr.models.apply import synthesize_slices
        from ct2mr.models.model_folder import LoadedModel

        was_training = syn_mr.training
        syn_mr.eval()
        try:
            model = LoadedModel(syn_mr=syn_mr, syn_ct=None, info={}, device=self.device, model_dir=Path("."),
                                image_size=self.image_size)
            whole, head = [], []
            for p in self.patients:
                syn = synthesize_slices(model, p.ct, batch_size=self.batch_size, cycle=False)["mr_slices"]
                err = np.abs(syn.astype(np.int16) - p.mr.astype(np.int16)).astype(np.float64)
                whole.append(float(err.mean()))
                head.append(float(err[p.head].mean()) if p.head.any() else float("nan"))
        finally:
            syn_mr.train(was_training)
        return {"val_mae": float(np.mean(whole)), "val_mae_head": float(np.nanmean(head)) if np.isfinite(head).any() else float("nan")}
