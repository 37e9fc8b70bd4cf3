"""Does a variant beat a baseline? The patient as the unit, one primary comparison, Holm for the rest.

Input: ``results/metrics/per_patient.tsv`` (one row per patient x variant x seed; without
a ``seed`` column every row is seed 0). For a variant (``mrgan``) against each baseline
(``paired``, ``unpaired``, ``regression``), per metric:

1. **Patient differences.** For patient p and every seed s where both values are finite,
   ``d[p, s] = metric(variant, p, s) - metric(baseline, p, s)`` (a variant and a baseline
   of the same seed share the training seed: data order and initialisation). Each patient's
   difference is the mean over its seeds, ``d[p]``. Seeds are *not* independent evidence:
   one seed's models are applied to every patient (seeds are crossed with patients), and
   one patient's cells share its anatomy, so only the patients are the unit.
2. **Estimate** (``mean_difference``): the mean of ``d[p]`` over patients (patients weigh
   equally, whatever their number of seeds; the test and the interval use the same
   ``d[p]``, so effect and p-value have one estimand).
3. **Test** (``p_value``): two-sided exact **sign-flip permutation test** over patients:
   under H0 each ``d[p]`` is symmetric about 0 (independent patients), so all ``2**n`` sign
   patterns are equally likely; p = the share of patterns whose ``|mean|`` reaches the
   observed one. Exact enumeration up to :data:`EXACT_MAX_PATIENTS` patients, beyond that
   :data:`N_PERMUTATIONS` random patterns (p = (b + 1) / (B + 1)). The smallest attainable p
   is ``2 / 2**n`` (``min_attainable_p``): 0.25 with 3 patients, 0.0625 with 5, so below 6
   patients no result can reach 0.05.
4. **Interval** (``ci_low``, ``ci_high``): the 95 % Student t-interval of the mean of ``d[p]``
   over patients (n - 1 degrees of freedom). Chosen by simulation over 3-20 patients
   (tests/test_comparisons_simulation.py, bench/results/comparisons_simulation.md): its coverage
   is 0.95 at every size, where the percentile bootstrap over patients covers 0.75-0.93.
5. **Seeds** (``seed_sd``): the sample sd over seeds of each seed's mean difference over
   patients, reported beside the test and never mixed into it. The test is a statement about
   *these trained models* on new patients of this kind; whether retraining with new seeds
   reproduces it is what ``seed_sd`` (with ``n_seeds``) shows, and, where simulation showed it
   holds (3+ seeds, 4+ patients, every patient every seed), the **crossed** patient x seed
   interval and p (``crossed_ci_low``, ``crossed_ci_high``, ``crossed_p``: two-way
   random-effects ANOVA, the variance of the grand mean ``(MS_p + MS_s - MS_e) / (P S)`` with
   Satterthwaite degrees of freedom), whose target is the difference over new patients *and*
   new training seeds. It is descriptive: not part of the primary test nor of Holm's family.
6. **One primary comparison** (``evaluation.primary``, default ``mae_head``, ``mrgan`` vs
   ``paired``), declared before the run: ``role`` primary, tested at alpha 0.05. Every other
   row (``role`` secondary) is **Holm-adjusted** as one family (``p_adjusted``; the primary's
   ``p_adjusted`` is its raw p). ``decision`` says in words what the row decides at 0.05.

What the simulations checked (null data, 1000+ replicates per cell): the old test, which
flipped the patient x seed cells as if they were independent, rejected 53 % of true nulls
with 8 patients x 3 seeds (patient sd 1, seed sd 0.5, cell noise 0.3); this one rejects
at most 0.05 wherever 0.05 is attainable, and never below 6 patients.

Output (TSV, written atomically): columns :data:`COLUMNS`; rows metric-major in the order
of :data:`METRICS`, then baseline. Deterministic (Monte Carlo beyond 20 patients is seeded).

CLI::

    ct2mr compare --per-patient results/metrics/per_patient.tsv \\
        --output results/metrics/comparisons.tsv [--variant mrgan] \\
        [--baselines paired unpaired regression] [--primary mae_head mrgan paired] [--seed 0]
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
from numpy.typing import ArrayLike, NDArray

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_text
from ct2mr.io.tables import read_tsv

log = logging.getLogger(__name__)

COLUMNS = ["metric", "variant", "baseline", "role", "mean_difference", "ci_low", "ci_high", "p_value",
           "p_adjusted", "min_attainable_p", "n_patients", "n_seeds", "seed_sd", "crossed_ci_low", "crossed_ci_high",
           "crossed_p", "decision", "method"]
#: the crossed patient x seed interval is given only where simulation showed it holds
#: (bench/results/comparisons_simulation.md: coverage in [0.93, 0.97] with 3+ seeds and 4+ patients;
#: 0.92 with 2 seeds, 0.98 with 3 patients) and only for a balanced design (every patient every seed)
CROSSED_MIN_SEEDS = 3
CROSSED_MIN_PATIENTS = 4
#: compared metrics, head-masked first, the paper's whole-slice metric beside it; then the volume
#: patients' 3D metrics and tissue agreement (ct2mr.evaluation.volume_metrics: empty for 2D PNG
#: patients, who are left out of those rows; n_patients says how many were used)
METRICS = ["mae_head", "mae", "psnr_head", "psnr", "ssim_head", "ssim",
           "mae_3d_head", "psnr_3d_head", "ms_ssim_3d_head", "slice_jump_brain",
           "dice_csf", "dice_gm", "dice_wm", "hd95_gm", "hd95_wm"]
#: metrics where a lower value is better (a negative difference favours the variant)
LOWER_IS_BETTER = {"mae_head", "mae", "mae_brain", "mae_3d_head", "slice_jump_brain", "hd95_gm", "hd95_wm"}
#: baselines compared with the reference variant, in this order when configured
BASELINES = ["paired", "unpaired", "regression"]
#: exact sign-flip enumeration up to this many patients (2**20 = 1 048 576 patterns)
EXACT_MAX_PATIENTS = 20
#: random sign patterns beyond EXACT_MAX_PATIENTS
N_PERMUTATIONS = 100_000
CONFIDENCE = 0.95
ALPHA = 0.05
#: the default primary comparison (evaluation.primary)
PRIMARY = ("mae_head", "mrgan", "paired")


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


def patient_differences(cells: pd.DataFrame) -> NDArray[np.float64]:
    """Each patient's mean over its seeds (the unit of evidence), in patient order."""
    if cells.empty:
        return np.zeros(0)
    return cells.groupby("patient", sort=True)["difference"].mean().to_numpy(dtype=float)


