"""Comparisons with the patient as the unit: known effects, seeds averaged, one estimand, the primary
comparison, Holm, what a row decides, CLI. The error rates on simulated null data are in
tests/test_comparisons_simulation.py."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ct2mr.cli import main
from ct2mr.evaluation.comparisons import (
    COLUMNS,
    compare,
    decision,
    headline,
    holm,
    min_attainable_p,
    read_per_patient,
    sign_flip_p_values,
    t_intervals,
)


def _table(effect: float, n_patients: int = 8, n_seeds: int = 3, noise: float = 0.3, seed: int = 1,
           variants=("paired", "unpaired", "mrgan")) -> pd.DataFrame:  # noqa: ANN001
    """Per-patient rows: a patient level shared by all variants, seed noise, and mrgan = paired + effect."""
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


def _row(df: pd.DataFrame, metric: str, baseline: str = "paired") -> pd.Series:
    return df[(df["metric"] == metric) & (df["baseline"] == baseline)].iloc[0]


def test_known_effect_is_found_with_8_patients_x_3_seeds() -> None:
    df = compare(_table(effect=-1.0), variant="mrgan")
    assert list(df.columns) == COLUMNS
    assert df["metric"].tolist()[:2] == ["mae_head", "mae_head"] and df["metric"].iloc[2] == "mae"  # masked first
    r = _row(df, "mae_head")
    assert r["role"] == "primary" and (df["role"] == "secondary").sum() == len(df) - 1
    assert r["ci_low"] <= -1.0 <= r["ci_high"] and r["ci_high"] < 0
    assert r["mean_difference"] == pytest.approx(-1.0, abs=0.3)
    assert r["p_value"] == pytest.approx(2 / 256) and r["min_attainable_p"] == pytest.approx(2 / 256)
    assert r["n_patients"] == 8 and r["n_seeds"] == 3
    assert r["decision"].startswith("mrgan better")
    assert "exact over 256 sign patterns" in r["method"] and "t-interval" in r["method"]
    assert "mrgan - paired, mae_head: -0.9" in headline(df) and "mrgan better" in headline(df)


def test_three_patients_cannot_decide_and_say_so() -> None:
    df = compare(_table(effect=-5.0, n_patients=3))
    r = _row(df, "mae_head")
    assert r["p_value"] == pytest.approx(0.25) and r["min_attainable_p"] == pytest.approx(0.25)
    assert r["decision"].startswith("undecided: with 3 test patients the smallest attainable p is 0.25")


def test_seeds_are_averaged_within_each_patient() -> None:
    """Copying each patient's seeds (more cells, same patients) must not change p, the effect or the CI:
    the cell test gave a smaller p for every added seed."""
    one = _table(effect=-0.4, n_seeds=1, seed=5)
    many = pd.concat([one.assign(seed=s) for s in range(5)], ignore_index=True)
    a, b = _row(compare(one), "mae"), _row(compare(many), "mae")
    for col in ("mean_difference", "ci_low", "ci_high", "p_value", "n_patients"):
        assert a[col] == pytest.approx(b[col]), col
    assert b["n_seeds"] == 5 and b["seed_sd"] == 0


def test_p_value_and_effect_use_one_estimand_with_unequal_seeds() -> None:
    """Patient P0 has 5 seeds with d = +3, six others one seed with d = -1: the patients' mean is
    (3 - 6) / 7 < 0 while the cells' mean is (15 - 6) / 11 > 0. The test must be of the patient means."""
    rows = []
    for p, (n_s, d) in enumerate([(5, 3.0)] + [(1, -1.0)] * 6):
        for s in range(n_s):
            rows += [{"patient": f"P{p}", "variant": "paired", "seed": s, "mae": 10.0},
                     {"patient": f"P{p}", "variant": "mrgan", "seed": s, "mae": 10.0 + d + 0.01 * p}]
    r = _row(compare(pd.DataFrame(rows), metrics=["mae"], primary=None), "mae")
    d_p = np.array([3.0] + [-1.0 + 0.01 * p for p in range(1, 7)])
    assert r["mean_difference"] == pytest.approx(d_p.mean())
    assert r["p_value"] == pytest.approx(float(sign_flip_p_values(d_p)))
    lo, hi = stats.t.interval(0.95, 6, loc=d_p.mean(), scale=stats.sem(d_p))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))


