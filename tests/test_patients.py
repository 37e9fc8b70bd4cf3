"""Patient table validation: each bad row gives one message naming table, line, column."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct2mr.cohort.patients import load_patients
from ct2mr.errors import InputError

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


# --- issue 22 item 10a: `patients:` naming a folder


def test_a_folder_given_as_the_table_is_named_a_folder(tmp_path: Path) -> None:
    """It said "patient table not found" for a folder that plainly exists."""
    with pytest.raises(InputError, match=r"is a folder; the patient table is a TSV file"):
        load_patients(tmp_path)


# --- issue 22 item 9: only the phantom cohort's own rows are generated


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ("results/phantom/B/ct.nii.gz\t", "ct"),  # another patient's folder (a typo'd id)
        ("results/phantom/A/mr.nii.gz\t", "ct"),  # the MR's name in the CT column
        ("results/phantom/A/ct.nii.gzz\t", "ct"),  # no phantom format
        ("results/phantom/A/CT_dicom\t", "ct"),
        ("results/phantm/A/ct.nii.gz\t", "ct"),  # not the phantom folder at all
        ("results/preprocessed/A/ct.nii.gz\t", "ct"),
    ],
)
def test_a_typo_under_results_is_not_found_not_generated(tmp_path: Path, cells: str, column: str) -> None:
    """A path under results/ used to skip the existence check, and the phantom rule then made a phantom
    for any results/phantom/{id}/{ct,mr}.{ext} it was asked for: a typo became a training scan."""
    path = table(tmp_path, [f"A\tct_only\t{cells}"])
    with pytest.raises(InputError, match=rf"line 2 \(patient 'A'\), column {column}: file not found: .*"
                                         r"only a phantom row's own scans are generated \(results/phantom/A/ct"):
        load_patients(path)


def test_the_phantom_cohort_rows_are_generated(tmp_path: Path) -> None:
    rows = [f"A\tpaired_train\tresults/phantom/A/ct{ext}\tresults/phantom/A/mr_dicom\tresults/phantom/A/truth.json"
            for ext in (".nii.gz",)]
    rows += ["B\tct_only\tresults/phantom/B/ct.mha\t\t", "C\tmr_only\t\tresults/phantom/C/mr.nrrd\t",
             "D\tct_only\tresults/phantom/D/ct.nii\t\t"]
    patients = load_patients(table(tmp_path, rows, header="patient\trole\tct\tmr\ttruth\n"))
    assert [p.is_phantom for p in patients] == [True, True, True, True]
    with pytest.raises(InputError, match=r"column truth: file not found: results/phantom/A/truth\.jsn"):
        load_patients(table(tmp_path, [rows[0].replace("truth.json", "truth.jsn")],
                            header="patient\trole\tct\tmr\ttruth\n"))


# --- issue 22 item 4: a scan under a training role and a test role (leakage)


def _leak(tmp_path: Path, rows: list[str], folds: bool = False) -> None:
    from ct2mr.cohort.patients import check_leakage

    path = table(tmp_path, rows)
    check_leakage(load_patients(path), path, cross_validated=folds)


@pytest.fixture()
def real_volume(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real CT and MR volume, and a copy of the CT under a folder whose name holds a space."""
    ct = shared_data / "volumes" / "ct_head_invesalius.nii.gz"
    copy = tmp_path / "copied scans ü" / "ct copy.nii.gz"
    copy.parent.mkdir()
    copy.write_bytes(ct.read_bytes())
    return ct, copy


def test_the_same_file_as_train_and_test_is_refused(tmp_path: Path, shared_data: Path) -> None:
    vol = shared_data / "volumes"
    ct, mr, mr2 = vol / "ct_head_invesalius.nii.gz", vol / "mr_head_t1_mne.nii.gz", vol / "mr_brain_t1_stroke.nii.gz"
    rows = [f"A\tpaired_train\t{ct}\t{mr}", f"B\tpaired_test\t{ct.parent}/../volumes/{ct.name}\t{mr2}"]
    with pytest.raises(InputError) as err:
        _leak(tmp_path, rows)
    text = str(err.value)
    assert "line 3 (patient 'B'), column ct: the same file as line 2 (patient 'A'), column ct" in text, text
    assert "paired_test" in text and "paired_train" in text and "\n" not in text


