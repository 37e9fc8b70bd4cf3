"""Syn_MR on a patient's CT slices, put back into the CT's 3D grid.

Input: a slice file ``results/slices/{patient}.npz`` (contract in
DEVELOPING.md; only its ``ct`` key and the reference-grid keys are used) and a
model folder ``results/models/{variant}/seed{seed}/`` (see :mod:`ct2mr.models.model_folder`).

Processing: the uint8 CT slices (N, 256, 256) become ``x / 127.5 - 1`` in
[-1, 1]; if the model's ``image_size`` is not 256 they are resized to it
exactly as in training (area averaging, rounded to uint8) and the outputs
resized back to 256 (bilinear). Batches of
``batch_size`` slices run under ``torch.inference_mode``, with bfloat16
autocast on CUDA (float32 on CPU). The tanh output ``y`` in [-1, 1] becomes
grey levels ``round((y + 1) * 127.5)`` clipped to uint8 0..255. For variants
with a Syn_CT the reconstructed CT ``Syn_CT(Syn_MR(CT))`` (Figure 7) is
computed from Syn_MR's unquantised output and stored on the same 0..255
windowed-CT scale.

Test-time augmentation (``--tta``, config ``synthesis.tta``, off by default):
Syn_MR's output is the mean of ``f(x)`` and ``flip(f(flip(x)))``, ``flip`` mirroring
the image's columns (the patient's left-right axis); twice the synthesis time. The
reconstructed CT is computed from that averaged MR.

Outputs (all written atomically):

* ``--out-mr``: synthesized MR volume, uint8 0..255, on the reference grid of
  the slice file (= ``results/preprocessed/{patient}/ct.nii.gz``: same size,
  spacing, origin, direction); voxels outside the kept slices / the 256 crop
  are 0.
* ``--out-recon-ct`` (optional, needs ``syn_ct.pt``): reconstructed CT
  volume, uint8 0..255 windowed-CT scale, same grid, background 0.
* ``--out-slices``: ``.npz`` with ``mr_syn`` uint8 (N, 256, 256), optional
  ``ct_recon`` uint8 (N, 256, 256), and ``z_index`` int64 (N,), ``patient``,
  ``variant`` (str) copied for consistency checks by ``ct2mr evaluate``.

CLI::

    ct2mr synthesize --model results/models/mrgan/seed0 --slices results/slices/P05.npz \\
        --out-mr results/synth/mrgan/seed0/P05_mr.nii.gz \\
        --out-slices results/synth/mrgan/seed0/P05_slices.npz \\
        [--out-recon-ct results/synth/mrgan/seed0/P05_recon_ct.nii.gz] \\
        [--batch-size 16] [--device auto] [--tta]

A patient without an MR is fine here (only its CT is used); a slice file
without CT (``mr_only``) is an InputError.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_npz
from ct2mr.models.apply import synthesize_slices
from ct2mr.models.model_folder import LoadedModel, load_ensemble

log = logging.getLogger(__name__)



def synthesize_patient(
    model: LoadedModel | Sequence[LoadedModel], slices: dict[str, Any], batch_size: int = 16,
    source: str | Path | None = None, tta: bool = False,
) -> dict[str, np.ndarray | None]:
    """Synthesize MR slices for one patient's slice dict (from ``ct2mr.preprocess.slices.load_slices``);
    several models: their ensemble (:func:`ct2mr.models.apply.synthesize_slices`).

    Raises InputError (naming ``source``) when the slices hold no CT.
    """
    if "ct" not in slices:
        pid = slices.get("patient", "?")
        raise InputError(source, "ct", f"patient {pid} has no CT slices: nothing to synthesize from")
    ct = np.asarray(slices["ct"])
    if ct.ndim != 3 or ct.shape[1] != ct.shape[2]:
        raise InputError(source, "ct", f"expected square slices (N, S, S) (S = slices.size, 256 by default), got {ct.shape}")
    return synthesize_slices(model, ct, batch_size=batch_size, tta=tta)


def _volume_image(arr: np.ndarray, slices: dict[str, Any]):  # noqa: ANN202
    from ct2mr.preprocess.slices import volume_image_from_slices

    img = volume_image_from_slices(arr, slices, fill=0)
    import SimpleITK as sitk

    return sitk.Cast(img, sitk.sitkUInt8) if img.GetPixelID() != sitk.sitkUInt8 else img


def write_slices_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    """Write a compressed ``.npz`` atomically."""
    write_npz(path, arrays)


def write_synthesis(
    slices: dict[str, Any],
    synth: dict[str, np.ndarray | None],
    variant: str,
    out_mr: str | Path | None,
    out_slices: str | Path | None,
    out_recon_ct: str | Path | None = None,
) -> None:
    """Write the synthesized volumes (reference grid) and the slice ``.npz`` (see module doc)."""
    from ct2mr.io.imageio import write_image

    if out_recon_ct is not None and synth.get("recon_ct_slices") is None:
        raise InputError(out_recon_ct, None, f"variant {variant} has no Syn_CT (syn_ct.pt): no reconstructed CT to write")
    if out_mr is not None:
        write_image(_volume_image(synth["mr_slices"], slices), out_mr)
    if out_recon_ct is not None:
        write_image(_volume_image(synth["recon_ct_slices"], slices), out_recon_ct)
    if out_slices is not None:
        arrays: dict[str, Any] = {
            "mr_syn": synth["mr_slices"],
            "z_index": np.asarray(slices.get("z_index", np.arange(len(synth["mr_slices"]))), np.int64),
            "patient": np.array(str(slices.get("patient", ""))),
            "variant": np.array(variant),
        }
        if synth.get("recon_ct_slices") is not None:
            arrays["ct_recon"] = synth["recon_ct_slices"]
        write_slices_npz(out_slices, arrays)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, nargs="+",
                        help="model folder results/models/{variant}/seed{seed}/ (model.json, syn_mr.pt[, syn_ct.pt]); "
                             "several: their ensemble (mean Syn_MR; e.g. a variant's seed or fold models)")
    parser.add_argument("--slices", required=True, help="patient slice file results/slices/{patient}.npz")
    parser.add_argument("--out-mr", required=True, help="synthesized MR volume (.nii.gz), uint8, on the CT's 1 mm grid")
    parser.add_argument("--out-slices", required=True, help="synthesized slices (.npz: mr_syn[, ct_recon], z_index)")
    parser.add_argument("--out-recon-ct", default=None, help="reconstructed CT Syn_CT(Syn_MR(CT)) volume (.nii.gz); variants with syn_ct.pt only")
    parser.add_argument("--batch-size", type=int, default=16, help="slices per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    parser.add_argument("--tta", action="store_true",
                        help="horizontal-flip test-time augmentation: mean of f(x) and flip(f(flip(x)))")


def run(args: argparse.Namespace) -> None:
    from ct2mr.preprocess.slices import load_slices

    if args.batch_size < 1:
        raise InputError(None, "--batch-size", f"must be >= 1, got {args.batch_size}")
    models = load_ensemble(args.model, device=args.device)
    if len(models) > 1 and args.out_recon_ct:
        raise InputError(args.out_recon_ct, None, "a reconstructed CT belongs to one model's cycle: give one --model")
    slices = load_slices(args.slices)
    t0 = time.perf_counter()
    synth = synthesize_patient(models, slices, batch_size=args.batch_size, source=args.slices, tta=args.tta)
    dt = time.perf_counter() - t0
    n = len(synth["mr_slices"])
    variant = models[0].variant
    log.info("%s %s: %d slices in %.2f s (%.1f ms/slice, %s%s%s)", variant, slices.get("patient", ""), n, dt,
             1000 * dt / max(n, 1), models[0].device, ", flip TTA" if args.tta else "",
             f", ensemble of {len(models)} models" if len(models) > 1 else "")
    write_synthesis(slices, synth, variant, args.out_mr, args.out_slices, args.out_recon_ct)
