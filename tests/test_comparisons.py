"""Comparisons that can decide with few patients: known effects, zero effects, seeds, determinism, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct2mr.cli import main
from ct2mr.evaluation.comparisons import (
    COLUMNS,
    compare,
    hierarchical_bootstrap_ci,
    hierarchical_mean,
    read_per_patient,
    sign_flip_p_value,
)


def _table(effect: float, n_patients: int = 4, n_seeds: int = 3, noise: float = 0.3, seed: int = 1,
           variants=("paired", "unpaired", "mrgan")) -> pd.DataFrame:  # noqa: ANN001
    """Per-patient rows: a patient effect shared by all variants, seed noise, and mrgan = paired + effect."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        base = 20 + 3 * rng.standard_normal()  # patients differ a lot: pairing removes it
        for s in range(n_seeds):
            for v in variants:
                val = base + noise * rng.standard_normal() + (effect if v == "mrgan" else 0.0)
                rows.append({"patient": f"P{p}", "variant": v, "seed": s, "n_slices": 10,
                             "mae": val, "mae_head": val + 5, "psnr": 30 - val / 10, "psnr_head": 25.0,
                             "ssim": 0.8, "ssim_head": 0.7})
    return pd.DataFrame(rows)


def test_known_effect_is_found_with_4_patients_x_3_seeds() -> None:
    df = compare(_table(effect=-1.0), variant="mrgan")
    assert list(df.columns) == COLUMNS
    assert df["metric"].tolist()[:2] == ["mae_head", "mae_head"] and df["metric"].iloc[2] == "mae"  # masked first
    r = df[(df["metric"] == "mae_head") & (df["baseline"] == "paired")].iloc[0]
    assert r["ci_low"] <= -1.0 <= r["ci_high"] and r["ci_high"] < 0
    assert r["mean_difference"] == pytest.approx(-1.0, abs=0.3)
    assert r["p_value"] < 0.05 and r["n_patients"] == 4 and r["n_seeds"] == 3
    assert "hierarchical bootstrap" in r["method"] and "exact over 4096" in r["method"]


def test_zero_effect_ci_contains_zero() -> None:
    for seed in range(5):
        df = compare(_table(effect=0.0, seed=seed), variant="mrgan")
        r = df[(df["metric"] == "mae") & (df["baseline"] == "paired")].iloc[0]
        assert r["ci_low"] <= 0 <= r["ci_high"], seed
        assert r["p_value"] > 0.01


def test_identical_columns_give_p_1() -> None:
    df = compare(_table(effect=-1.0), variant="mrgan")
    r = df[(df["metric"] == "psnr_head") & (df["baseline"] == "paired")].iloc[0]  # psnr_head constant
    assert r["p_value"] == 1.0 and r["mean_difference"] == 0 and r["ci_low"] == 0 == r["ci_high"]


def test_consistent_signs_reach_the_exact_minimum() -> None:
    p, how = sign_flip_p_value(np.full(12, -0.5) + np.linspace(0, 0.1, 12))
    assert p == pytest.approx(2 / 4096) and "exact" in how
    # per-patient means of 4 patients could never go below 2/16
    p4, _ = sign_flip_p_value(np.full(4, -0.5))
    assert p4 == pytest.approx(2 / 16)
    assert sign_flip_p_value(np.array([-0.5]))[0] == 1.0  # one patient, one seed: cannot decide
    p_mc, how = sign_flip_p_value(np.full(20, -0.5), n_permutations=2000, seed=3)
    assert p_mc < 0.01 and "random" in how


def test_deterministic_given_seed() -> None:
    t = _table(effect=-0.4, seed=4)
    a = compare(t, seed=7)
    b = compare(t, seed=7)
    pd.testing.assert_frame_equal(a, b)
    groups = [np.random.default_rng(i).normal(size=5) for i in range(8)]
    assert hierarchical_bootstrap_ci(groups, 2000, seed=1) == hierarchical_bootstrap_ci(groups, 2000, seed=1)
    assert hierarchical_bootstrap_ci(groups, 2000, seed=1) != hierarchical_bootstrap_ci(groups, 2000, seed=2)


def test_bootstrap_resamples_patients_not_cells() -> None:
    """One patient with many seeds must not dominate: the CI is over patients' means."""
    groups = [np.full(50, 5.0), np.array([0.0]), np.array([0.0]), np.array([0.0])]
    assert hierarchical_mean(groups) == 1.25  # not the cell mean 4.72
    lo, hi = hierarchical_bootstrap_ci(groups, 5000, seed=0)
    # P(>= 3 of 4 draws are the outlier patient) = 0.051 > 2.5%: the upper limit is 3 x 5 / 4
    assert lo == 0.0 and hi == pytest.approx(3.75)


def test_without_seed_column_and_with_regression(tmp_path: Path) -> None:
    t = _table(effect=-1.0, n_seeds=1, variants=("paired", "regression", "mrgan")).drop(columns="seed")
    path = tmp_path / "per_patient.tsv"
    t.to_csv(path, sep="\t", index=False)
    df = compare(read_per_patient(path))
    assert set(df["baseline"]) == {"paired", "regression"} and (df["n_seeds"] == 1).all()
    assert (df["n_patients"] == 4).all()


def test_non_finite_cells_are_left_out() -> None:
    t = _table(effect=-1.0)
    t.loc[(t["patient"] == "P0") & (t["variant"] == "mrgan"), "psnr"] = np.inf
    df = compare(t)
    r = df[(df["metric"] == "psnr") & (df["baseline"] == "paired")].iloc[0]
    assert r["n_patients"] == 3


def test_cli(tmp_path: Path) -> None:
    path = tmp_path / "per_patient.tsv"
    _table(effect=-1.0).to_csv(path, sep="\t", index=False)
    out = tmp_path / "comparisons.tsv"
    assert main(["compare", "--per-patient", str(path), "--output", str(out), "--resamples", "500"]) == 0
    df = pd.read_csv(out, sep="\t")
    assert list(df.columns) == COLUMNS and len(df) == 6 * 2
    assert main(["compare", "--per-patient", str(tmp_path / "missing.tsv"), "--output", str(out)]) == 2
    dup = pd.concat([_table(0.0).iloc[:1], _table(0.0)])
    dup.to_csv(path, sep="\t", index=False)
    assert main(["compare", "--per-patient", str(path), "--output", str(tmp_path / "x.tsv")]) == 2


def test_one_patient_one_seed() -> None:
    df = compare(_table(effect=-1.0, n_patients=1, n_seeds=1))
    r = df[(df["metric"] == "mae") & (df["baseline"] == "paired")].iloc[0]
    assert r["p_value"] == 1.0 and r["ci_low"] == r["ci_high"] == r["mean_difference"] and r["n_patients"] == 1
