"""Table 1 with mean ± sd over seeds (report_tables.table1_over_seeds) and its CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ct2mr.cli import main
from ct2mr.evaluation.report_tables import table1_over_seeds


def _per_patient(seeds: bool) -> pd.DataFrame:
    rows = []
    for p, base in (("P1", 10.0), ("P2", 20.0)):
        for s in (0, 1, 2) if seeds else (0,):
            for v, off in (("paired", 0.0), ("mrgan", -1.0)):
                rows.append({"patient": p, "variant": v, "seed": s, "mae": base + off + s, "mae_head": base + 5,
                             "psnr": 30.0, "psnr_paper_convention": 78.13})
    df = pd.DataFrame(rows)
    return df if seeds else df.drop(columns="seed")


def test_cells_are_mean_sd_over_seeds() -> None:
    t = table1_over_seeds(_per_patient(seeds=True), ["paired", "mrgan"])
    assert list(t.columns)[:3] == ["patient", "mae_head_paired", "mae_head_mrgan"]  # masked MAE first
    p1 = t[t["patient"] == "P1"].iloc[0]
    assert p1["mae_paired"] == "11.00 ± 1.00" and p1["mae_mrgan"] == "10.00 ± 1.00"
    over_p = t[t["patient"] == "mean ± sd over patients"].iloc[0]
    assert over_p["mae_paired"] == "16.00 ± 7.07"  # patient means 11 and 21
    over_s = t[t["patient"] == "mean ± sd over seeds"].iloc[0]
    assert over_s["mae_paired"] == "16.00 ± 1.00"  # seed means 15, 16, 17
    assert t.attrs["n_seeds"] == 3


def test_one_seed_without_seed_column(tmp_path: Path) -> None:
    t = table1_over_seeds(_per_patient(seeds=False))
    assert t[t["patient"] == "P2"].iloc[0]["mae_paired"] == "20.00"  # no sd with one seed
    assert t[t["patient"] == "mean ± sd over seeds"].iloc[0]["mae_paired"] == "15.00"
    src = tmp_path / "per_patient.tsv"
    _per_patient(seeds=True).to_csv(src, sep="\t", index=False)
    out = tmp_path / "table1.html"
    assert main(["report-tables", "--table1-per-patient", str(src), "--variants", "paired", "mrgan",
                 "--title", "Table 1", "--output", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "mean ± sd over 3 training seeds" in html and "11.00 ± 1.00" in html
    assert main(["report-tables", "--table1-per-patient", str(tmp_path / "none.tsv"), "--title", "T",
                 "--output", str(out)]) == 2
