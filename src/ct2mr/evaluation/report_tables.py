"""Tables for the Snakemake report: TSV/JSON results as readable HTML, and their numbers for captions.

Snakemake's report shows HTML inline but offers TSV files only as downloads, so
each table a person should read in the report is also written as a small,
self-contained HTML page (``ct2mr report-tables``).

:class:`ReportNumbers` lets a caption quote the numbers of a result file: the
rule passes ``ReportNumbers(path)`` as a param; it is read only when the report
is rendered (Snakemake leaves such objects out of its parameter change check, so
it never triggers a rerun). In a caption::

    {% set qa = snakemake.params.numbers.json() %}
    TRE {{ "%.2f" | format(qa.tre_mm) }} mm

CLI::

    ct2mr report-tables --tsv results/metrics/per_patient.tsv --title "Per-patient metrics" \\
        --output results/report_tables/per_patient.html
    ct2mr report-tables --table1-per-patient results/metrics/per_patient.tsv --variants paired unpaired mrgan \\
        --title "Table 1" --output results/report_tables/table1.html
    ct2mr report-tables --registration-json results/preprocessed/*/registration_qa.json \\
        --title "Registration" --output results/report_tables/registration.html \\
        --output-tsv results/metrics/registration.tsv
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_text
from ct2mr.io.tables import read_tsv

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.2em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
p.note { color: #555; max-width: 60em; }
"""