def test_a_copy_of_a_training_scan_as_test_is_refused(tmp_path: Path, real_volume: tuple[Path, Path],
                                                     shared_data: Path) -> None:
    ct, copy = real_volume
    mr = shared_data / "volumes" / "mr_head_t1_mne.nii.gz"
    mr2 = shared_data / "volumes" / "mr_brain_t1_stroke.nii.gz"
    with pytest.raises(InputError, match=r"line 3 \(patient 'V'\), column ct: the same content as line 2 "
                                         r"\(patient 'T'\), column ct"):
        _leak(tmp_path, [f"T\tct_only\t{ct}\t", f"V\tpaired_val\t{copy}\t{mr}"])
    # held-out data may repeat among held-out rows, training data among training rows
    _leak(tmp_path, [f"A\tpaired_test\t{ct}\t{mr}", f"B\tpaired_test\t{copy}\t{mr2}"])
    _leak(tmp_path, [f"A\tpaired_train\t{ct}\t{mr}", f"B\tct_only\t{copy}\t"])


def test_k_fold_pools_train_and_test(tmp_path: Path, real_volume: tuple[Path, Path], shared_data: Path) -> None:
    """Under evaluation.folds every paired row is tested in one fold and trains the others: a duplicate
    between two paired_train rows lands in two folds."""
    ct, copy = real_volume
    mr = shared_data / "volumes" / "mr_head_t1_mne.nii.gz"
    mr2 = shared_data / "volumes" / "mr_brain_t1_stroke.nii.gz"
    rows = [f"A\tpaired_train\t{ct}\t{mr}", f"B\tpaired_train\t{copy}\t{mr2}"]
    _leak(tmp_path, rows)
    with pytest.raises(InputError, match=r"cross-validated \(evaluation.folds\)"):
        _leak(tmp_path, rows, folds=True)
    # an unpaired pool trains every fold: a pooled patient's scan in it is leakage too
    with pytest.raises(InputError, match=r"line 3 \(patient 'P'\), column ct: the same content"):
        _leak(tmp_path, [f"A\tpaired_train\t{ct}\t{mr}", f"P\tct_only\t{copy}\t"], folds=True)


def test_dicom_folders_by_file_and_by_content(tmp_path: Path, shared_data: Path) -> None:
    """A DICOM folder inside another row's folder shares its files; a copied folder shares its content.
    Different series of one export (other files) pass."""
    export = shared_data / "head_ct_dicom_export"
    vol = shared_data / "volumes"
    mr, mr2 = vol / "mr_head_t1_mne.nii.gz", vol / "mr_brain_t1_stroke.nii.gz"
    with pytest.raises(InputError, match=r"line 3 \(patient 'B'\), column ct: the same file as line 2 \(patient 'A'\)"):
        _leak(tmp_path, [f"A\tpaired_train\t{export}\t{mr}", f"B\tpaired_test\t{export}/DICOM\t{mr2}"])
    first, second, copy = tmp_path / "s1", tmp_path / "s2", tmp_path / "copy of s1"
    for folder, names in ((first, ("I10", "I11", "I12")), (second, ("I20", "I21", "I22")), (copy, ("I10", "I11", "I12"))):
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes((export / "DICOM" / name).read_bytes())
    _leak(tmp_path, [f"A\tpaired_train\t{first}\t{mr}", f"B\tpaired_test\t{second}\t{mr2}"])
    with pytest.raises(InputError, match=r"line 3 \(patient 'B'\), column ct: the same content as line 2"):
        _leak(tmp_path, [f"A\tpaired_train\t{first}\t{mr}", f"B\tpaired_test\t{copy}\t{mr2}"])


def test_a_test_slice_among_a_pool_is_refused(tmp_path: Path, shared_data: Path) -> None:
    """2D sources compare image by image: one test slice copied into an unpaired pool is leakage."""
    harvard = shared_data / "harvard_ctmr"
    pool = tmp_path / "my pool"
    pool.mkdir()
    for name in ("000.png", "001.png"):
        (pool / name).write_bytes((shared_data / "head_ct_2d" / name).read_bytes())
    rows = [f"H21\tpaired_test\t{harvard}/CT/21???.png\t{harvard}/MR/21???.png", f"POOL\tct_only\t{pool}\t"]
    _leak(tmp_path, rows)
    (pool / "slice.png").write_bytes((harvard / "CT" / "21010.png").read_bytes())
    with pytest.raises(InputError, match=r"line 3 \(patient 'POOL'\), column ct: the same content as line 2 "
                                         r"\(patient 'H21'\), column ct .*slice\.png"):
        _leak(tmp_path, rows)


def test_the_real_cohorts_pass_the_leakage_check(repo_root: Path, shared_data: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """No false alarm on the project's own real table, under its split and under 6 folds."""
    from ct2mr.cohort.patients import check_leakage

    monkeypatch.chdir(repo_root)
    patients = load_patients("config/harvard_patients.tsv")
    check_leakage(patients, "config/harvard_patients.tsv", cross_validated=False)
    check_leakage(patients, "config/harvard_patients.tsv", cross_validated=True)
