"""The recorded Harvard grid (bench/results/realdata_grid/) analysed again with the patient as the unit.

The grid's claims were made with the former comparison, a sign-flip test over patient x seed
cells as if they were independent (its false-positive rate on null data: 25-46 %,
bench/results/comparisons_simulation.md). This reads each run's recorded per-patient table
(``per_patient_with_baselines.tsv`` where the baselines came from another run) and applies
``ct2mr compare`` as it is now: seeds averaged per patient, exact sign-flip test and t-interval
over the 3 test patients, mae_head mrgan vs paired primary, the rest Holm-adjusted.

Writes bench/results/realdata_grid/patient_level.{tsv,md}. Rerun:
``.venv/bin/python bench/reanalyse_realdata_grid.py`` (seconds; no training).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from ct2mr.evaluation.comparisons import compare, read_per_patient, to_tsv
from ct2mr.io.atomic import write_text

if str(Path(__file__).resolve().parent) not in sys.path:  # bench/: provenance (also when imported as bench.*)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit_line, provenance  # noqa: E402

GRID = Path(__file__).resolve().parent / "results" / "realdata_grid"
RUNS = ("it1200_nopools", "it1200_pools", "it4800_nopools", "it4800_pools")


def main() -> int:
    prov = provenance()
    tables = []
    for run in RUNS:
        folder = GRID / run
        src = folder / "per_patient_with_baselines.tsv"
        if not src.is_file():
            src = folder / "per_patient.tsv"
        df = compare(read_per_patient(src))
        tables.append(df.assign(run=run)[["run", *df.columns]])
    table = pd.concat(tables, ignore_index=True)
    write_text(GRID / "patient_level.tsv", to_tsv(table))
    lines = [
        "# The Harvard grid with the patient as the unit (issue 20)", "",
        commit_line(prov["commit"]), "",
        "Recorded by `bench/reanalyse_realdata_grid.py` from each run's recorded per-patient table. Each "
        "patient's difference is the mean over its 3 seeds; p: exact sign-flip test over the 3 test patients "
        "(smallest attainable p = 2/2^3 = 0.25); 95% CI: t-interval over the 3 patients (2 df); `mae_head` "
        "mrgan - paired is the primary comparison, every other row is Holm-adjusted. MAE in grey levels (0-255).", "",
        "| run | metric | baseline | mean difference | 95% CI | p | p (Holm) | seed sd | decision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table[table["metric"].isin(["mae_head", "mae"])].itertuples():
        lines.append(f"| {r.run} | {r.metric} | {r.baseline} | {r.mean_difference:+.2f} | {r.ci_low:+.2f} to "
                     f"{r.ci_high:+.2f} | {r.p_value:.3g} | {r.p_adjusted:.3g} | {r.seed_sd:.2f} | {r.decision} |")
    lines += ["", "No row can decide: with 3 test patients no p goes below 0.25. The intervals over patients are "
              "wide (2 degrees of freedom), so the former claims built on p-values of 0.0039 and 0.012 over the 9 "
              "cells are withdrawn (see README.md, 'Correction'). The cross-validated run that tests all 6 pairs is "
              "bench/results/realdata_cv/.", ""]
    write_text(GRID / "patient_level.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
