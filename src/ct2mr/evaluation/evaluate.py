"""Per-patient evaluation of synthesized MR and the paper's Table 1.

For each test patient (slice file ``results/slices/{patient}.npz`` with ``mr``,
``head_mask``, ``brain_mask``), each variant and each training seed, the
synthesized slices are read from ``{synth_dir}/{variant}/seed{seed}/{patient}_slices.npz``
(key ``mr_syn``, written by ``ct2mr synthesize``; without ``--seeds``: from
``{synth_dir}/{variant}/{patient}_slices.npz``, reported as seed 0) and compared with the reference MR slices using
:func:`ct2mr.evaluation.metrics.patient_metrics` (grey levels 0..255, both clipped to
[0, data_range]):

* ``mae``, ``psnr``, ``ssim``: over the whole 256x256 slices (the paper's
  convention). MAE = mean absolute error pooled over every pixel of all the
  patient's slices; PSNR (dB, data range 255) from the MSE pooled the same way;
  SSIM = mean of per-slice SSIM (scikit-image, 7x7 window).
* ``mae_head``, ``psnr_head``, ``ssim_head``: the same restricted to the head
  mask (SynthRAD-like: background excluded).
* ``mae_brain``, ``psnr_brain``, ``ssim_brain``: restricted to the brain mask.
* ``psnr_paper_convention`` = ``psnr`` + 20*log10(255) (48.13 dB): the paper's
  code used 20*log10(65025); use this column ONLY to compare with the paper's
  ~65 dB numbers.

Outputs (TSV, tab separated, written atomically; floats with 6 significant
digits, ``inf`` for identical images, empty cell for not available):

``--per-patient``: one row per patient x variant x seed:
    ``patient, variant, seed, fold, n_slices, mae, psnr, ssim, psnr_paper_convention,
    mae_head, psnr_head, ssim_head, mae_brain, psnr_brain, ssim_brain``, then the volume
    columns of :mod:`ct2mr.evaluation.volume_metrics` (``mae_3d_head, psnr_3d_head,
    ms_ssim_3d_head, slice_jump_brain, dice_csf, dice_gm, dice_wm, hd95_gm, hd95_wm``: 3D metrics on
    the CT grid and tissue-segmentation agreement, joined from ``--volume-metrics``; empty for
    patients without volumes, such as 2D PNG pairs, and the Dice / HD95 ones with segmentation
    off). ``fold``: the
    patient's cross-validation fold (``--folds results/metrics/folds.tsv``: its model never saw
    it), empty without cross-validation.

``--summary`` (Table 1 summary, transposed to one row per metric and seed):
    ``metric, seed`` then, for each variant V in the order given: ``V`` (the text
    ``"mean ± sd"``, 2 decimals, 4 for SSIM), ``V_mean``, ``V_sd`` (sample sd over
    patients, ddof=1; empty with one patient), ``V_n`` (patients), ``V_seeds``
    (seeds), ``V_sd_seeds`` (sample sd over seeds of the per-seed means; empty with
    one seed). The rows of seed ``all`` come first: each patient's values averaged
    over the seeds, then mean ± sd over patients. With several seeds, one row per
    metric and seed follows (mean ± sd over patients for that seed). Metrics in the
    per-patient column order.

Whether one variant beats another is decided in one place, with the patient as the
unit: ``ct2mr compare`` (:mod:`ct2mr.evaluation.comparisons`), from ``--per-patient``.

``--table1`` (optional): the paper's Table 1 layout: one row per patient (values
averaged over the seeds) plus a final ``mean ± sd`` (over patients) row; columns ``patient``, ``mae_{V}`` for each variant, then
``psnr_{V}``, then ``psnr_paper_{V}`` (paper convention).

CLI::

    ct2mr evaluate --slices results/slices/P05.npz results/slices/P06.npz \\
        --synth-dir results/synth --variants paired unpaired mrgan --seeds 0 1 2 \\
        --per-patient results/metrics/per_patient.tsv \\
        --summary results/metrics/summary.tsv \\
        [--table1 results/metrics/table1.tsv] [--folds results/metrics/folds.tsv] [--data-range 255] \\
        [--volume-metrics results/metrics/volume/mrgan/seed0/P05.tsv ...]

The patient id is the slice file's name without ``.npz`` (the Snakemake
``{patient}`` wildcard). A patient without an MR cannot be evaluated: InputError.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ct2mr.errors import InputError
from ct2mr.evaluation.metrics import patient_metrics
from ct2mr.evaluation.volume_metrics import VOLUME_COLUMNS, join_volume_metrics
from ct2mr.io.atomic import write_text
from ct2mr.training.folds import read_folds

log = logging.getLogger(__name__)

METRIC_COLUMNS = [
    "mae", "psnr", "ssim", "psnr_paper_convention",
    "mae_head", "psnr_head", "ssim_head",
    "mae_brain", "psnr_brain", "ssim_brain",
    *VOLUME_COLUMNS,
]
PER_PATIENT_COLUMNS = ["patient", "variant", "seed", "fold", "n_slices", *METRIC_COLUMNS]
#: the ``seed`` value of summary / test rows over all seeds (per-patient values averaged over seeds)
ALL_SEEDS = "all"


def load_npz(path: str | Path) -> dict[str, Any]:
    """Load an ``.npz`` into a dict (0-d string arrays become str), InputError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, Any] = {}
            for k in z.files:
                v = z[k]
                out[k] = str(v) if v.dtype.kind == "U" and v.ndim == 0 else v
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # truncated / empty / corrupt files (an interrupted copy): name the file, no traceback
        raise InputError(path, None, f"cannot read as .npz: {exc}") from exc
    return out


