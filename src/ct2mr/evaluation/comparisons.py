"""Comparisons that can decide with few test patients: hierarchical bootstrap CI + sign-flip test.

Input: ``results/metrics/per_patient.tsv`` (one row per patient x variant, and
per seed when a ``seed`` column is present; without it every row is seed 0).
For the reference variant (``mrgan``) against each other configured variant
(``paired``, ``unpaired``, ``regression``), per metric, the unit of evidence is
the **patient x seed cell difference**

    d[p, s] = metric(variant, patient p, seed s) - metric(baseline, p, s)

(for MAE a negative difference favours the variant; for PSNR / SSIM a positive
one). Variant and baseline of the same seed share the training seed (weights
initialisation and data order), so pairing them by seed is the natural design;
cells where either value is missing or not finite (PSNR ``inf``) are left out.

* ``mean_difference``: the mean over patients of each patient's mean over its
  seeds (= the mean of all cells when every patient has every seed).
* ``ci_low``, ``ci_high``: 95% percentile interval of a **hierarchical
  bootstrap**: each of ``n_resamples`` (10000) draws resamples the patients with
  replacement, then, within each drawn patient, its seeds with replacement, and
  recomputes ``mean_difference``. Slices are never resampled: they are not
  independent (one patient's slices share the anatomy and the scanner), so the
  interval reflects between-patient and between-seed variation only. With very
  few patients the percentile bootstrap is known to be somewhat narrow (it uses
  the n-denominator variance); read it with ``n_patients`` beside it.
  (``scipy.stats.bootstrap`` resamples one level only, so the two-level draw
  is written here, vectorised with numpy.)
* ``p_value``: two-sided **sign-flip permutation test** of the mean cell
  difference (``scipy.stats.permutation_test``, one sample,
  ``permutation_type="samples"``): under the null hypothesis that the variant
  and the baseline are equally good, each patient x seed difference is
  symmetric about 0, so its sign is exchangeable. Exact enumeration of all
  ``2**n_cells`` sign patterns up to :data:`EXACT_MAX_CELLS` cells (4 patients x
  3 seeds: 4096 patterns, smallest possible p = 2/4096 = 0.0005), else
  ``n_permutations`` (100000) random patterns from a seeded generator. Flipping
  cells rather than per-patient means is what lets a consistent effect decide
  with few patients (per-patient means of 4 patients: 16 patterns, p >= 0.125,
  never below 0.05); the price is that cells sharing a patient or a seed's
  models are treated as independent, so p is a statement about these trained
  models on these patients, while the CI (which resamples patients) carries the
  generalisation to new patients. With one seed the test is over patients alone.

Output (TSV, written atomically): columns :data:`COLUMNS`; rows metric-major in
the order of :data:`METRICS` (head-masked first, whole-slice beside it), then
baseline in the order given. Deterministic for a given ``seed``.

CLI::

    ct2mr compare --per-patient results/metrics/per_patient.tsv \\
        --output results/metrics/comparisons.tsv [--variant mrgan] \\
        [--baselines paired unpaired regression] [--resamples 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_text
from ct2mr.io.tables import read_tsv

log = logging.getLogger(__name__)

COLUMNS = ["metric", "variant", "baseline", "mean_difference", "ci_low", "ci_high", "p_value",
           "n_patients", "n_seeds", "method"]
#: compared metrics, head-masked first, the paper's whole-slice metric beside it
METRICS = ["mae_head", "mae", "psnr_head", "psnr", "ssim_head", "ssim"]
#: baselines compared with the reference variant, in this order when configured
BASELINES = ["paired", "unpaired", "regression"]
#: exact sign-flip enumeration up to this many patient x seed cells (2**16 = 65536 patterns)
EXACT_MAX_CELLS = 16
CONFIDENCE = 0.95


def read_per_patient(path: str | Path) -> pd.DataFrame:
    """``per_patient.tsv`` with a ``seed`` column (0 when the file has none); InputError if unusable."""
    path = Path(path)
    df = read_tsv(path, "per-patient metrics table")
    missing = [c for c in ("patient", "variant") if c not in df.columns]
    if missing:
        raise InputError(path, "header", f"missing column(s) {missing}")
    if "seed" not in df.columns:
        df["seed"] = 0
    df["patient"] = df["patient"].astype(str)
    df["variant"] = df["variant"].astype(str)
    dup = df.duplicated(["patient", "variant", "seed"])
    if dup.any():
        r = df[dup].iloc[0]
        raise InputError(path, "rows", f"patient {r['patient']}, variant {r['variant']}, seed {r['seed']} "
                                       "appears more than once")
    return df


def cell_differences(per_patient: pd.DataFrame, metric: str, variant: str, baseline: str) -> pd.DataFrame:
    """Patient x seed differences ``variant - baseline`` of one metric (finite cells only).

    Columns ``patient``, ``seed``, ``difference``; sorted by patient and seed.
    """
    cols = ["patient", "seed", metric]
    a = per_patient.loc[per_patient["variant"] == variant, cols]
    b = per_patient.loc[per_patient["variant"] == baseline, cols]
    m = a.merge(b, on=["patient", "seed"], suffixes=("_v", "_b"))
    d = pd.to_numeric(m[f"{metric}_v"], errors="coerce") - pd.to_numeric(m[f"{metric}_b"], errors="coerce")
    out = pd.DataFrame({"patient": m["patient"], "seed": m["seed"], "difference": d})
    out = out[np.isfinite(out["difference"].to_numpy(dtype=float))]
    return out.sort_values(["patient", "seed"]).reset_index(drop=True)


def _groups(cells: pd.DataFrame) -> list[np.ndarray]:
    return [g["difference"].to_numpy(dtype=float) for _, g in cells.groupby("patient", sort=True)]


def hierarchical_mean(groups: Sequence[np.ndarray]) -> float:
    """Mean over patients of each patient's mean over seeds."""
    return float(np.mean([g.mean() for g in groups]))