class ReportNumbers:
    """Lazy reader of a result file (JSON or TSV) for report captions.

    ``str()`` is the path, so the object is harmless if it ends up in a shell
    command; the file is read only when :meth:`json` or :meth:`rows` is called.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def json(self) -> dict[str, Any]:
        """The JSON object in the file ({} when it does not exist yet)."""
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def rows(self) -> list[dict[str, Any]]:
        """The rows of the TSV file as dicts ([] when it does not exist yet)."""
        if not self.path.is_file():
            return []
        return read_tsv(self.path).to_dict("records")


def html_table(df: pd.DataFrame, title: str, note: str = "", float_format: str = "{:.3f}") -> str:
    """A self-contained HTML page holding ``df`` as a table."""
    body = df.to_html(index=False, border=0, na_rep="", float_format=float_format.format, escape=True)
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{note_html}{body}</body></html>\n"
    )


def registration_table(paths: list[str | Path]) -> pd.DataFrame:
    """One row per patient from its ``registration_qa.json`` (patient = the folder name)."""
    rows = []
    for path in sorted(map(Path, paths)):
        try:
            qa = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(path, None, f"not a readable registration QA file ({exc})") from None
        if not isinstance(qa, dict):
            raise InputError(path, None, f"not a registration QA file: expected a JSON object, got {type(qa).__name__}")
        rows.append({
            "patient": path.parent.name,
            "backend": qa.get("backend"),
            "runtime_s": qa.get("runtime_s"),
            "mi_before": qa.get("mi_before"),
            "mi_after": qa.get("mi_after"),
            "tre_mm_before": qa.get("tre_mm_before"),
            "tre_mm": qa.get("tre_mm"),
        })
    return pd.DataFrame(rows)


#: Table 1 metrics: head-masked MAE first, then the paper's whole-slice MAE and PSNR (both conventions)
TABLE1_METRICS: tuple[tuple[str, str], ...] = (
    ("mae_head", "mae_head"), ("mae", "mae"), ("psnr", "psnr"), ("psnr_paper", "psnr_paper_convention"),
)


def _mean_sd_text(values: Any, decimals: int = 2) -> str:
    """``"m ± sd"`` (sample sd, ddof=1) of the finite values; ``"m"`` for one value; ``""`` for none."""
    import numpy as np  # noqa: PLC0415

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ""
    if v.size == 1:
        return f"{v[0]:.{decimals}f}"
    return f"{v.mean():.{decimals}f} ± {v.std(ddof=1):.{decimals}f}"


def table1_over_seeds(per_patient: pd.DataFrame, variants: list[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1 layout with the training seeds' spread.

    One row per test patient: for each metric of :data:`TABLE1_METRICS` and each
    variant, the mean ± sd over the seeds (a single value with one seed). Then
    ``mean ± sd over patients`` (of the per-patient means over seeds) and
    ``mean ± sd over seeds`` (of each seed's mean over patients: how much a whole
    run's result moves with the training seed). ``per_patient`` needs ``patient``,
    ``variant`` and the metric columns; ``seed`` is optional (absent = seed 0).
    """
    df = per_patient.copy()
    if "seed" not in df.columns:
        df["seed"] = 0
    variants = variants or list(dict.fromkeys(df["variant"].astype(str)))
    patients = list(dict.fromkeys(df["patient"].astype(str)))
    df["patient"] = df["patient"].astype(str)
    df["variant"] = df["variant"].astype(str)
    cols = [(label, metric, v) for label, metric in TABLE1_METRICS if metric in df.columns for v in variants]
    rows: list[dict[str, Any]] = []
    for p in patients:
        row: dict[str, Any] = {"patient": p}
        for label, metric, v in cols:
            sel = df[(df["patient"] == p) & (df["variant"] == v)]
            row[f"{label}_{v}"] = _mean_sd_text(pd.to_numeric(sel[metric], errors="coerce"))
        rows.append(row)
    over_p: dict[str, Any] = {"patient": "mean ± sd over patients"}
    over_s: dict[str, Any] = {"patient": "mean ± sd over seeds"}
    for label, metric, v in cols:
        sel = df[df["variant"] == v].assign(value=lambda d, m=metric: pd.to_numeric(d[m], errors="coerce"))
        over_p[f"{label}_{v}"] = _mean_sd_text(sel.groupby("patient")["value"].mean())
        over_s[f"{label}_{v}"] = _mean_sd_text(sel.groupby("seed")["value"].mean())
    rows += [over_p, over_s]
    n_seeds = int(df["seed"].nunique())
    out = pd.DataFrame(rows, columns=["patient", *[f"{label}_{v}" for label, _, v in cols]])
    out.attrs["n_seeds"] = n_seeds
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--tsv", help="a TSV table to show")
    src.add_argument("--table1-per-patient", default=None,
                     help="per_patient.tsv: show the paper's Table 1 layout, mean ± sd over seeds per cell")
    src.add_argument("--registration-json", nargs="+", help="registration_qa.json files (one row each)")
    parser.add_argument("--title", required=True, help="page title")
    parser.add_argument("--note", default="", help="a sentence shown above the table")
    parser.add_argument("--output", required=True, help="output HTML page")
    parser.add_argument("--output-tsv", default=None, help="also write the table as TSV (registration)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="Table 1: variants in column order (default: as in the table)")
    parser.add_argument("--columns", nargs="+", default=None,
                        help="show only these columns, in this order (e.g. metric paired unpaired mrgan)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.evaluation.comparisons import read_per_patient  # noqa: PLC0415 - CLI only

    if args.tsv:
        df = read_tsv(args.tsv)
    elif args.table1_per_patient:
        per_patient = read_per_patient(args.table1_per_patient)
        df = table1_over_seeds(per_patient, args.variants)
        if not args.note:
            n = df.attrs["n_seeds"]
            args.note = (f"Each cell: mean ± sd over {n} training seeds (sd: sample, ddof=1)." if n > 1 else
                         "One training seed: each cell is that seed's value (no sd).")
    else:
        df = registration_table(args.registration_json)
    if args.columns:
        missing = [c for c in args.columns if c not in df.columns]
        if missing:
            raise InputError(args.tsv, "columns", f"no column(s) {missing}; the table has {list(df.columns)}")
        df = df[args.columns]
    if args.output_tsv:
        write_text(args.output_tsv, df.to_csv(sep="\t", index=False))
    write_text(args.output, html_table(df, args.title, args.note))
