"""Simulated comparisons with a known truth: how often each statistical method is wrong.

Every method ct2mr uses to compare two variants is checked here on simulated patient x seed
differences before it is trusted (tests/test_comparisons_simulation.py asserts the error rates;
bench/bench_comparisons_simulation.py records the whole grid in
bench/results/comparisons_simulation.md).

**Data model** (one replicate): for patients p = 1..P and training seeds s = 1..S, the
difference of a metric between a variant and a baseline is

    d[p, s] = effect + u[p] + v[s] + e[p, s],   u ~ N(0, patient_sd), v ~ N(0, seed_sd), e ~ N(0, noise_sd)

(the patient effect u: some patients favour the variant whatever the seed; the seed effect v:
one seed's models are applied to every patient, so seeds are *crossed* with patients; e: the
rest). ``effect`` = 0 is the null.

**Estimands.** Conditional on the trained models (the seeds at hand), the mean difference over
the patient population is ``effect + mean(v)``: this is what the patient-level method
(:mod:`ct2mr.evaluation.comparisons`) estimates and tests, so its "null" in a replicate is
``theta = effect + mean(v)`` (a test of H0: the mean of d[p] is theta, i.e. of d - theta). The
marginal estimand, over new seeds as well, is ``effect`` alone: only a crossed analysis
(:func:`crossed_interval`) targets it, and the patient method must not be read as one.

Methods (each returns rejection at alpha and whether the interval covers its target):

* ``patient``: seeds averaged within each patient, exact sign-flip test and t-interval over
  patients (what ``ct2mr compare`` does);
* ``cells``: the former method, a sign-flip test over all P x S cells as if independent
  (kept here to show why it was replaced);
* ``patient_bootstrap``: the percentile bootstrap over patients (the alternative interval);
* ``crossed``: two-way random-effects ANOVA (balanced P x S), the variance of the grand mean
  ``(MS_p + MS_s - MS_e) / (P S)`` with Satterthwaite degrees of freedom; marginal target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ct2mr.evaluation.comparisons import ALPHA, CONFIDENCE, crossed_interval, sign_flip_p_values, t_intervals


@dataclass(frozen=True)
class Scenario:
    """Standard deviations of the three random parts of a difference (metric units)."""

    name: str
    patient_sd: float
    seed_sd: float
    noise_sd: float


#: the issue's null scenarios: a patient effect, a seed effect, both
SCENARIOS = (
    Scenario("patient effect", 1.0, 0.0, 0.3),
    Scenario("seed effect", 0.0, 0.5, 0.3),
    Scenario("patient and seed effects", 1.0, 0.5, 0.3),
)


def simulate(rng: np.random.Generator, reps: int, n_patients: int, n_seeds: int, scenario: Scenario,
             effect: float = 0.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``reps`` replicates of d (reps, P, S) and each replicate's conditional target ``effect + mean(v)``."""
    u = rng.normal(0.0, scenario.patient_sd, (reps, n_patients, 1))
    v = rng.normal(0.0, scenario.seed_sd, (reps, 1, n_seeds))
    e = rng.normal(0.0, scenario.noise_sd, (reps, n_patients, n_seeds))
    return effect + u + v + e, effect + v[:, 0, :].mean(axis=1)


def patient_method(d: NDArray[np.float64], target: NDArray[np.float64]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(rejected at ALPHA, CI covers target) of the patient-level method, per replicate."""
    dp = d.mean(axis=2) - target[:, None]  # H0: the mean of d[p] is the target
    p = sign_flip_p_values(dp)
    lo, hi = t_intervals(d.mean(axis=2))
    return p <= ALPHA, (lo <= target) & (target <= hi)


def cells_method(d: NDArray[np.float64], n_permutations: int = 2000, seed: int = 0) -> NDArray[np.bool_]:
    """Rejected at ALPHA by the former sign-flip test over all cells (as if independent), read
    as it was reported: a test of "no difference" (the marginal null, effect 0)."""
    flat = d.reshape(d.shape[0], -1)
    return sign_flip_p_values(flat, n_permutations=n_permutations, seed=seed) <= ALPHA


def patient_bootstrap_covers(d: NDArray[np.float64], target: NDArray[np.float64], rng: np.random.Generator,
                             n_resamples: int = 2000) -> NDArray[np.bool_]:
    """Whether the percentile bootstrap over patients (seeds averaged) covers the target."""
    dp = d.mean(axis=2)
    reps, n = dp.shape
    idx = rng.integers(0, n, size=(reps, n_resamples, n))
    stats = np.take_along_axis(dp[:, None, :], idx, axis=2).mean(axis=2)
    a = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(stats, [a, 1 - a], axis=1)
    return (lo <= target) & (target <= hi)


def error_rates(n_patients: int, n_seeds: int, scenario: Scenario, reps: int = 1000, seed: int = 0,
                methods: tuple[str, ...] = ("patient",)) -> dict[str, float]:
    """False-positive rate at ALPHA and 95 % CI coverage of each method under the null (effect 0).

    Keys ``{method}_fpr`` and ``{method}_coverage`` (``cells``: FPR only, against the marginal
    null as it was reported; ``crossed``: against the marginal target 0, only with P and S >= 2);
    also ``patient_fpr_marginal``: the patient test read (wrongly) as a test of the marginal null,
    i.e. as a claim that retraining with new seeds would reproduce the difference. Seeded: the same call gives the same numbers.
    """
    rng = np.random.default_rng([seed, n_patients, n_seeds, int(scenario.patient_sd * 1000),
                                 int(scenario.seed_sd * 1000)])
    d, target = simulate(rng, reps, n_patients, n_seeds, scenario)
    out: dict[str, float] = {}
    if "patient" in methods:
        rej, cov = patient_method(d, target)
        out["patient_fpr"], out["patient_coverage"] = float(rej.mean()), float(cov.mean())
        out["patient_fpr_marginal"] = float((sign_flip_p_values(d.mean(axis=2)) <= ALPHA).mean())
    if "cells" in methods:
        out["cells_fpr"] = float(cells_method(d, seed=seed).mean())
    if "patient_bootstrap" in methods:
        out["patient_bootstrap_coverage"] = float(patient_bootstrap_covers(d, target, rng).mean())
    if "crossed" in methods and n_patients >= 2 and n_seeds >= 2:
        lo, hi, p = crossed_interval(d)
        out["crossed_fpr"] = float((p <= ALPHA).mean())
        out["crossed_coverage"] = float(((lo <= 0) & (0 <= hi)).mean())
    return out


def binomial_band(rate: float, reps: int, z: float = 3.29) -> tuple[float, float]:
    """The range a simulated rate falls in with probability ~0.999 when its true value is ``rate``."""
    half = z * math.sqrt(rate * (1 - rate) / reps)
    return rate - half, rate + half