def _load_slice_file(path: str | Path) -> dict[str, Any]:
    try:
        from ct2mr.preprocess.slices import load_slices
    except ImportError:  # pragma: no cover - slices.py always present in the package
        return load_npz(path)
    return load_slices(path)


def evaluate_patient(
    slices: dict[str, Any],
    synth: dict[str, Any],
    data_range: float = 255.0,
    source: str | Path | None = None,
    synth_source: str | Path | None = None,
) -> dict[str, float]:
    """Metrics of one patient's synthesized slices (``synth["mr_syn"]``) vs ``slices["mr"]``.

    Returns the dict of :func:`ct2mr.evaluation.metrics.patient_metrics` (``n_slices``,
    ``mae``... see module docstring). InputError when the patient has no MR or
    the synthesized slices do not match the slice file (count, z indices).
    """
    pid = slices.get("patient", Path(source).stem if source else "?")
    if "mr" not in slices:
        role = slices.get("role", "?")
        raise InputError(source, "mr", f"patient {pid} ({role}) has no MR: cannot evaluate")
    if "mr_syn" not in synth:
        raise InputError(synth_source, "mr_syn", "missing: not a file written by `ct2mr synthesize`")
    ref = np.asarray(slices["mr"])
    syn = np.asarray(synth["mr_syn"])
    if ref.shape != syn.shape:
        raise InputError(
            synth_source, "mr_syn",
            f"shape {syn.shape} differs from the reference MR slices {ref.shape} of {source}: re-run synthesis",
        )
    if "z_index" in slices and "z_index" in synth and not np.array_equal(slices["z_index"], synth["z_index"]):
        raise InputError(synth_source, "z_index", f"slice positions differ from {source}: re-run synthesis")
    return patient_metrics(
        syn, ref, head_mask=slices.get("head_mask"), brain_mask=slices.get("brain_mask"), data_range=data_range
    )


def synth_path(synth_dir: str | Path, variant: str, patient: str, seed: int | None) -> Path:
    """``{synth_dir}/{variant}/seed{seed}/{patient}_slices.npz`` (``seed`` None: no seed folder)."""
    base = Path(synth_dir) / variant
    return (base if seed is None else base / f"seed{seed}") / f"{patient}_slices.npz"


