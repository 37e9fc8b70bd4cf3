"""The real-data evidence: Harvard pairs with 6-fold cross-validation, analysed with the patient as the unit.

Reads a finished run of ``config/harvard_cv.yaml`` (6 paired patients of
../shared/data/harvard_ctmr, 6 folds so every pair is tested once by models that never saw it,
both real unpaired pools, the four variants, demo preset at 1200 iterations, the seeds the run
has) and records under bench/results/realdata_cv/:

* ``per_patient.tsv``, ``comparisons.tsv``, ``folds.tsv``, ``summary.tsv``: the run's own tables;
* ``results.md`` / ``results.json``: the primary comparison and every ``mae_head`` / ``mae`` row,
  the training CPU time per variant, and what an **ensemble** gains over one model: for each
  fold, variant and test patient, the mean Syn_MR of the fold's seed models
  (:func:`ct2mr.models.apply.synthesize_slices` with several models) against each single seed
  (only with 2+ seeds; the fold models cannot be ensembled on the CV patients, who trained all
  but one of them).

Run the workflow first, beside ../shared (the table's paths are relative to it)::

    mkdir -p ../cvrun/config && cp config/harvard_patients.tsv ../cvrun/config/
    .venv/bin/snakemake --cores 2 --directory ../cvrun --configfile config/config.yaml config/harvard_cv.yaml
    .venv/bin/python bench/record_realdata_cv.py --workdir ../cvrun
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ct2mr.evaluation.comparisons import read_per_patient
from ct2mr.evaluation.evaluate import evaluate_patient
from ct2mr.io.atomic import write_json, write_text
from ct2mr.io.tables import read_tsv
from ct2mr.models.apply import synthesize_slices
from ct2mr.models.model_folder import load_ensemble
from ct2mr.preprocess.slices import load_slices
from ct2mr.training.folds import read_folds

if str(Path(__file__).resolve().parent) not in sys.path:  # bench/: provenance (also when imported as bench.*)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit_line, provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "realdata_cv"
TABLES = ("per_patient.tsv", "comparisons.tsv", "folds.tsv", "summary.tsv")


def training_cpu(work: Path) -> dict[str, dict[str, float]]:
    """CPU seconds and wall seconds of the training jobs, per variant (sums over folds and seeds)."""
    out: dict[str, dict[str, float]] = {}
    for f in sorted((work / "results" / "benchmarks" / "train").glob("*_fold*_seed*.tsv")):
        variant = f.name.split("_fold")[0]
        row = read_tsv(f).iloc[-1]
        d = out.setdefault(variant, {"jobs": 0, "cpu_s": 0.0, "wall_s": 0.0})
        d["jobs"] += 1
        d["cpu_s"] += float(row["cpu_time"])
        d["wall_s"] += float(row["s"])
    return out


def ensemble_gain(work: Path, per_patient: pd.DataFrame, folds: dict[str, int]) -> list[dict[str, Any]]:
    """Per variant and test patient: MAE of the mean of the fold's seed models vs each single seed."""
    seeds = sorted(per_patient["seed"].unique())
    if len(seeds) < 2:
        return []
    rows = []
    for variant in sorted(per_patient["variant"].unique()):
        for patient, fold in sorted(folds.items()):
            dirs = [work / "results" / "models" / variant / f"fold{fold}" / f"seed{s}" for s in seeds]
            models = load_ensemble(dirs, device="cpu")
            slices = load_slices(work / "results" / "slices" / f"{patient}.npz")
            synth = synthesize_slices(models, slices["ct"], batch_size=16)
            m = evaluate_patient(slices, {"mr_syn": synth["mr_slices"], "z_index": slices["z_index"]})
            single = per_patient[(per_patient["variant"] == variant) & (per_patient["patient"] == patient)]
            for metric in ("mae_head", "mae"):
                vals = single[metric].astype(float)
                rows.append({"variant": variant, "patient": patient, "fold": fold, "metric": metric,
                             "n_models": len(dirs), "ensemble": float(m[metric]), "single_mean": float(vals.mean()),
                             "single_best": float(vals.min()), "gain_vs_mean": float(m[metric] - vals.mean())})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Harvard pairs, 6-fold cross-validation, the patient as the unit (issue 20)", "",
             commit_line(result["commit"]), "",
             f"Recorded {result['recorded']} by `bench/record_realdata_cv.py` from the run in `{result['workdir']}` "
             f"(`config/harvard_cv.yaml`, seeds {result['seeds']}). Test patients: all {result['n_patients']} pairs, "
             "each synthesised by the models of its own fold (trained on the other 5 pairs and both pools). "
             "MAE in grey levels 0-255 (negative: mrgan better).", "",
             "## The primary comparison", "", result["headline"], "",
             "## mae_head and mae, every baseline", "",
             "| metric | variant - baseline | role | mean difference | 95% CI (t, patients) | p | p (Holm) "
             "| min attainable p | seeds | seed sd | decision |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['metric']} | {r['variant']} - {r['baseline']} | {r['role']} | {r['mean_difference']:+.2f} | "
                     f"{r['ci_low']:+.2f} to {r['ci_high']:+.2f} | {r['p_value']:.3g} | {r['p_adjusted']:.3g} | "
                     f"{r['min_attainable_p']:.3g} | {r['n_seeds']} | "
                     f"{'' if pd.isna(r['seed_sd']) else format(r['seed_sd'], '.2f')} | {r['decision']} |")
    lines += ["", "## Per patient (mae_head, mean over seeds)", "", result["per_patient_md"], "",
              "## Training cost", "", "| variant | jobs | CPU s (sum) | wall s (sum) |", "|---|---|---|---|"]
    for v, d in result["training"].items():
        lines.append(f"| {v} | {d['jobs']} | {d['cpu_s']:.0f} | {d['wall_s']:.0f} |")
    lines += ["", "## Ensemble of a fold's seed models vs one model", ""]
    if result["ensemble"]:
        df = pd.DataFrame(result["ensemble"])
        g = df.groupby(["variant", "metric"]).agg(ensemble=("ensemble", "mean"), single_mean=("single_mean", "mean"),
                                                  gain=("gain_vs_mean", "mean"), worst_gain=("gain_vs_mean", "max"))
        lines += ["Mean over the 6 test patients; gain = ensemble MAE - the mean single-seed MAE (negative: the "
                  "ensemble is better); worst = the patient where it helped least.", "",
                  "| variant | metric | ensemble | single seed (mean) | gain | worst patient's gain |",
                  "|---|---|---|---|---|---|"]
        for (v, m), r in g.iterrows():
            lines.append(f"| {v} | {m} | {r['ensemble']:.2f} | {r['single_mean']:.2f} | {r['gain']:+.2f} | "
                         f"{r['worst_gain']:+.2f} |")
    else:
        lines.append("Not measured: the run has one seed per fold, so there is no ensemble to form on the test "
                     "patients.")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="the finished run of config/harvard_cv.yaml")
    args = ap.parse_args()
    prov = provenance()
    metrics = args.workdir / "results" / "metrics"
    OUT.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        shutil.copyfile(metrics / name, OUT / name)
    per_patient = read_per_patient(metrics / "per_patient.tsv")
    comp = read_tsv(metrics / "comparisons.tsv")
    folds = read_folds(metrics / "folds.tsv")
    primary = comp[comp["role"] == "primary"].iloc[0]
    headline = (f"**{primary['metric']}, {primary['variant']} - {primary['baseline']}: "
                f"{primary['mean_difference']:+.2f} grey levels (95% CI {primary['ci_low']:+.2f} to "
                f"{primary['ci_high']:+.2f}; exact sign-flip p = {primary['p_value']:.3g}, smallest attainable "
                f"{primary['min_attainable_p']:.3g}; {int(primary['n_patients'])} patients x "
                f"{int(primary['n_seeds'])} seeds). {primary['decision']}.**")
    wide = (per_patient.groupby(["patient", "variant"])["mae_head"].mean().unstack("variant").round(2)
            .join(pd.Series(folds, name="fold")))
    result = {
        **prov, "workdir": str(args.workdir), "seeds": sorted(int(s) for s in per_patient["seed"].unique()),
        "n_patients": len(folds), "headline": headline,
        "rows": comp[comp["metric"].isin(["mae_head", "mae"])].replace({np.nan: None}).to_dict("records"),
        "per_patient_md": wide.to_markdown(), "training": training_cpu(args.workdir),
        "ensemble": ensemble_gain(args.workdir, per_patient, folds),
    }
    write_json(OUT / "results.json", result)
    write_text(OUT / "results.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