def test_exact_sign_flip_known_answers() -> None:
    d = np.array([-1.0, -2.0, -3.0, 0.5])  # |sum| 5.5; patterns reaching it: all-minus-with +0.5 and its mirror,
    # and the pattern with 0.5 flipped too (|-6.5|): 2 x 2 of 16
    assert float(sign_flip_p_values(d)) == pytest.approx(4 / 16)
    assert float(sign_flip_p_values(np.full(12, -0.5) + np.linspace(0, 0.1, 12))) == pytest.approx(2 / 4096)
    assert float(sign_flip_p_values(np.zeros(4))) == 1.0
    assert float(sign_flip_p_values(np.array([2.0]))) == 1.0  # one patient cannot decide
    # brute force over all patterns equals the vectorised half-enumeration, row by row
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(20, 7))
    signs = np.array(list(product([-1, 1], repeat=7)))
    brute = [(np.abs(signs @ row) >= abs(row.sum()) - 1e-12).mean() for row in batch]
    assert sign_flip_p_values(batch) == pytest.approx(brute)
    # beyond 20 patients: seeded random patterns, p = (b + 1) / (B + 1)
    p_mc = float(sign_flip_p_values(np.full(25, -0.5), n_permutations=999, seed=3))
    assert p_mc == pytest.approx(1 / 1000)
    assert min_attainable_p(3) == 0.25 and min_attainable_p(0) == 1.0


def test_t_interval_known_answer() -> None:
    d = np.array([1.0, 2.0, 4.0])
    lo, hi = t_intervals(d)
    assert (lo[0], hi[0]) == pytest.approx(stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d)))
    lo1, _ = t_intervals(np.array([1.0]))
    assert np.isnan(lo1[0])


def test_holm_known_answer() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.5, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_primary_at_alpha_others_holm_adjusted() -> None:
    df = compare(_table(effect=-0.5, n_patients=10, seed=3))
    primary = df[df["role"] == "primary"]
    assert len(primary) == 1 and primary["p_adjusted"].iloc[0] == primary["p_value"].iloc[0]
    sec = df[df["role"] == "secondary"]
    assert sec["p_adjusted"].tolist() == pytest.approx(holm(sec["p_value"].tolist()))
    assert (sec["p_adjusted"] >= sec["p_value"]).all()
    other = compare(_table(effect=-0.5, n_patients=10, seed=3), primary=("mae", "mrgan", "unpaired"))
    assert _row(other, "mae", "unpaired")["role"] == "primary"
    none = compare(_table(effect=-0.5), primary=("mae_head", "mrgan", "regression"))  # not trained
    assert (none["role"] == "secondary").all() and headline(none).startswith("no primary comparison")


def test_direction_of_better_follows_the_metric() -> None:
    # 10 patients: the smallest p, 2 / 1024, survives Holm's factor 11 (with 8, 11 x 2 / 256 = 0.086 does not)
    df = compare(_table(effect=-3.0, n_patients=10))  # mrgan's MAE lower, so its PSNR (30 - mae / 10) higher
    assert _row(df, "mae")["decision"].startswith("mrgan better")
    assert _row(df, "psnr")["mean_difference"] > 0 and _row(df, "psnr")["decision"].startswith("mrgan better")
    worse = compare(_table(effect=+1.0))
    assert _row(worse, "mae_head")["decision"].startswith("paired better")


def test_identical_columns_give_p_1() -> None:
    r = _row(compare(_table(effect=-1.0)), "psnr_head")  # psnr_head constant
    assert r["p_value"] == 1.0 and r["mean_difference"] == 0 and r["ci_low"] == 0 == r["ci_high"]


def test_without_seed_column_and_with_regression(tmp_path: Path) -> None:
    t = _table(effect=-1.0, n_seeds=1, variants=("paired", "regression", "mrgan")).drop(columns="seed")
    path = tmp_path / "per_patient.tsv"
    t.to_csv(path, sep="\t", index=False)
    df = compare(read_per_patient(path))
    assert set(df["baseline"]) == {"paired", "regression"} and (df["n_seeds"] == 1).all()
    assert (df["n_patients"] == 8).all() and df["seed_sd"].isna().all()


def test_non_finite_cells_are_left_out() -> None:
    t = _table(effect=-1.0)
    t.loc[(t["patient"] == "P0") & (t["variant"] == "mrgan"), "psnr"] = np.inf
    assert _row(compare(t), "psnr")["n_patients"] == 7