def hierarchical_bootstrap_ci(
    groups: Sequence[np.ndarray], n_resamples: int = 10000, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile CI of :func:`hierarchical_mean`: patients resampled, then seeds within each drawn patient.

    ``groups``: one array of seed differences per patient. Deterministic given ``seed``.
    """
    if not groups:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    n_p = len(groups)
    lengths = np.array([len(g) for g in groups])
    width = int(lengths.max())
    padded = np.zeros((n_p, width))
    for i, g in enumerate(groups):
        padded[i, :len(g)] = g
    pick_p = rng.integers(0, n_p, size=(n_resamples, n_p))  # patients drawn per resample
    k = lengths[pick_p]  # (B, n_p): seeds available to each drawn patient
    u = rng.random((n_resamples, n_p, width))
    pick_s = np.minimum((u * k[..., None]).astype(np.int64), k[..., None] - 1)  # seeds drawn within it
    vals = padded[pick_p[..., None], pick_s]  # (B, n_p, width)
    valid = np.arange(width)[None, None, :] < k[..., None]  # draw as many seeds as the patient has
    patient_means = (vals * valid).sum(-1) / k
    stats = patient_means.mean(-1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def sign_flip_p_value(differences: np.ndarray, n_permutations: int = 100000, seed: int = 0) -> tuple[float, str]:
    """Two-sided sign-flip permutation p of the mean difference, and a description (exact or Monte Carlo)."""
    from scipy.stats import permutation_test  # noqa: PLC0415

    d = np.asarray(differences, dtype=float)
    n = d.size
    if n == 0:
        return math.nan, "no cells"
    if not np.any(d):
        return 1.0, "all differences zero"
    if n == 1:  # both sign patterns give the observed |mean|: two-sided p = 1 (scipy needs 2 or more)
        return 1.0, "exact over 2 sign patterns"
    exact = n <= EXACT_MAX_CELLS
    res = permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
        n_resamples=np.inf if exact else n_permutations, alternative="two-sided", rng=np.random.default_rng(seed),
    )
    how = f"exact over {2**n} sign patterns" if exact else f"{n_permutations} random sign patterns"
    return float(min(1.0, res.pvalue)), how


def compare(
    per_patient: pd.DataFrame,
    variant: str = "mrgan",
    baselines: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 10000,
    n_permutations: int = 100000,
    seed: int = 0,
) -> pd.DataFrame:
    """The comparisons table (columns :data:`COLUMNS`) of ``variant`` against each baseline present."""
    present = list(dict.fromkeys(per_patient["variant"]))
    if baselines is None:
        baselines = [b for b in BASELINES if b in present] + [
            v for v in present if v not in BASELINES and v != variant]
    rows: list[dict[str, Any]] = []
    if variant not in present:
        log.warning("variant %s not in the per-patient table: no comparisons", variant)
        return pd.DataFrame(rows, columns=COLUMNS)
    for metric in metrics:
        if metric not in per_patient.columns:
            continue
        for base in baselines:
            if base == variant or base not in present:
                continue
            cells = cell_differences(per_patient, metric, variant, base)
            groups = _groups(cells)
            n_seeds = int(cells["seed"].nunique())
            p, how = sign_flip_p_value(cells["difference"].to_numpy(), n_permutations, seed)
            lo, hi = hierarchical_bootstrap_ci(groups, n_resamples, CONFIDENCE, seed)
            method = (
                f"{variant} - {base} per patient x seed; {int(CONFIDENCE * 100)}% CI: hierarchical "
                f"bootstrap ({n_resamples} resamples of patients, then seeds within patients; percentile); "
                f"p: two-sided sign-flip permutation test of the mean over {len(cells)} patient x seed "
                f"differences ({how})"
            )
            rows.append({
                "metric": metric, "variant": variant, "baseline": base,
                "mean_difference": hierarchical_mean(groups) if groups else math.nan,
                "ci_low": lo, "ci_high": hi, "p_value": p,
                "n_patients": len(groups), "n_seeds": n_seeds, "method": method,
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def to_tsv(df: pd.DataFrame) -> str:
    """TSV text, floats with 6 significant digits, empty cells for NaN."""
    from ct2mr.evaluation.evaluate import to_tsv as _to_tsv  # noqa: PLC0415

    return _to_tsv(df)


def headline(comparisons: pd.DataFrame, metric: str = "mae_head", baseline: str = "paired") -> str:
    """One sentence stating a comparison with its CI and p (for logs and the report)."""
    sel = comparisons[(comparisons["metric"] == metric) & (comparisons["baseline"] == baseline)]
    if sel.empty:
        return f"no {metric} comparison against {baseline} in this run"
    r = sel.iloc[0]
    return (f"{r['variant']} - {baseline}, {metric}: {r['mean_difference']:+.2f} "
            f"(95% CI {r['ci_low']:+.2f} to {r['ci_high']:+.2f}; p = {r['p_value']:.3g}; "
            f"{int(r['n_patients'])} patients x {int(r['n_seeds'])} seeds)")


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-patient", required=True, help="results/metrics/per_patient.tsv (seed column optional)")
    parser.add_argument("--output", required=True, help="output TSV: results/metrics/comparisons.tsv")
    parser.add_argument("--variant", default="mrgan", help="variant compared with each baseline (default mrgan)")
    parser.add_argument("--baselines", nargs="+", default=None,
                        help="baselines, in row order (default: paired unpaired regression, those present)")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--permutations", type=int, default=100000,
                        help=f"random sign patterns when there are more than {EXACT_MAX_CELLS} cells (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the bootstrap and permutations (default 0)")


def run(args: argparse.Namespace) -> None:
    for name in ("resamples", "permutations"):
        if getattr(args, name) < 1:
            raise InputError(None, f"--{name}", f"must be >= 1, got {getattr(args, name)}")
    df = compare(read_per_patient(args.per_patient), variant=args.variant, baselines=args.baselines,
                 n_resamples=args.resamples, n_permutations=args.permutations, seed=args.seed)
    write_text(args.output, to_tsv(df))
    log.info("%s", headline(df))
