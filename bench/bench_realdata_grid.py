"""Issue 9's recorded grid: does unpaired data help a few paired patients? (harvard_ctmr)

Four whole-workflow runs of config/harvard.yaml (3 patients train: H02, H16, H20; 3 held
out: H21, H28, H32), each with ``training.seeds: [0, 1, 2]`` and all four variants
(paired, unpaired, mrgan, regression) at the demo preset:

* ``it1200_nopools`` / ``it1200_pools``: 1200 iterations (the preset), without and with
  the two real unpaired pools (HMR_POOL: 324 T2 slices of 13 MR-only patients;
  HCT_POOL: 200 web-sourced head CT images);
* ``it4800_nopools`` / ``it4800_pools``: 4x longer (``overrides: {n_const: 2400,
  n_decay: 2400}``).

Each run's tables (per_patient, summary, table1, comparisons) and run-level figures go
to ``bench/results/realdata_grid/<run>/``; ``grid.md`` / ``grid.tsv`` gather the
comparisons of every run, plus the effect of the pools themselves (the same variant,
with minus without pools, per patient x seed, with the same bootstrap CI and sign-flip
test), and whether paired / regression (which never read the pools) came out identical
in the two runs of one length.

Reproduce: ``.venv/bin/python bench/bench_realdata_grid.py [--runs it1200_nopools ...]
[--work DIR] [--cores 2]`` (about an hour on 2 idle cores; runs already recorded under
the results folder are kept unless named in --runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_realdata  # noqa: E402

from ct2mr.evaluation.comparisons import compare  # noqa: E402
from provenance import commit_line, provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "realdata_grid"
WORK = REPO / "bench" / "work" / "realdata_grid"
SEEDS = [0, 1, 2]
RUNS: dict[str, dict] = {
    "it1200_nopools": {"pools": False, "overrides": {}},
    "it1200_pools": {"pools": True, "overrides": {}},
    "it4800_nopools": {"pools": False, "overrides": {"n_const": 2400, "n_decay": 2400}},
    "it4800_pools": {"pools": True, "overrides": {"n_const": 2400, "n_decay": 2400}},
}
METRICS = ["mae_head", "mae", "psnr_head", "psnr", "ssim_head", "ssim"]


def run_one(name: str, work: Path, cores: int, variants: list[str], seeds: list[int] = SEEDS,
            resume: bool = False) -> int:
    spec = RUNS[name]
    training = {"seeds": seeds, "variants": variants, "overrides": spec["overrides"]}
    return bench_realdata.run(OUT / name, work / name, pools=spec["pools"], training=training,
                              figures=False, cores=cores, resume=resume)


def pools_effect(length: str) -> pd.DataFrame:
    """Each variant with pools minus the same variant without, per patient x seed."""
    a = pd.read_csv(OUT / f"{length}_pools" / "per_patient.tsv", sep="\t")
    b = pd.read_csv(OUT / f"{length}_nopools" / "per_patient.tsv", sep="\t")
    rows = []
    for variant in ("unpaired", "mrgan"):
        if variant not in set(a.variant) or variant not in set(b.variant):
            continue  # not trained in both runs of this length (e.g. unpaired at 4800 without pools)
        both = pd.concat([a[a.variant == variant].assign(variant="with_pools"),
                          b[b.variant == variant].assign(variant="without_pools")])
        df = compare(both, variant="with_pools", baselines=["without_pools"], metrics=METRICS)
        df.insert(0, "trained", variant)
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def identical_baselines(length: str) -> dict[str, float]:
    """Largest |difference| of each metric for paired / regression between the two runs of one length."""
    a = pd.read_csv(OUT / f"{length}_pools" / "per_patient.tsv", sep="\t")
    b = pd.read_csv(OUT / f"{length}_nopools" / "per_patient.tsv", sep="\t")
    out = {}
    for variant in ("paired", "regression"):
        m = a[a.variant == variant].merge(b[b.variant == variant], on=["patient", "seed"], suffixes=("_a", "_b"))
        out[variant] = float(max((m[f"{k}_a"] - m[f"{k}_b"]).abs().max() for k in METRICS)) if len(m) else float("nan")
    return out


def borrowed_baselines(name: str) -> pd.DataFrame | None:
    """A pools run's per-patient table completed with the baselines it did not train.

    ``paired`` and ``regression`` never read the unpaired pools (ct2mr.training.roles): trained with
    the same seed on the same paired slices they are the same models with or without the
    pools, so a pools run trained with ``--variants unpaired mrgan`` takes their rows from
    the run without pools of the same length (``grid.md`` says which rows were borrowed).
    """
    if not name.endswith("_pools"):
        return None
    own = pd.read_csv(OUT / name / "per_patient.tsv", sep="\t")
    other = OUT / name.replace("_pools", "_nopools") / "per_patient.tsv"
    missing = [v for v in ("paired", "regression") if v not in set(own["variant"])]
    if not missing or not other.is_file():
        return None
    base = pd.read_csv(other, sep="\t")
    base = base[base["variant"].isin(missing) & base["seed"].isin(set(own["seed"]))]  # the same seeds only
    return pd.concat([own, base], ignore_index=True)


def write_summary() -> None:
    done = [n for n in RUNS if (OUT / n / "comparisons.tsv").is_file()]
    frames = []
    borrowed = {}
    for n in done:
        c = pd.read_csv(OUT / n / "comparisons.tsv", sep="\t")
        full = borrowed_baselines(n)
        if full is not None:
            full.to_csv(OUT / n / "per_patient_with_baselines.tsv", sep="\t", index=False)
            c = compare(full, variant="mrgan", metrics=METRICS)
            c.to_csv(OUT / n / "comparisons_with_baselines.tsv", sep="\t", index=False, float_format="%.6g")
            borrowed[n] = sorted(set(full["variant"]) - set(pd.read_csv(OUT / n / "per_patient.tsv", sep="\t")["variant"]))
        c.insert(0, "run", n)
        frames.append(c)
    lines = ["# Issue 9 grid: harvard_ctmr, 3 train / 3 test patients, 3 seeds, demo preset", "",
             commit_line(provenance()["commit"]) + " (this summary; each run's own commit in the table below)", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/bench_realdata_grid.py`; "
             "per-run tables under each run's folder. Differences are variant - baseline in grey levels "
             "(0-255) for MAE (negative favours the variant), dB for PSNR, SSIM units; CI: hierarchical "
             "bootstrap over patients then seeds (10000); p: exact two-sided sign-flip test over the "
             "n_patients x n_seeds differences (smallest possible p = 2 / 2^(cells): 0.0039 with 9 cells, "
             "0.25 with 3).", ""]
    timing = {}
    for n in done:
        rec = json.loads((OUT / n / "realdata.json").read_text())
        timing[n] = (rec["wall_s"], sum(rec["train_s"].values()), rec.get("commit", "unknown"))
    lines += ["| run | variants trained | workflow wall min | training job s (sum) | commit |", "|---|---|---|---|---|"]
    for n, (w, t, commit) in timing.items():
        trained = sorted({k.split()[1].split("_seed")[0] for k in json.loads((OUT / n / "realdata.json").read_text())["train_s"]})
        lines.append(f"| {n} | {', '.join(trained)} | {w / 60:.1f} | {t:.0f} | {commit} |")
    lines.append("")
    for n, vs in borrowed.items():
        lines.append(f"{n}: {', '.join(vs)} not trained in this run; their rows come from "
                     f"{n.replace('_pools', '_nopools')} (same seeds, same paired slices: those variants never read "
                     "the pools), see per_patient_with_baselines.tsv.")
    if borrowed:
        lines.append("")
    if frames:
        grid = pd.concat(frames, ignore_index=True)
        grid.to_csv(OUT / "grid.tsv", sep="\t", index=False, float_format="%.6g")
        lines += ["## mrgan against each baseline", "",
                  grid.drop(columns=["method", "variant"]).to_markdown(index=False, floatfmt=".3g"), ""]
    effects = []
    for length in ("it1200", "it4800"):
        if {f"{length}_pools", f"{length}_nopools"} <= set(done):
            e = pools_effect(length)
            e.insert(0, "length", length)
            effects.append(e)
            same = identical_baselines(length)
            if not any(v != v for v in same.values()):  # both runs trained them
                lines.append(f"{length}: paired / regression (never read the pools) between the two runs, largest "
                             f"|difference| over metrics and cells: paired {same['paired']:.3g}, "
                             f"regression {same['regression']:.3g}.")
    if effects:
        eff = pd.concat(effects, ignore_index=True)
        eff.to_csv(OUT / "pools_effect.tsv", sep="\t", index=False, float_format="%.6g")
        lines += ["", "## Effect of the pools (same variant, with minus without pools)", "",
                  eff.drop(columns=["method", "variant", "baseline"]).to_markdown(index=False, floatfmt=".3g"), ""]
    (OUT / "grid.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["paired", "unpaired", "mrgan", "regression"],
                    choices=["paired", "unpaired", "mrgan", "regression"],
                    help="variants trained in the named runs (default all four; the table says which ran)")
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS,
                    help="seeds trained (default 0 1 2); with --resume, add seeds one call at a time")
    ap.add_argument("--resume", action="store_true",
                    help="keep the run's work folder: Snakemake trains only what is missing (e.g. a new seed)")
    ap.add_argument("--summary-only", action="store_true", help="only rewrite grid.md from the recorded runs")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for name in args.runs:
            t = time.perf_counter()
            rc = run_one(name, args.work, args.cores, args.variants, args.seeds, args.resume)
            print(f"{name}: exit {rc} in {(time.perf_counter() - t) / 60:.1f} min", flush=True)
            if rc:
                return rc
            write_summary()
    write_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
