"""HTML tables for the report and the lazily read numbers captions quote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ct2mr.cli import main
from ct2mr.evaluation.report_tables import ReportNumbers, registration_table


def test_report_numbers_reads_only_when_asked(tmp_path: Path) -> None:
    qa = tmp_path / "registration_qa.json"
    numbers = ReportNumbers(qa)
    assert str(numbers) == str(qa) and numbers.json() == {} and numbers.rows() == []
    qa.write_text(json.dumps({"tre_mm": 0.42}))
    assert numbers.json()["tre_mm"] == 0.42


def test_tsv_to_html_with_chosen_columns(tmp_path: Path) -> None:
    tsv = tmp_path / "summary.tsv"
    tsv.write_text("metric\tpaired\tpaired_mean\tmrgan\nmae\t9.87 ± 0.22\t9.873\t9.18 ± 0.21\n", encoding="utf-8")
    out = tmp_path / "summary.html"
    assert main(["report-tables", "--tsv", str(tsv), "--title", "Summary <T1>", "--output", str(out),
                 "--columns", "metric", "paired", "mrgan"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<th>paired</th>" in page and "<th>mrgan</th>" in page and "paired_mean" not in page
    assert "9.18 ± 0.21" in page and "Summary &lt;T1&gt;" in page  # escaped title
    assert main(["report-tables", "--tsv", str(tsv), "--title", "x", "--output", str(out),
                 "--columns", "metric", "cyclegan"]) == 2


def test_registration_table_one_row_per_patient(tmp_path: Path) -> None:
    paths = []
    for patient, tre in (("P02", 0.4), ("P01", 0.3)):
        d = tmp_path / patient
        d.mkdir()
        (d / "registration_qa.json").write_text(json.dumps(
            {"backend": "simpleitk", "runtime_s": 1.0, "mi_before": 0.1, "mi_after": 0.3,
             "tre_mm_before": 9.0, "tre_mm": tre}))
        paths.append(d / "registration_qa.json")
    df = registration_table(paths)
    assert list(df["patient"]) == ["P01", "P02"] and list(df["tre_mm"]) == [0.3, 0.4]
    (tmp_path / "P03").mkdir()
    bad = tmp_path / "P03" / "registration_qa.json"
    bad.write_text("{")
    with pytest.raises(Exception, match="P03/registration_qa.json"):
        registration_table([bad])


def test_unreadable_inputs_are_one_line_errors(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A QA JSON that is not an object / not UTF-8, or an empty TSV, gave raw tracebacks
    (AttributeError, UnicodeDecodeError, EmptyDataError)."""
    from ct2mr.errors import InputError

    for name, data in (("list", b"[1, 2]"), ("latin1", b'{"backend": "\xe9"}')):
        qa = tmp_path / name / "registration_qa.json"
        qa.parent.mkdir()
        qa.write_bytes(data)
        with pytest.raises(InputError, match=f"{name}/registration_qa.json"):
            registration_table([qa])
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert main(["report-tables", "--tsv", str(empty), "--title", "x", "--output", str(tmp_path / "x.html")]) == 2
    assert "empty.tsv" in capsys.readouterr().err
