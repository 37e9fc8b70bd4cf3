"""Per-patient QC flags and how the image metrics track tissue-segmentation agreement (``ct2mr qc``).

Input: ``results/metrics/per_patient.tsv`` (``ct2mr evaluate``; one row per patient x variant x
seed) and the MR brain-masking records ``results/preprocessed/{patient}/masking_qa_mr.json``
(``ct2mr prepare``: ``method_used`` and ``decision`` of ``skull_mask.mr_method``). Each patient's
values are first averaged over the seeds (:func:`ct2mr.evaluation.evaluate.seed_mean`).

``--qc`` (TSV, one row per patient x variant): ``patient, variant, mr_mask_method, mae_head,
mae_head_z, mean_dice, dice_drop, flags, note``:

* ``mae_head_z``: the patient's masked MAE (``mae_head``, grey levels) as a z-score among the
  variant's patients (``(x - mean) / sd``, sample sd); flag ``MAE z > 3`` above
  :data:`Z_LIMIT`. With n patients |z| cannot exceed (n - 1) / sqrt(n), so the flag needs 11+
  patients; empty with fewer than 3 patients or all values equal.
* ``mean_dice``: mean of ``dice_csf``, ``dice_gm``, ``dice_wm`` (0..1); ``dice_drop``: the
  variant's median ``mean_dice`` over patients minus the patient's; flag ``Dice drop > 0.1``
  above :data:`DICE_DROP`.
* ``mr_mask_method``: the MR brain-mask method the patient got (``deepbet`` / ``morphology``;
  ``-`` without a record, e.g. a 2D PNG pair).
* ``note``: why the volume columns are empty (no volume: a 2D PNG pair; segmentation off).

``--correlation`` (TSV, one row per image metric): ``metric, spearman_rho, n, n_patients`` -- the
Spearman rank correlation (``scipy.stats.spearmanr``) of the metric with ``mean_dice`` over every
patient x variant with both values (seed-averaged); ``n`` pairs from ``n_patients`` patients. A
metric where lower is better (MAE, slice jump) correlates negatively when it tracks Dice. Empty
with fewer than 3 pairs or a constant column. Descriptive only: no p-value, because the pairs are
not independent (each patient gives one pair per variant, and the patient is the unit of
evidence; a p-value over the pairs would overstate what the data carry).

CLI::

    ct2mr qc --per-patient results/metrics/per_patient.tsv \\
        --mask-qa results/preprocessed/P05/masking_qa_mr.json ... \\
        --qc results/metrics/qc.tsv --correlation results/metrics/dice_correlation.tsv
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ct2mr.errors import InputError
from ct2mr.evaluation.evaluate import seed_mean, to_tsv
from ct2mr.evaluation.volume_metrics import IMAGE_COLUMNS, SEGMENTATION_COLUMNS, VOLUME_COLUMNS
from ct2mr.io.atomic import write_text

log = logging.getLogger(__name__)

#: a patient's masked MAE z-score within its variant above this is flagged
Z_LIMIT = 3.0
#: a patient's mean Dice this far below its variant's median is flagged
DICE_DROP = 0.1
#: the image metrics correlated with the mean Dice (2D masked, then 3D)
CORRELATED = ["mae_head", "psnr_head", "ssim_head", *IMAGE_COLUMNS]
QC_COLUMNS = ["patient", "variant", "mr_mask_method", "mae_head", "mae_head_z", "mean_dice", "dice_drop", "flags",
              "note"]
CORRELATION_COLUMNS = ["metric", "spearman_rho", "n", "n_patients"]


def read_mask_methods(paths: Sequence[str | Path]) -> dict[str, str]:
    """patient (the JSON's folder name) -> ``method_used`` of each ``masking_qa_mr.json``."""
    out = {}
    for p in paths:
        p = Path(p)
        try:
            qa = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(p, None, f"cannot read as JSON: {exc}") from None
        if "method_used" not in qa:
            raise InputError(p, "method_used", "missing: not written by `ct2mr prepare` for an MR")
        out[p.parent.name] = str(qa["method_used"])
    return out


def mean_dice(df: pd.DataFrame) -> pd.Series:
    """Mean of the three tissue Dice columns per row (NaN where any is missing)."""
    return df[["dice_csf", "dice_gm", "dice_wm"]].astype(float).mean(axis=1, skipna=False)


def _zscores(x: pd.Series) -> pd.Series:
    v = x.astype(float)
    ok = v[np.isfinite(v)]
    sd = float(ok.std(ddof=1)) if len(ok) >= 3 else math.nan
    if not (sd > 0):
        return pd.Series(math.nan, index=x.index)
    return (v - float(ok.mean())) / sd


def _patient_variant_means(per_patient: pd.DataFrame) -> pd.DataFrame:
    """One row per patient x variant, seeds averaged, with every volume column (NaN where absent)."""
    df = seed_mean(per_patient)
    for c in VOLUME_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    return df


def qc_table(per_patient: pd.DataFrame, mask_methods: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The QC table (columns :data:`QC_COLUMNS`), one row per patient x variant, seeds averaged."""
    mask_methods = mask_methods or {}
    df = _patient_variant_means(per_patient)
    df["mean_dice"] = mean_dice(df)
    df["mae_head_z"] = df.groupby("variant", sort=False)["mae_head"].transform(_zscores)
    median = df.groupby("variant", sort=False)["mean_dice"].transform(lambda s: s.astype(float).median())
    df["dice_drop"] = median - df["mean_dice"]
    flags, notes = [], []
    for r in df.itertuples(index=False):
        f = []
        if r.mae_head_z > Z_LIMIT:
            f.append(f"MAE z > {Z_LIMIT:g}")
        if r.dice_drop > DICE_DROP:
            f.append(f"Dice drop > {DICE_DROP:g}")
        flags.append("; ".join(f))
        if all(not np.isfinite(getattr(r, c)) for c in IMAGE_COLUMNS):
            notes.append("no volume (a 2D slice pair): no 3D metrics, no segmentation")
        elif all(not np.isfinite(getattr(r, c)) for c in SEGMENTATION_COLUMNS):
            notes.append("segmentation off (evaluation.segmentation.enabled)")
        else:
            notes.append("")
    df["flags"] = flags
    df["note"] = notes
    df["mr_mask_method"] = [mask_methods.get(str(p), "-") for p in df["patient"]]
    return df[QC_COLUMNS].reset_index(drop=True)


def dice_correlation(per_patient: pd.DataFrame, metrics: Sequence[str] = CORRELATED) -> pd.DataFrame:
    """Spearman rho of each image metric with the mean Dice over patient x variant (seeds averaged).

    Descriptive: pairs of one patient are not independent, so no p-value is given.
    """
    from scipy.stats import spearmanr  # noqa: PLC0415

    df = _patient_variant_means(per_patient)
    dice = mean_dice(df).to_numpy(dtype=float)
    rows = []
    for m in metrics:
        if m not in df.columns:
            continue
        x = df[m].to_numpy(dtype=float)
        ok = np.isfinite(x) & np.isfinite(dice)
        n = int(ok.sum())
        rho = math.nan
        if n >= 3 and np.ptp(x[ok]) > 0 and np.ptp(dice[ok]) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho = float(spearmanr(x[ok], dice[ok]).statistic)
        n_patients = int(df.loc[ok, "patient"].nunique())
        rows.append({"metric": m, "spearman_rho": rho, "n": n, "n_patients": n_patients})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-patient", required=True, help="results/metrics/per_patient.tsv")
    parser.add_argument("--mask-qa", nargs="*", default=[],
                        help="masking_qa_mr.json of the volume test patients (the MR brain-mask method)")
    parser.add_argument("--qc", required=True, help="output TSV: one row per patient x variant, flags")
    parser.add_argument("--correlation", required=True, help="output TSV: Spearman rho of each metric with mean Dice")


def run(args: argparse.Namespace) -> None:
    from ct2mr.evaluation.comparisons import read_per_patient  # noqa: PLC0415

    per = read_per_patient(args.per_patient)
    qc = qc_table(per, read_mask_methods(args.mask_qa))
    corr = dice_correlation(per)
    write_text(args.qc, to_tsv(qc))
    write_text(args.correlation, to_tsv(corr))
    flagged = qc[qc["flags"] != ""]
    log.info("%d of %d patient x variant rows flagged", len(flagged), len(qc))
    for r in corr.itertuples(index=False):
        log.info("%s vs mean Dice: rho %.3f (n %d)", r.metric, r.spearman_rho, r.n)