def seed_sd(cells: pd.DataFrame) -> float:
    """Sample sd (ddof 1) over seeds of each seed's mean difference over patients; NaN with one seed."""
    per_seed = cells.groupby("seed")["difference"].mean()
    return float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan


# --------------------------------------------------------------------------- patient-level statistics
# Vectorised over replicates (axis 0) so that tests/test_comparisons_simulation.py checks these very
# functions on thousands of simulated data sets.


def _sign_patterns(n: int, start: int, stop: int) -> NDArray[np.float64]:
    """Sign patterns ``start..stop-1`` of n signs with the first sign fixed at +1 ((stop-start), n)."""
    codes = np.arange(start, stop, dtype=np.int64)[:, None]
    bits = (codes >> np.arange(n - 1, dtype=np.int64)[None, :]) & 1
    return np.concatenate([np.ones((stop - start, 1)), 1.0 - 2.0 * bits], axis=1)


def sign_flip_p_values(d: ArrayLike, n_permutations: int = N_PERMUTATIONS, seed: int = 0,
                       chunk: int = 8192) -> NDArray[np.float64]:
    """Two-sided sign-flip p of the mean, per row of ``d`` (replicates x patients).

    Exact over all ``2**n`` patterns when n <= :data:`EXACT_MAX_PATIENTS` (half of them
    enumerated: a pattern and its negation give the same ``|mean|``), else ``n_permutations``
    random patterns from a seeded generator, p = (b + 1) / (B + 1). The observed pattern counts
    (p >= 2 / 2**n). A row of zeros has p = 1. ``d`` of shape (n,) gives shape ().
    """
    arr = np.asarray(d, dtype=float)
    single = arr.ndim == 1
    arr = np.atleast_2d(arr)
    reps, n = arr.shape
    if n == 0:
        out = np.full(reps, math.nan)
        return out[0] if single else out
    obs = np.abs(arr.sum(axis=1))
    tol = 1e-9 * np.maximum(np.abs(arr).sum(axis=1), 1e-300)  # float noise of equal sums
    count = np.zeros(reps)
    if n <= EXACT_MAX_PATIENTS:
        total = 2 ** (n - 1)
        for start in range(0, total, chunk):
            s = _sign_patterns(n, start, min(total, start + chunk))
            count += (np.abs(arr @ s.T) >= (obs - tol)[:, None]).sum(axis=1)
        p = count / total
    else:
        rng = np.random.default_rng(seed)
        for start in range(0, n_permutations, chunk):
            m = min(chunk, n_permutations - start)
            s = rng.choice([-1.0, 1.0], size=(m, n))
            count += (np.abs(arr @ s.T) >= (obs - tol)[:, None]).sum(axis=1)
        p = (count + 1) / (n_permutations + 1)
    p = np.where(np.all(arr == 0, axis=1), 1.0, np.minimum(p, 1.0))
    return p[0] if single else p


