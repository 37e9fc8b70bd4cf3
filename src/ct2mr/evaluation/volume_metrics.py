"""3D metrics and tissue-segmentation agreement of one synthetic MR volume (``ct2mr evaluate-volume``).

One job per variant x seed x volume test patient. Inputs, all on the CT's 1 mm grid
(``results/preprocessed/{patient}/``), arrays ``(z, y, x)`` with z the axial axis:

* the real MR, registered and normalised: ``mr_norm.nii.gz`` (uint8 0..255, the scale the 2D
  slices are cut from);
* the synthetic MR ``results/synth/{variant}/seed{seed}/{patient}_mr.nii.gz`` (uint8 0..255,
  0 outside the synthesized slices);
* the CT's head and brain masks (``ct_head_mask.nii.gz``, ``ct_brain_mask.nii.gz``: the masks
  of the 2D ``*_head`` / ``*_brain`` metrics);
* the slice file ``results/slices/{patient}.npz``: its ``z_index`` are the axial slices the model
  synthesized. Every mask is restricted to them (elsewhere the synthetic MR is 0 by construction,
  not by the model);
* with segmentation on: the real MR's tissue labels (``ct2mr segment-tissues``, one job per patient).

Columns (:data:`VOLUME_COLUMNS`; grey levels on the fixed scale 0..``data_range``, both volumes
clipped to it, :mod:`ct2mr.evaluation.metrics3d`):

* ``mae_3d_head``: mean |syn - real| inside the head mask, grey levels, [0, 255].
* ``psnr_3d_head``: ``10 log10(data_range^2 / MSE)`` inside the head mask, dB (inf if identical).
* ``ms_ssim_3d_head``: masked 3D MS-SSIM inside the head mask as SynthRAD 2025 computes it
  (``variant="synthrad2025"``), [0, 1].
* ``slice_jump_brain``: mean |(syn[z+1] - syn[z]) - (real[z+1] - real[z])| over z-neighbour pairs
  inside the brain mask, grey levels, [0, 510]: the steps a slice-by-slice model adds.
* ``dice_csf``, ``dice_gm``, ``dice_wm``: Dice of each tissue class (ANTs Atropos, 3 classes inside
  the brain mask, :mod:`ct2mr.evaluation.tissue_segmentation`) between the synthetic and the real
  MR's segmentation, [0, 1]; empty with segmentation off.
* ``hd95_gm``, ``hd95_wm``: 95th-percentile symmetric surface distance of grey / white matter, mm
  (on the segmentation grid); empty with segmentation off.

Output: a one-row TSV ``patient, variant, seed`` + :data:`VOLUME_COLUMNS` (``--output``), joined into
``per_patient.tsv`` by ``ct2mr evaluate --volume-metrics``; optionally the synthetic MR's tissue
labels (``--output-tissues``, for the tissue figure).

CLI::

    ct2mr evaluate-volume --patient P05 --variant mrgan --seed 0 \\
        --real results/preprocessed/P05/mr_norm.nii.gz --synth results/synth/mrgan/seed0/P05_mr.nii.gz \\
        --head-mask results/preprocessed/P05/ct_head_mask.nii.gz \\
        --brain-mask results/preprocessed/P05/ct_brain_mask.nii.gz --slices results/slices/P05.npz \\
        --output results/metrics/volume/mrgan/seed0/P05.tsv \\
        [--real-tissues results/tissues/real/P05.nii.gz --output-tissues results/tissues/mrgan/seed0/P05.nii.gz \\
         --contrast t2 --iterations 1 --mrf-smoothing 0.1 --mrf-radius 1 --downsample 1] [--data-range 255]
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.evaluation.metrics3d import mae_3d, ms_ssim_3d, psnr_3d, slice_jump
from ct2mr.evaluation.tissue_segmentation import (
    DEFAULT_SETTINGS,
    AtroposSettings,
    Contrast,
    add_settings_arguments,
    dice_per_class,
    hd95_per_class,
    kept_slices_mask,
    read_z_index,
    segment_kept,
    settings_of,
)
from ct2mr.io.atomic import write_text
from ct2mr.io.tables import read_tsv

log = logging.getLogger(__name__)

#: the 3D image metrics (every volume patient)
IMAGE_COLUMNS = ["mae_3d_head", "psnr_3d_head", "ms_ssim_3d_head", "slice_jump_brain"]
#: the segmentation agreement (segmentation on)
SEGMENTATION_COLUMNS = ["dice_csf", "dice_gm", "dice_wm", "hd95_gm", "hd95_wm"]
#: per_patient.tsv's volume columns, empty for patients without volumes (2D PNG pairs)
VOLUME_COLUMNS = IMAGE_COLUMNS + SEGMENTATION_COLUMNS
KEYS = ["patient", "variant", "seed"]


def image_metrics(
    real: np.ndarray, syn: np.ndarray, head: np.ndarray, brain: np.ndarray, data_range: float = 255.0
) -> dict[str, float]:
    """:data:`IMAGE_COLUMNS` of one patient: ``(z, y, x)`` volumes, masks already restricted to the kept slices."""
    return {
        "mae_3d_head": mae_3d(real, syn, head, data_range),
        "psnr_3d_head": psnr_3d(real, syn, head, data_range),
        "ms_ssim_3d_head": ms_ssim_3d(real, syn, head, data_range, variant="synthrad2025"),
        "slice_jump_brain": slice_jump(real, syn, brain, data_range),
    }


def segmentation_agreement(real_labels: sitk.Image, syn_labels: sitk.Image) -> dict[str, float]:
    """:data:`SEGMENTATION_COLUMNS` between two tissue label images on one grid (Dice; HD95 in mm)."""
    a = sitk.GetArrayFromImage(real_labels)
    b = sitk.GetArrayFromImage(syn_labels)
    if a.shape != b.shape:
        raise ValueError(f"tissue label grids differ: {a.shape} vs {b.shape} (segmented with other settings?)")
    d = dice_per_class(a, b)
    h = hd95_per_class(a, b, real_labels.GetSpacing()[::-1])
    return {"dice_csf": d["csf"], "dice_gm": d["gm"], "dice_wm": d["wm"], "hd95_gm": h["gm"], "hd95_wm": h["wm"]}


def evaluate_volume(
    real: sitk.Image, syn: sitk.Image, head_mask: sitk.Image, brain_mask: sitk.Image, z_index: Sequence[int],
    data_range: float = 255.0, real_labels: sitk.Image | None = None, contrast: Contrast = "t1",
    settings: AtroposSettings = DEFAULT_SETTINGS, downsample: int = 1,
) -> tuple[dict[str, float], sitk.Image | None, dict[str, float]]:
    """(:data:`VOLUME_COLUMNS` values, the synthetic MR's tissue labels or None, seconds per step).

    ``real_labels`` None: segmentation off (its columns NaN, no labels). The synthetic MR is
    segmented with the same ``contrast``, ``settings`` and ``downsample`` as the real one was; a
    synthetic MR that cannot be segmented (fewer than 3 grey levels or classes in the brain, e.g. a
    flat output) gets no tissue: Dice 0, HD95 empty, and a warning.
    """
    t = time.perf_counter()
    arrays = {}
    for name, img in (("real", real), ("syn", syn), ("head", head_mask), ("brain", brain_mask)):
        arrays[name] = sitk.GetArrayViewFromImage(img)
    shapes = {k: v.shape for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"volumes differ in shape: {shapes}")
    head = kept_slices_mask(arrays["head"], z_index)
    brain = kept_slices_mask(arrays["brain"], z_index)
    out: dict[str, float] = image_metrics(arrays["real"], arrays["syn"], head, brain, data_range)
    seconds = {"image_metrics": time.perf_counter() - t}
    syn_labels = None
    if real_labels is None:
        out.update({c: math.nan for c in SEGMENTATION_COLUMNS})
    else:
        t = time.perf_counter()
        try:
            syn_labels = segment_kept(syn, brain_mask, z_index, contrast, settings, downsample)
        except ValueError as exc:  # e.g. a flat synthetic MR (an untrained model): no tissue agrees
            log.warning("the synthetic MR cannot be segmented (%s): no tissue class, Dice 0", exc)
            syn_labels = sitk.Image(real_labels.GetSize(), sitk.sitkUInt8)
            syn_labels.CopyInformation(real_labels)
        seconds["segment_synthetic"] = time.perf_counter() - t
        t = time.perf_counter()
        out.update(segmentation_agreement(real_labels, syn_labels))
        seconds["dice_hd95"] = time.perf_counter() - t
    return out, syn_labels, seconds


def join_volume_metrics(per_patient: pd.DataFrame, tables: Sequence[str | Path]) -> pd.DataFrame:
    """``per_patient`` with :data:`VOLUME_COLUMNS` filled from the one-row TSVs of ``ct2mr evaluate-volume``.

    Rows without a volume table (2D PNG pairs) keep empty (NaN) cells. InputError for a table
    without the columns or one naming a patient x variant x seed that is not in ``per_patient``.
    """
    out = per_patient.copy()
    for c in VOLUME_COLUMNS:
        out[c] = math.nan
    if not tables:
        return out
    frames = []
    for path in tables:
        df = read_tsv(path, "volume metrics table")
        missing = [c for c in KEYS + VOLUME_COLUMNS if c not in df.columns]
        if missing:
            raise InputError(path, "header", f"missing column(s) {missing}: not written by `ct2mr evaluate-volume`")
        frames.append(df.assign(source_file=str(path)))
    vol = pd.concat(frames, ignore_index=True)
    vol["patient"] = vol["patient"].astype(str)
    vol["variant"] = vol["variant"].astype(str)
    vol["seed"] = vol["seed"].astype(int)
    index = {(str(r.patient), str(r.variant), int(r.seed)): i for i, r in enumerate(out[KEYS].itertuples(index=False))}
    for r in vol.itertuples(index=False):
        key = (r.patient, r.variant, int(r.seed))
        if key not in index:
            raise InputError(r.source_file, "patient", f"patient {key[0]}, variant {key[1]}, seed {key[2]} "
                                                   "is not a row of the per-patient table")
        for c in VOLUME_COLUMNS:
            out.iloc[index[key], out.columns.get_loc(c)] = float(getattr(r, c))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", required=True, help="patient id (the row's patient)")
    parser.add_argument("--variant", required=True, help="variant (the row's variant)")
    parser.add_argument("--seed", type=int, required=True, help="training seed (the row's seed)")
    parser.add_argument("--real", required=True, help="real MR on the CT grid, uint8 0..255 (mr_norm.nii.gz)")
    parser.add_argument("--synth", required=True, help="synthetic MR on the CT grid (results/synth/.../{patient}_mr.nii.gz)")
    parser.add_argument("--head-mask", required=True, help="head mask on the CT grid (ct_head_mask.nii.gz)")
    parser.add_argument("--brain-mask", required=True, help="brain mask on the CT grid (ct_brain_mask.nii.gz)")
    parser.add_argument("--slices", required=True, help="results/slices/{patient}.npz (z_index: the synthesized slices)")
    parser.add_argument("--output", required=True, help="one-row TSV: patient, variant, seed and the volume metrics")
    parser.add_argument("--data-range", type=float, default=255.0, help="fixed grey-level range (default 255)")
    parser.add_argument("--real-tissues", default=None,
                        help="the real MR's tissue labels (`ct2mr segment-tissues`); without: no segmentation")
    parser.add_argument("--output-tissues", default=None, help="write the synthetic MR's tissue labels here (.nii.gz)")
    add_settings_arguments(parser)


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import grid_difference, read_image, write_image  # noqa: PLC0415 - CLI only

    if not args.data_range > 0:
        raise InputError(None, "--data-range", f"must be > 0 (255 for 8-bit grey levels), got {args.data_range}")
    if args.output_tissues and not args.real_tissues:
        raise InputError(None, "--output-tissues", "needs --real-tissues (segmentation on)")
    settings = settings_of(args)
    images = {}
    for flag in ("real", "synth", "head_mask", "brain_mask"):
        images[flag] = read_image(getattr(args, flag))
    for flag in ("synth", "head_mask", "brain_mask"):
        diff = grid_difference(images["real"], images[flag])
        if diff:
            raise InputError(getattr(args, flag), "grid", f"differs from the real MR's {args.real}: {diff}")
    real_labels = read_image(args.real_tissues) if args.real_tissues else None
    z_index = read_z_index(args.slices)
    try:
        values, syn_labels, seconds = evaluate_volume(
            images["real"], images["synth"], images["head_mask"], images["brain_mask"], z_index,
            args.data_range, real_labels, args.contrast, settings, args.downsample)
    except ValueError as exc:
        raise InputError(args.synth, None, f"cannot evaluate: {exc}") from None
    if args.output_tissues and syn_labels is not None:
        write_image(syn_labels, args.output_tissues)
    row: dict[str, Any] = {"patient": args.patient, "variant": args.variant, "seed": args.seed, **values}
    table = pd.DataFrame([row], columns=KEYS + VOLUME_COLUMNS)  # per_patient.tsv's format: 6 digits, NaN empty
    write_text(args.output, table.to_csv(sep="\t", index=False, float_format="%.6g", na_rep=""))
    log.info("%s", "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    log.info("seconds: %s", "  ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
