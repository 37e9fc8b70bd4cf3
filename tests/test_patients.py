"""Patient table validation: each bad row gives one message naming table, line, column."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct2mr.errors import InputError
from ct2mr.cohort.patients import load_patients

HEADER = "patient\trole\tct\tmr\n"


def table(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "patients.tsv"
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


@pytest.fixture()
def scans(tmp_path: Path) -> tuple[str, str]:
    ct = tmp_path / "ct.nii.gz"
    mr = tmp_path / "mr.nii.gz"
    ct.write_bytes(b"x")
    mr.write_bytes(b"x")
    return str(ct), str(mr)


def test_default_table_roles(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_root)
    patients = load_patients("config/patients.tsv")
    roles = [p.role for p in patients]
    assert roles.count("paired_train") >= 4 and roles.count("paired_test") >= 3
    assert roles.count("ct_only") >= 3 and roles.count("mr_only") >= 3
    assert all(p.truth for p in patients if p.role.startswith("paired"))


def test_valid_table(tmp_path: Path, scans: tuple[str, str]) -> None:
    ct, mr = scans
    rows = [f"A\tpaired_train\t{ct}\t{mr}", f"B\tct_only\t{ct}\t", f"C\tmr_only\t\t{mr}"]
    patients = load_patients(table(tmp_path, rows))
    assert [(p.patient, p.has_ct, p.has_mr) for p in patients] == [
        ("A", True, True), ("B", True, False), ("C", False, True)]


@pytest.mark.parametrize(
    ("row", "where", "words"),
    [
        ("A/B\tct_only\t{ct}\t", "line 2", "does not match"),
        ("..\tct_only\t{ct}\t", "line 2", ""),
        ("A\tsome_role\t{ct}\t", "line 2 (patient 'A')", "is not one of"),
        ("A\tmr_only\t{ct}\t{mr}", "line 2 (patient 'A'), column ct", "role mr_only has no CT"),
        ("A\tct_only\t{ct}\t{mr}", "line 2 (patient 'A'), column mr", "role ct_only has no MR"),
        ("A\tpaired_test\t{ct}\t", "line 2 (patient 'A'), column mr", "needs a MR image"),
        ("A\tct_only\t/no/such/ct.nii.gz\t", "line 2 (patient 'A'), column ct", "file not found"),
    ],
)
def test_bad_rows(tmp_path: Path, scans: tuple[str, str], row: str, where: str, words: str) -> None:
    ct, mr = scans
    path = table(tmp_path, [row.format(ct=ct, mr=mr)])
    with pytest.raises(InputError) as info:
        load_patients(path)
    message = str(info.value)
    assert message.startswith(str(path)) and where in message and words in message, message


def test_patient_id_with_dotdot_rejected(tmp_path: Path, scans: tuple[str, str]) -> None:
    path = table(tmp_path, [f"a..b\tct_only\t{scans[0]}\t"])
    with pytest.raises(InputError, match=r"patient"):
        load_patients(path)


def test_duplicate_ids(tmp_path: Path, scans: tuple[str, str]) -> None:
    ct, _ = scans
    path = table(tmp_path, [f"A\tct_only\t{ct}\t", f"A\tct_only\t{ct}\t"])
    with pytest.raises(InputError, match=r"line 3 \(patient 'A'\): duplicate patient id 'A' \(first on line 2\)"):
        load_patients(path)


def test_header_problems(tmp_path: Path, scans: tuple[str, str]) -> None:
    with pytest.raises(InputError, match="header: missing column"):
        load_patients(table(tmp_path, ["A\tct_only"], header="patient\trole\n"))
    with pytest.raises(InputError, match=r"header: unknown column\(s\) \['site'\]"):
        load_patients(table(tmp_path, [f"A\tct_only\t{scans[0]}\t\tX"], header="patient\trole\tct\tmr\tsite\n"))
    with pytest.raises(InputError, match="patient table not found"):
        load_patients(tmp_path / "none.tsv")


def test_outputs_of_the_workflow_need_not_exist(tmp_path: Path) -> None:
    patients = load_patients(table(tmp_path, ["A\tct_only\tresults/phantom/A/ct.nii.gz\t"]))
    assert patients[0].ct == "results/phantom/A/ct.nii.gz"


def test_png_sources(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "1001.png").write_bytes(b"x")
    patients = load_patients(table(tmp_path, [f"A\tpaired_train\t{folder}\t{folder}/1???.png"]))
    assert patients[0].is_png
    with pytest.raises(InputError, match="file not found"):
        load_patients(table(tmp_path, [f"A\tct_only\t{folder}/9???.png\t"]))


def test_line_numbers_count_comment_and_blank_lines(tmp_path: Path, scans: tuple[str, str]) -> None:
    """The reader skips comment and blank lines; the message must still name the file's real line
    (it said "line 2" for a row on line 4, and "first on line 2" for a duplicate on line 4)."""
    ct, mr = scans
    path = table(tmp_path, ["# cohort A", "", f"A\tct_only\t{ct}\t{mr}"])
    with pytest.raises(InputError, match=r"line 4 \(patient 'A'\), column mr"):
        load_patients(path)
    path = table(tmp_path, [f"A\tct_only\t{ct}\t", "# the same patient again:", f"A\tct_only\t{ct}\t"])
    with pytest.raises(InputError, match=r"line 4 \(patient 'A'\): duplicate patient id 'A' \(first on line 2\)"):
        load_patients(path)


def test_hash_inside_a_path_is_data_not_a_comment(tmp_path: Path) -> None:
    scan = tmp_path / "scan#2.nii.gz"
    scan.write_bytes(b"x")
    path = table(tmp_path, ["# a comment line", f"A\tct_only\t{scan}\t"])
    assert load_patients(path)[0].ct == str(scan)


def test_empty_table_file(tmp_path: Path) -> None:
    path = tmp_path / "patients.tsv"
    path.write_text("# only a comment\n")
    with pytest.raises(InputError, match="patients.tsv"):
        load_patients(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{ct}\t{mr}\textra.nii.gz", "5 cells but the header has 4 columns (patient, role, ct, mr); extra cell 'extra.nii.gz'"),
        ("{ct}\t{mr}\tx\ty", "6 cells but the header has 4 columns (patient, role, ct, mr); extra cell 'x', 'y'"),
        ("{ct}", "3 cells but the header has 4 columns (patient, role, ct, mr); no cell for column mr"),
    ],
)
def test_ragged_row_names_table_line_and_cell(tmp_path: Path, scans: tuple[str, str], row: str, message: str) -> None:
    """Issue 8 item 8: a row with one cell too many used to shift its cells ("role: 'ct.nii.gz' is not one of ...")."""
    ct, mr = scans
    path = table(tmp_path, [f"P01\tpaired_train\t{ct}\t{mr}", "# a comment line", "",
                            "P02\tpaired_train\t" + row.format(ct=ct, mr=mr)])
    with pytest.raises(InputError) as err:
        load_patients(path)
    text = str(err.value)
    assert text.startswith(f"{path}: line 5 (patient 'P02'): {message}"), text
    assert "\n" not in text


def test_ragged_first_row_is_not_read_as_an_index_column(tmp_path: Path, scans: tuple[str, str]) -> None:
    """With pandas alone, a first row with one cell too many made the patient id an index (every cell shifted)."""
    ct, mr = scans
    path = table(tmp_path, [f"P01\tpaired_train\t{ct}\t{mr}\t{mr}"])
    with pytest.raises(InputError, match=r"line 2 \(patient 'P01'\): 5 cells .* extra cell"):
        load_patients(path)