def evaluate_all(
    slice_files: Sequence[str | Path],
    synth_dir: str | Path,
    variants: Sequence[str],
    data_range: float = 255.0,
    seeds: Sequence[int] | None = None,
    folds: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Per-patient x variant x seed metrics table (columns :data:`PER_PATIENT_COLUMNS`).

    ``seeds`` None: the flat layout ``{synth_dir}/{variant}/{patient}_slices.npz``, seed 0.
    ``folds``: patient -> cross-validation fold (:func:`ct2mr.training.folds.read_folds`); a test
    patient missing from it is an error (its model could have seen it).
    """
    rows = []
    for sf in slice_files:
        sf = Path(sf)
        slices = _load_slice_file(sf)
        patient = sf.name.removesuffix(".npz")
        if folds is not None and patient not in folds:
            raise InputError(sf, "fold", f"patient {patient} is in no cross-validation fold of the folds table")
        fold = folds[patient] if folds is not None else None
        if "mr" not in slices:  # fail before reading any synthesis
            evaluate_patient(slices, {"mr_syn": None}, source=sf)
        for variant in variants:
            for seed in (seeds if seeds is not None else [None]):
                sp = synth_path(synth_dir, variant, patient, seed)
                synth = load_npz(sp)
                m = evaluate_patient(slices, synth, data_range=data_range, source=sf, synth_source=sp)
                rows.append({"patient": patient, "variant": variant, "seed": 0 if seed is None else int(seed),
                             "fold": fold, **m})
    df = pd.DataFrame(rows, columns=PER_PATIENT_COLUMNS)
    return df


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "inf" if math.isinf(x) and x > 0 else ("-inf" if math.isinf(x) else f"{x:.6g}")
    return str(x)


def to_tsv(df: pd.DataFrame) -> str:
    """Tab-separated text with the formatting described in the module docstring."""
    buf = io.StringIO()
    buf.write("\t".join(df.columns) + "\n")
    for row in df.itertuples(index=False):
        buf.write("\t".join(_fmt(v) for v in row) + "\n")
    return buf.getvalue()


def _mean_sd(values: pd.Series) -> tuple[float, float, int]:
    v = values.astype(float).dropna()
    n = int(len(v))
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if n > 1 else math.nan
    return mean, sd, n


def _pm(metric: str, mean: float, sd: float) -> str:
    if math.isnan(mean):
        return ""
    d = 4 if metric.startswith(("ssim", "ms_ssim", "dice")) else 2
    if math.isinf(mean):
        return "inf"
    return f"{mean:.{d}f} ± {sd:.{d}f}" if not math.isnan(sd) else f"{mean:.{d}f}"


def seed_mean(per_patient: pd.DataFrame) -> pd.DataFrame:
    """Each patient x variant's metrics averaged over the seeds (one row per patient x variant).

    Non-finite values (e.g. an infinite PSNR) make the mean non-finite, as they should.
    """
    cols = [c for c in METRIC_COLUMNS if c in per_patient.columns]
    df = per_patient.copy()
    df[cols] = df[cols].astype(float)
    keys = ["patient", "variant"]
    out = df.groupby(keys, sort=False)[cols].mean().reset_index()
    return out


def _seeds(per_patient: pd.DataFrame) -> list[Any]:
    return list(dict.fromkeys(per_patient["seed"])) if "seed" in per_patient.columns else [0]


def summary_table(per_patient: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Rows = (metric, seed); columns ``metric``, ``seed`` + per variant ``V``, ``V_mean``,
    ``V_sd``, ``V_n``, ``V_seeds``, ``V_sd_seeds`` (see the module docstring)."""
    seeds = _seeds(per_patient)
    if "seed" not in per_patient.columns:
        per_patient = per_patient.assign(seed=0)
    averaged = seed_mean(per_patient)
    rows = []
    for metric in METRIC_COLUMNS:
        row: dict[str, Any] = {"metric": metric, "seed": ALL_SEEDS}
        for v in variants:
            mean, sd, n = _mean_sd(averaged.loc[averaged["variant"] == v, metric])
            per_seed = per_patient.loc[per_patient["variant"] == v].groupby("seed")[metric].apply(
                lambda x: float(x.astype(float).mean()))
            _, sd_seeds, n_seeds = _mean_sd(per_seed)
            row[v] = _pm(metric, mean, sd)
            row[f"{v}_mean"], row[f"{v}_sd"], row[f"{v}_n"] = mean, sd, n
            row[f"{v}_seeds"], row[f"{v}_sd_seeds"] = n_seeds, sd_seeds
        rows.append(row)
    if len(seeds) > 1:
        for metric in METRIC_COLUMNS:
            for seed in seeds:
                row = {"metric": metric, "seed": seed}
                for v in variants:
                    sel = (per_patient["variant"] == v) & (per_patient["seed"] == seed)
                    mean, sd, n = _mean_sd(per_patient.loc[sel, metric])
                    row[v] = _pm(metric, mean, sd)
                    row[f"{v}_mean"], row[f"{v}_sd"], row[f"{v}_n"] = mean, sd, n
                    row[f"{v}_seeds"], row[f"{v}_sd_seeds"] = 1, math.nan
                rows.append(row)
    cols = ["metric", "seed"] + [
        c for v in variants for c in (v, f"{v}_mean", f"{v}_sd", f"{v}_n", f"{v}_seeds", f"{v}_sd_seeds")
    ]
    return pd.DataFrame(rows, columns=cols)


def table1(per_patient: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """The paper's Table 1 layout: patients x (MAE, PSNR, paper-convention PSNR per variant) + mean ± sd.

    Each patient's values are averaged over the seeds first."""
    per_patient = seed_mean(per_patient)
    cols = [("mae", "mae"), ("psnr", "psnr"), ("psnr_paper", "psnr_paper_convention")]
    wide = per_patient.pivot(index="patient", columns="variant")
    patients = list(dict.fromkeys(per_patient["patient"]))
    out_cols = ["patient"] + [f"{label}_{v}" for label, _ in cols for v in variants]
    rows: list[dict[str, Any]] = []
    for p in patients:
        row: dict[str, Any] = {"patient": p}
        for label, metric in cols:
            for v in variants:
                row[f"{label}_{v}"] = f"{float(wide.loc[p, (metric, v)]):.2f}"
        rows.append(row)
    last: dict[str, Any] = {"patient": "mean ± sd"}
    for label, metric in cols:
        for v in variants:
            mean, sd, _ = _mean_sd(per_patient.loc[per_patient["variant"] == v, metric])
            last[f"{label}_{v}"] = _pm(metric, mean, sd)
    rows.append(last)
    return pd.DataFrame(rows, columns=out_cols)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slices", nargs="+", required=True, help="test patients' slice files results/slices/{patient}.npz (with mr)")
    parser.add_argument("--synth-dir", required=True, help="folder holding {variant}/{patient}_slices.npz from `ct2mr synthesize`")
    parser.add_argument("--variants", nargs="+", required=True, help="variants to evaluate, in table column order (e.g. paired unpaired mrgan)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="training seeds: read {synth-dir}/{variant}/seed{seed}/ (default: no seed folders, seed 0)")
    parser.add_argument("--per-patient", required=True, help="output TSV: one row per patient x variant")
    parser.add_argument("--summary", required=True, help="output TSV: rows = metrics, columns = variants (mean ± sd, mean, sd, n)")
    parser.add_argument("--table1", default=None, help="optional output TSV in the paper's Table 1 layout")
    parser.add_argument("--folds", default=None,
                        help="results/metrics/folds.tsv under k-fold cross-validation: each patient's fold in a column")
    parser.add_argument("--data-range", type=float, default=255.0, help="grey-level range for PSNR/SSIM and clipping (default 255)")
    parser.add_argument("--volume-metrics", nargs="*", default=[],
                        help="one-row TSVs of `ct2mr evaluate-volume` (3D metrics, tissue Dice) to join; "
                             "rows without one (2D PNG pairs) keep those columns empty")


def run(args: argparse.Namespace) -> None:
    if not args.data_range > 0:  # metrics.py would raise a bare ValueError mid-run
        raise InputError(None, "--data-range", f"must be > 0 (255 for 8-bit grey levels), got {args.data_range}")
    variants = list(dict.fromkeys(args.variants))
    seeds = list(dict.fromkeys(args.seeds)) if args.seeds else None
    folds = read_folds(args.folds) if args.folds else None
    per = evaluate_all(args.slices, args.synth_dir, variants, data_range=args.data_range, seeds=seeds, folds=folds)
    per = join_volume_metrics(per, args.volume_metrics)
    summ = summary_table(per, variants)
    write_text(args.per_patient, to_tsv(per))
    write_text(args.summary, to_tsv(summ))
    if args.table1:
        write_text(args.table1, to_tsv(table1(per, variants)))
    for _, r in summ[summ["seed"] == ALL_SEEDS].iterrows():
        if r["metric"] in ("mae", "psnr", "ssim", "mae_head"):
            log.info("%s: %s", r["metric"], "  ".join(f"{v} {r[v]}" for v in variants))
