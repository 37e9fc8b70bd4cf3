"""The real-data run: the whole workflow on ../shared/data/harvard_ctmr.

Six patients of real, already registered 256x256 CT/MR slices (Harvard Whole Brain
Atlas): three train the three variants (demo preset, CPU), three are held out and
evaluated. The run uses the real Snakefile with config/harvard.yaml in a scratch
working directory (bench/work/realdata, git-ignored); the per-patient tables,
summary, tests and figures are copied to bench/results/realdata/.

Reproduce: ``.venv/bin/python bench/bench_realdata.py [--out DIR] [--work DIR] [--no-pools]`` (about
5-10 minutes on 2 cores). With the pools of config/harvard_patients.tsv (default), the unpaired
cycles also see 324 real MR-only and 200 real CT-only slices.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "harvard_ctmr"
WORK = REPO / "bench" / "work" / "realdata"
OUT = REPO / "bench" / "results" / "realdata"
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_realdata)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="results folder (default bench/results/realdata)")
    ap.add_argument("--work", type=Path, default=WORK, help="scratch working directory (default bench/work/realdata)")
    ap.add_argument("--no-pools", action="store_true",
                    help="leave the unpaired pools (ct_only / mr_only rows) out of the patient table")
    args = ap.parse_args()
    return run(args.out, args.work, pools=not args.no_pools)


def run(OUT: Path, WORK: Path, pools: bool = True, training: dict | None = None,  # noqa: N803 - module constants' names
        figures: bool = True, cores: int = 2, resume: bool = False) -> int:
    """Run the workflow on harvard_ctmr in WORK, copy tables (and figures) to OUT.

    ``training``: keys merged into the config's ``training:`` section (e.g. seeds,
    overrides); ``figures=False`` copies only the run-level figures (losses, metrics,
    difference maps), not the per-patient ones. ``resume=True`` keeps WORK from an
    earlier call, so that Snakemake runs only what is missing (e.g. a seed added to
    ``training.seeds``); the recorded wall time is then the sum over the calls.
    """
    if not DATA.is_dir():
        print(f"real data not found at {DATA}: nothing to do")
        return 0
    prov = provenance()
    earlier_wall, earlier_commits = 0.0, []
    if resume and (OUT / "realdata.json").is_file() and WORK.is_dir():
        earlier = json.loads((OUT / "realdata.json").read_text())
        earlier_wall = float(earlier["wall_s"])
        # the commits of the earlier calls whose outputs this one keeps (their jobs are not rerun)
        earlier_commits = [c for c in [*earlier.get("earlier_commits", []), earlier.get("commit", "unknown")]
                           if c != prov["commit"]]
    else:
        shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(REPO / "config" / "harvard_patients.tsv", sep="\t", comment="#", dtype=str)
    for col in ("ct", "mr"):  # the table's paths are relative to the project root
        table[col] = [str((REPO / p).resolve().parent / Path(p).name) if isinstance(p, str) and p else ""
                      for p in table[col]]
    if not pools:
        table = table[~table["role"].isin(["ct_only", "mr_only"])]
    table.to_csv(WORK / "patients.tsv", sep="\t", index=False)
    config = yaml.safe_load((REPO / "config" / "harvard.yaml").read_text())
    config["patients"] = "patients.tsv"
    config.setdefault("training", {}).update(training or {})
    (WORK / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(WORK),
           "--configfile", str(WORK / "config.yaml"), "--cores", str(cores)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start + earlier_wall
    (WORK / "snakemake.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        print(proc.stderr[-5000:])
        return proc.returncode
    subprocess.run([*cmd[:-2], "--report", str(WORK / "report.html")], check=True, capture_output=True)

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    res = WORK / "results"
    for f in sorted((res / "metrics").glob("*.tsv")):
        shutil.copy(f, OUT / f.name)
    for f in sorted((res / "figures").glob("*.png")):
        if figures or not f.stem.split("_")[-1].startswith("H"):
            shutil.copy(f, OUT / f.name)
    bench = {}
    for f in sorted((res / "benchmarks" / "train").rglob("*.tsv")):
        name = "/".join(f.relative_to(res / "benchmarks" / "train").with_suffix("").parts)
        bench[f"train {name}"] = float(pd.read_csv(f, sep="\t")["s"].iloc[0])
    per_patient = pd.read_csv(OUT / "per_patient.tsv", sep="\t")
    summary = pd.read_csv(OUT / "summary.tsv", sep="\t")
    record = {
        "commit": prov["commit"], "recorded": prov["recorded"],
        **({"earlier_commits": list(dict.fromkeys(earlier_commits))} if earlier_commits else {}),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": wall, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "train_s": bench, "config": config,
        "per_patient": per_patient.to_dict("records"),
    }
    (OUT / "realdata.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    cols = ["patient", "variant", "seed", "n_slices", "mae", "psnr", "ssim", "mae_head", "psnr_head", "ssim_head"]
    lines = [
        "# Real-data run: harvard_ctmr, 3 patients train / 3 held out", "",
        commit_line(prov["commit"]) + (f" (jobs kept from earlier calls: {', '.join(record['earlier_commits'])})"
                                       if earlier_commits else ""), "",
        f"Reproduce: `.venv/bin/python bench/bench_realdata.py{''.join(' ' + a for a in sys.argv[1:])}` "
        f"({record['when']}; whole workflow "
        f"{wall / 60:.1f} min on {record['cpus']} CPUs; training "
        + ", ".join(f"{k.split()[1]} {v:.0f} s" for k, v in bench.items()) + ").", "",
        "Train: H02, H16, H20; test: H21, H28, H32. Preset `demo` (64 px), "
        f"training section: `{json.dumps(config['training'])}`, "
        "`unpaired_includes_paired: true`; "
        + ("unpaired pools: HMR_POOL (324 T2 slices of 13 MR-only patients) and HCT_POOL (200 head CT images)."
           if pools else "no unpaired pools (the paired training patients' slices only)."), "",
        "## Per patient (0-255 scale; PSNR in dB, ours: add 48.13 dB for the paper's convention)", "",
        per_patient[cols].to_markdown(index=False, floatfmt=".3f"), "",
        "## Summary (mean ± sd over the 3 test patients)", "",
        summary[["metric", "seed", *[c for c in summary.columns if c in ("paired", "unpaired", "mrgan", "regression")]]]
        .to_markdown(index=False),
        "",
    ]
    if (OUT / "comparisons.tsv").is_file():
        comp = pd.read_csv(OUT / "comparisons.tsv", sep="\t")
        lines += ["## Comparisons (mrgan - baseline; hierarchical bootstrap 95% CI, sign-flip permutation p)", "",
                  comp.drop(columns="method").to_markdown(index=False, floatfmt=".3g"), ""]
    (OUT / "realdata.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