def test_cli(tmp_path: Path) -> None:
    path = tmp_path / "per_patient.tsv"
    _table(effect=-1.0).to_csv(path, sep="\t", index=False)
    out = tmp_path / "comparisons.tsv"
    assert main(["compare", "--per-patient", str(path), "--output", str(out), "--primary", "mae", "mrgan",
                 "unpaired"]) == 0
    df = pd.read_csv(out, sep="\t")
    assert list(df.columns) == COLUMNS and len(df) == 6 * 2
    assert df.loc[df["role"] == "primary", ["metric", "baseline"]].values.tolist() == [["mae", "unpaired"]]
    assert main(["compare", "--per-patient", str(path), "--output", str(out), "--primary", "dice", "mrgan",
                 "paired"]) == 2
    assert main(["compare", "--per-patient", str(tmp_path / "missing.tsv"), "--output", str(out)]) == 2
    dup = pd.concat([_table(0.0).iloc[:1], _table(0.0)])
    dup.to_csv(path, sep="\t", index=False)
    assert main(["compare", "--per-patient", str(path), "--output", str(tmp_path / "x.tsv")]) == 2


def test_one_patient_one_seed() -> None:
    r = _row(compare(_table(effect=-1.0, n_patients=1, n_seeds=1)), "mae")
    assert r["p_value"] == 1.0 and np.isnan(r["ci_low"]) and r["n_patients"] == 1
    assert r["decision"].startswith("undecided: with 1 test patient ")


def test_crossed_interval_only_where_simulation_showed_it_holds() -> None:
    """3+ seeds, 4+ patients, every patient every seed: the crossed patient x seed interval (target: new
    patients and new seeds) is given; with 2 seeds, 3 patients or a missing cell it is left empty."""
    full = compare(_table(effect=-1.0, n_patients=6, n_seeds=3), metrics=["mae"])
    r = _row(full, "mae")
    assert r["crossed_ci_low"] < r["mean_difference"] < r["crossed_ci_high"] and 0 <= r["crossed_p"] <= 1
    for table in (_table(effect=-1.0, n_patients=6, n_seeds=2), _table(effect=-1.0, n_patients=3, n_seeds=3)):
        assert np.isnan(_row(compare(table, metrics=["mae"]), "mae")["crossed_ci_low"])
    gap = _table(effect=-1.0, n_patients=6, n_seeds=3)
    gap = gap[~((gap["patient"] == "P0") & (gap["seed"] == 2))]
    assert np.isnan(_row(compare(gap, metrics=["mae"]), "mae")["crossed_p"])


def test_volume_columns_leave_out_patients_without_values() -> None:
    """The 3D / tissue columns are compared too; patients without them (2D PNG pairs: empty cells) are left
    out of those rows and n_patients says how many were used; lower-is-better follows each metric."""
    t = _table(effect=-1.0)
    vol = ~t["patient"].isin(["P6", "P7"])  # P6, P7: 2D pairs, no volume
    t["mae_3d_head"] = np.where(vol, t["mae"], np.nan)
    t["dice_gm"] = np.where(vol, 0.8 - 0.1 * (t["variant"] == "mrgan"), np.nan)
    t["hd95_gm"] = np.where(vol, 2.0 + (t["variant"] == "mrgan"), np.nan)
    out = compare(t)
    assert _row(out, "mae_3d_head")["n_patients"] == 6 and _row(out, "mae")["n_patients"] == 8
    assert _row(out, "dice_gm")["mean_difference"] == pytest.approx(-0.1)
    assert _row(out, "hd95_gm")["mean_difference"] == pytest.approx(1.0)
    # mrgan worse in both: lower Dice, larger HD95 (the rows here are Holm-adjusted over 30: undecided)
    assert decision("dice_gm", "mrgan", "paired", -0.1, 0.01, 8).startswith("paired better")
    assert decision("hd95_gm", "mrgan", "paired", 1.0, 0.01, 8).startswith("paired better")
    assert decision("slice_jump_brain", "mrgan", "paired", -1.0, 0.01, 8).startswith("mrgan better")
    assert "dice_csf" not in set(out["metric"])  # a column the table lacks: no row


def test_primary_metric_choices_are_the_compared_metrics() -> None:
    """`evaluation.primary.metric` may name any metric `ct2mr compare` tests, 3D and Dice included."""
    import yaml

    from ct2mr.evaluation.comparisons import METRICS

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    primary = schema["properties"]["evaluation"]["properties"]["primary"]["properties"]["metric"]
    assert primary["enum"] == METRICS