def min_attainable_p(n_patients: int) -> float:
    """Smallest two-sided p the sign-flip test can give with n patients: 2 / 2**n (1 for n = 0)."""
    return 1.0 if n_patients < 1 else min(1.0, 2.0 / 2.0 ** n_patients)


def t_intervals(d: ArrayLike, confidence: float = CONFIDENCE) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Student t-interval of the mean per row of ``d`` (replicates x patients); NaN with < 2 patients."""
    from scipy.stats import t as student_t  # noqa: PLC0415

    arr = np.atleast_2d(np.asarray(d, dtype=float))
    n = arr.shape[1]
    mean = arr.mean(axis=1) if n else np.full(arr.shape[0], math.nan)
    if n < 2:
        nan = np.full(arr.shape[0], math.nan)
        return nan, nan.copy()
    half = student_t.ppf(0.5 + confidence / 2, n - 1) * arr.std(axis=1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def crossed_interval(d: NDArray[np.float64], confidence: float = CONFIDENCE) -> tuple[NDArray[np.float64], ...]:
    """Two-way random-effects ANOVA interval of the grand mean (balanced P x S, P and S >= 2).

    Var(mean) = (MS_p + MS_s - MS_e) / (P S), floored at MS_e / (P S); Satterthwaite df.
    Returns (low, high, p) per replicate; p of H0: marginal mean 0.
    """
    from scipy.stats import t as student_t  # noqa: PLC0415

    reps, n_p, n_s = d.shape
    grand = d.mean(axis=(1, 2))
    pm = d.mean(axis=2)
    sm = d.mean(axis=1)
    ms_p = n_s * ((pm - grand[:, None]) ** 2).sum(axis=1) / (n_p - 1)
    ms_s = n_p * ((sm - grand[:, None]) ** 2).sum(axis=1) / (n_s - 1)
    resid = d - pm[:, :, None] - sm[:, None, :] + grand[:, None, None]
    df_e = (n_p - 1) * (n_s - 1)
    ms_e = (resid ** 2).sum(axis=(1, 2)) / df_e
    num = np.maximum(ms_p + ms_s - ms_e, ms_e)
    den = ms_p ** 2 / (n_p - 1) + ms_s ** 2 / (n_s - 1) + ms_e ** 2 / df_e
    df = np.clip(num ** 2 / np.maximum(den, 1e-300), 1.0, None)
    se = np.sqrt(num / (n_p * n_s))
    half = student_t.ppf(0.5 + confidence / 2, df) * se
    p = 2 * student_t.sf(np.abs(grand) / np.maximum(se, 1e-300), df)
    return grand - half, grand + half, p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out.tolist()


# --------------------------------------------------------------------------- the table


def decision(metric: str, variant: str, baseline: str, mean: float, p: float, n: int,
             alpha: float = ALPHA) -> str:
    """What a row decides at ``alpha``, in words the data supports."""
    if n == 0:
        return "no patient with both values"
    floor = min_attainable_p(n)
    if floor > alpha:
        return (f"undecided: with {n} test patient{'s' * (n != 1)} the smallest attainable p is {floor:.3g} > {alpha}; "
                f"k-fold cross-validation (evaluation.folds) tests every paired patient")
    if not p <= alpha:
        return f"undecided: p = {p:.3g} > {alpha}; no difference shown with {n} patients"
    better = (mean < 0) == (metric in LOWER_IS_BETTER)
    return f"{variant if better else baseline} better ({metric}, p = {p:.3g} <= {alpha}, {n} patients)"


def compare(
    per_patient: pd.DataFrame,
    variant: str = "mrgan",
    baselines: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    primary: tuple[str, str, str] | None = PRIMARY,
    n_permutations: int = N_PERMUTATIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """The comparisons table (columns :data:`COLUMNS`) of ``variant`` against each baseline present.

    ``primary``: (metric, variant, baseline) of the declared primary comparison; its row is
    tested at :data:`ALPHA`, every other row Holm-adjusted. When it is not in the table (a
    variant not trained), every row is secondary and a warning says so.
    """
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
            d = patient_differences(cells)
            n = len(d)
            p = float(sign_flip_p_values(d, n_permutations, seed)) if n else math.nan
            lo, hi = (float(x[0]) for x in t_intervals(d))
            how = f"exact over {2 ** n} sign patterns" if n <= EXACT_MAX_PATIENTS else (
                f"{n_permutations} random sign patterns")
            c_lo = c_hi = c_p = math.nan
            wide = cells.pivot(index="patient", columns="seed", values="difference") if n else None
            if (wide is not None and wide.shape[1] >= CROSSED_MIN_SEEDS and n >= CROSSED_MIN_PATIENTS
                    and not wide.isna().any().any()):
                c_lo, c_hi, c_p = (float(x[0]) for x in crossed_interval(wide.to_numpy(dtype=float)[None]))
            rows.append({
                "crossed_ci_low": c_lo, "crossed_ci_high": c_hi, "crossed_p": c_p,
                "metric": metric, "variant": variant, "baseline": base,
                "role": "primary" if primary == (metric, variant, base) else "secondary",
                "mean_difference": float(d.mean()) if n else math.nan,
                "ci_low": lo, "ci_high": hi, "p_value": p, "min_attainable_p": min_attainable_p(n),
                "n_patients": n, "n_seeds": int(cells["seed"].nunique()), "seed_sd": seed_sd(cells),
                "method": (f"{variant} - {base}: seeds averaged within each patient, then {n} patient differences; "
                           f"p: two-sided sign-flip test over patients ({how}); "
                           f"{int(CONFIDENCE * 100)}% CI: t-interval over patients ({max(n - 1, 0)} df)"),
            })
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        return df
    if primary is not None and not (df["role"] == "primary").any():
        log.warning("the primary comparison %s (%s vs %s) is not in this run: every row is Holm-adjusted",
                    *primary)
    secondary = df["role"] == "secondary"
    df["p_adjusted"] = df["p_value"]
    df.loc[secondary, "p_adjusted"] = holm(df.loc[secondary, "p_value"].tolist())
    df["decision"] = [
        decision(r.metric, r.variant, r.baseline, r.mean_difference, r.p_adjusted, int(r.n_patients))
        for r in df.itertuples()
    ]
    return df


def to_tsv(df: pd.DataFrame) -> str:
    """TSV text, floats with 6 significant digits, empty cells for NaN."""
    from ct2mr.evaluation.evaluate import to_tsv as _to_tsv  # noqa: PLC0415

    return _to_tsv(df)


def headline(comparisons: pd.DataFrame) -> str:
    """One sentence stating the primary comparison: effect, CI, p and what it decides."""
    sel = comparisons[comparisons["role"] == "primary"] if "role" in comparisons.columns else comparisons.iloc[:0]
    if sel.empty:
        return "no primary comparison in this run (a variant of evaluation.primary is not trained)"
    r = sel.iloc[0]
    return (f"{r['variant']} - {r['baseline']}, {r['metric']}: {r['mean_difference']:+.2f} "
            f"(95% CI {r['ci_low']:+.2f} to {r['ci_high']:+.2f}; p = {r['p_value']:.3g}; "
            f"{int(r['n_patients'])} patients x {int(r['n_seeds'])} seeds): {r['decision']}")


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-patient", required=True, help="results/metrics/per_patient.tsv (seed column optional)")
    parser.add_argument("--output", required=True, help="output TSV: results/metrics/comparisons.tsv")
    parser.add_argument("--variant", default="mrgan", help="variant compared with each baseline (default mrgan)")
    parser.add_argument("--baselines", nargs="+", default=None,
                        help="baselines, in row order (default: paired unpaired regression, those present)")
    parser.add_argument("--primary", nargs=3, default=list(PRIMARY), metavar=("METRIC", "VARIANT", "BASELINE"),
                        help="the comparison declared before the run, tested at 0.05; the others are "
                             "Holm-adjusted (default: mae_head mrgan paired)")
    parser.add_argument("--permutations", type=int, default=N_PERMUTATIONS,
                        help=f"random sign patterns beyond {EXACT_MAX_PATIENTS} patients (default {N_PERMUTATIONS})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the random sign patterns (default 0)")


def run(args: argparse.Namespace) -> None:
    if args.permutations < 1:
        raise InputError(None, "--permutations", f"must be >= 1, got {args.permutations}")
    if args.primary[0] not in METRICS:
        raise InputError(None, "--primary", f"unknown metric {args.primary[0]!r}; choose one of {', '.join(METRICS)}")
    df = compare(read_per_patient(args.per_patient), variant=args.variant, baselines=args.baselines,
                 primary=tuple(args.primary), n_permutations=args.permutations, seed=args.seed)
    write_text(args.output, to_tsv(df))
    log.info("%s", headline(df))
