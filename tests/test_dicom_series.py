"""ct2mr.io.dicom_series: a scanner-like export (phantom with known truth, and the real one).

The phantom export (:mod:`ct2mr.phantom.export`) holds a localizer, axial series
of 5 and 2.5 mm, a 2 mm series with 20 deg gantry tilt, an uneven 1.25 mm series,
a coronal reformat with the most files, preview PNG/JPG files and (one layout) a
DICOMDIR. The rule must take series 3; ``--series`` must reach every other one;
the tilted and uneven series must come out on an even, untilted grid that matches
the analytic truth.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr import cli
from ct2mr.errors import InputError
from ct2mr.io.dicom_series import choose_series, find_series, match_series
from ct2mr.io.imageio import detect_format, read_image
from ct2mr.phantom.export import EXPECTED_AUTO_SERIES, MATRIX, PIXEL_MM, TILT_DEG, truth_on_grid
from ct2mr.preprocess.ingest import ingest, orientation_code

PATIENT, SEED = "EXP1", 7


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The phantom export in both layouts: flat ``DICOM/I<n>`` and DICOMDIR + nested folders."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for layout, dicomdir in (("flat", False), ("dicomdir", True)):
        assert cli.main(["phantom", "--patient", PATIENT, "--seed", str(SEED), "--export", str(root / layout),
                         *(["--dicomdir"] if dicomdir else [])]) == 0
        out[layout] = root / layout
    return out


def _head_mae(img: sitk.Image, valid_above: float = -1023.0) -> tuple[float, int]:
    """Mean |img - truth| (HU) over head voxels (truth > -500) that the image covers; and their count."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    truth = sitk.GetArrayFromImage(truth_on_grid(PATIENT, SEED, img))
    a = sitk.GetArrayFromImage(img)
    m = (truth > -500) & (a > valid_above)
    return float(np.abs(a - truth)[m].mean()), int(m.sum())


def _sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_export_layouts(exports: dict[str, Path]) -> None:
    flat, dd = exports["flat"], exports["dicomdir"]
    assert (flat / "preview_0.PNG").is_file() and (flat / "preview_1.jpg").is_file()
    assert not (flat / "DICOMDIR").exists() and (dd / "DICOMDIR").is_file()
    assert sorted(p.name for p in (flat / "DICOM").iterdir())[:2] == ["I0", "I1"]  # no extension
    assert detect_format(flat) == "dicom" and detect_format(dd) == "dicom"  # the previews do not make it png
    for root in (flat, dd):
        series, ignored = find_series(root)
        assert [s.number for s in series] == [1, 2, 3, 4, 5, 601]
        assert [s.n_files for s in series] == [2, 24, 48, 60, 84, 110]
        why = {f.name: w for f, w in ignored}
        assert why["preview_0.PNG"] == "not DICOM" and why["preview_1.jpg"] == "not DICOM"
        assert why.get("DICOMDIR", "DICOMDIR index") == "DICOMDIR index"
        by = {s.number: s for s in series}
        assert by[4].tilted and abs(by[4].tilt_deg - TILT_DEG) < 0.1 and by[4].even
        assert not by[5].even and not by[5].tilted and not by[601].even
        assert by[3].regular and by[2].regular and by[601].plane == "coronal" and by[1].is_localizer


@pytest.mark.parametrize("layout", ["flat", "dicomdir"])
def test_rule_chooses_series_3_and_logs_the_others(exports: dict[str, Path], layout: str, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ct2mr.io.dicom_series"):
        img = ingest(exports[layout], "ct")
    assert img.GetSize() == (MATRIX, MATRIX, 48) and np.allclose(img.GetSpacing(), (PIXEL_MM, PIXEL_MM, 2.5))
    assert orientation_code(img) == "LPS"
    mae, n = _head_mae(img)
    assert n > 100000 and mae < 12.0  # noise (5-10 HU) only: the right slices at the right places
    text = caplog.text
    assert f"reading series {EXPECTED_AUTO_SERIES} 'Head 2.5mm'" in text
    for reason in ("passed over series 1 'Scout' (2 files, ORIGINAL\\PRIMARY\\LOCALIZER): a localizer",
                   "passed over series 2 'Head 5mm' (24 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 5 mm): thicker slices",
                   "passed over series 4 'Head 2mm tilt' (60 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 2 mm): gantry tilt",
                   "passed over series 5 'Head 1.25mm gaps' (84 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 1.25 mm): "
                   "uneven slice positions",
                   "passed over series 601 'Coronal reformat' (110 files, DERIVED\\SECONDARY\\REFORMATTED, coronal, "
                   "2 mm): not ORIGINAL\\PRIMARY"):
        assert reason in text
    assert "preview_0.PNG (not DICOM)" in text


def test_rule_order() -> None:
    """Each criterion in turn decides (synthetic headers, no files)."""
    from ct2mr.io.dicom_series import Series

    def s(number: int, itype: str, normal: str = "z", gaps=(2.0,) * 9, thick: float = 2.0, shear: float = 0.0,
          modality: str = "CT") -> Series:
        row, col = {"z": ((1, 0, 0), (0, 1, 0)), "y": ((1, 0, 0), (0, 0, -1))}[normal]
        n = np.cross(row, col)
        steps = np.concatenate([[0.0], np.cumsum(gaps)])
        pos = np.array([k * np.asarray(n, float) + [0, shear * i / len(steps), 0] for i, k in enumerate(steps)])
        return Series(uid=f"1.{number}", number=number, description=f"s{number}", modality=modality,
                      image_type=tuple(itype.split("\\")), files=[Path(f"{number}_{i}") for i in range(len(pos))],
                      row_dir=np.asarray(row, float), col_dir=np.asarray(col, float), positions=pos,
                      pixel_mm=(0.5, 0.5), thickness_mm=thick)

    def pick(*series: Series, modality: str | None = "ct") -> int | None:
        return choose_series(list(series), "folder", None, modality).number

    orig, derived = "ORIGINAL\\PRIMARY\\AXIAL", "DERIVED\\SECONDARY\\REFORMATTED"
    assert pick(s(1, "ORIGINAL\\PRIMARY\\LOCALIZER", thick=0.5), s(2, orig, thick=5)) == 2
    assert pick(s(1, derived, thick=0.6), s(2, orig, thick=5)) == 2
    assert pick(s(1, orig, normal="y", thick=0.6), s(2, orig, thick=5)) == 2
    assert pick(s(1, orig, gaps=(1.0,) * 5 + (2.0,) + (1.0,) * 3, thick=1), s(2, orig, thick=5)) == 2
    assert pick(s(1, orig, thick=1, shear=20.0), s(2, orig, thick=5)) == 2  # tilted
    assert pick(s(1, orig, thick=5), s(2, orig, thick=2.5)) == 2
    assert pick(s(7, orig, thick=2.5), s(2, orig, thick=2.5)) == 2  # full tie: the lower number
    assert pick(s(1, orig, thick=1, modality="MR"), s(2, orig, thick=5)) == 2
    assert pick(s(1, orig, thick=1, modality="MR"), s(2, orig, thick=5), modality=None) == 1
    dup = s(3, orig, gaps=(2.0, 0.0, 2.0, 2.0))  # two volumes at the same positions
    assert "share a slice position" in (dup.unusable() or "")
    with pytest.raises(InputError, match="no DICOM series usable as a volume"):
        choose_series([dup, s(4, "ORIGINAL\\PRIMARY\\LOCALIZER")], "folder")


@pytest.mark.parametrize("selector, number", [("3", 3), ("2", 2), ("Head 5mm", 2), ("tilt", 4), ("GAPS", 5),
                                              ("601", 601), ("reformat", 601)])
def test_series_selector_matches(exports: dict[str, Path], selector: str, number: int) -> None:
    series, _ = find_series(exports["flat"])
    assert [s.number for s in match_series(series, selector)] == [number]
    uid = next(s.uid for s in series if s.number == number)
    assert [s.number for s in match_series(series, uid)] == [number]


def test_ingest_series_flag_reads_each(exports: dict[str, Path], tmp_path: Path) -> None:
    """`ct2mr ingest --series` for the regular series: the chosen grid, values equal to the truth."""
    for selector, size, spacing in (("2", (MATRIX, MATRIX, 24), (PIXEL_MM, PIXEL_MM, 5.0)),
                                    ("Head 2.5mm", (MATRIX, MATRIX, 48), (PIXEL_MM, PIXEL_MM, 2.5))):
        out = tmp_path / f"{selector}.nii.gz"
        assert cli.main(["ingest", "--modality", "ct", "--input", str(exports["dicomdir"]), "--output", str(out),
                         "--series", selector]) == 0
        img = sitk.ReadImage(str(out))
        assert img.GetSize() == size and np.allclose(img.GetSpacing(), spacing)
        assert _head_mae(img)[0] < 12.0


def test_tilted_series_comes_out_untilted(exports: dict[str, Path]) -> None:
    """Series 4 (20 deg gantry tilt): resampled onto an axis-aligned grid that matches the truth.

    Read the way SimpleITK alone reads it (slice stack along the tilted normal), the
    same files are sheared: 40 mm sideways over the stack, hundreds of HU off."""
    img = ingest(exports["flat"], "ct", series="4")
    assert orientation_code(img) == "LPS"
    np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    assert img.GetSpacing()[2] == pytest.approx(2.0 * np.cos(np.radians(TILT_DEG)), rel=1e-3)
    mae, n = _head_mae(img, valid_above=-1024.0)
    assert n > 500000 and mae < 40.0  # two linear interpolations (dcm2niix, untilt) blur the bone edges
    series, _ = find_series(exports["flat"])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in next(s for s in series if s.number == 4).files])
    sheared_mae, _ = _head_mae(reader.Execute())
    assert sheared_mae > 5 * mae


def test_uneven_series_comes_out_even(exports: dict[str, Path], caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ct2mr.io.dicom_series"):
        img = ingest(exports["flat"], "ct", series="5")
    assert img.GetSpacing()[2] == pytest.approx(1.25, abs=1e-3) and img.GetSize()[2] == 96 - 1  # 120 mm span
    assert _head_mae(img)[0] < 12.0
    assert "uneven slice positions (gaps 1.25..2.5 mm): corrected by dcm2niix" in caplog.text
    cor = ingest(exports["flat"], "ct", series="601")  # the coronal reformat, one 3 mm gap
    assert orientation_code(cor) == "LPS" and cor.GetSize()[1] == 111
    assert _head_mae(cor)[0] < 15.0


@pytest.mark.parametrize("selector, message", [
    ("99", "'99' matches no series; series found: 1 'Scout' (2 files"),
    ("Head", "'Head' matches 4 series; series found:"),
    ("1", "series 1 'Scout' (2 files, ORIGINAL\\PRIMARY\\LOCALIZER) cannot be read as a volume: a localizer"),
])
def test_series_errors_are_one_line(exports: dict[str, Path], tmp_path: Path, capsys, selector: str,
                                    message: str) -> None:
    out = tmp_path / "o.nii.gz"
    assert cli.main(["ingest", "--modality", "ct", "--input", str(exports["flat"]), "--output", str(out),
                     "--series", selector]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("fake", ["/bin/true", None])
def test_tilt_that_cannot_be_corrected_is_refused(exports: dict[str, Path], tmp_path: Path, monkeypatch, capsys,
                                                  fake: str | None) -> None:
    """No corrected volume from dcm2niix (or no dcm2niix at all): a one-line refusal, never a sheared read."""
    import ct2mr.io.dicom_series as ds

    if fake is None:
        def missing() -> str:
            raise InputError(None, "dcm2niix", "the dcm2niix package is not installed (pip install dcm2niix)")
        monkeypatch.setattr(ds, "dcm2niix_binary", missing)
    else:
        monkeypatch.setattr(ds, "dcm2niix_binary", lambda: fake)
    out = tmp_path / "o.nii.gz"
    assert cli.main(["ingest", "--modality", "ct", "--input", str(exports["flat"]), "--output", str(out),
                     "--series", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists()
    assert ("gantry tilt 20.0 deg" in err[0] and "dcm2niix could not correct it" in err[0]) if fake else \
        "dcm2niix package is not installed" in err[0]


def test_enhanced_mr_geometry_from_functional_groups(tmp_path: Path) -> None:
    """GDCM writes MR as Enhanced MR objects: the geometry lives in the functional groups."""
    from ct2mr.io.imageio import write_dicom_series

    img = sitk.GetImageFromArray((np.random.default_rng(0).random((5, 6, 7)) * 100).astype(np.float32))
    img.SetSpacing((0.9, 1.1, 3.0))
    img.SetOrigin((-10.0, 5.0, 20.0))
    write_dicom_series(img, tmp_path / "mr", modality="MR")
    (s,), _ = find_series(tmp_path / "mr")
    assert s.has_geometry and s.regular and s.plane == "axial" and s.spacing_mm == pytest.approx(3.0)
    back = read_image(tmp_path / "mr", modality="mr")
    assert back.GetSize() == (7, 6, 5) and np.allclose(back.GetOrigin(), (-10.0, 5.0, 20.0), atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img), atol=0.01)


def test_phantom_dicomdir_needs_export(tmp_path: Path, capsys) -> None:
    assert cli.main(["phantom", "--patient", PATIENT, "--truth", str(tmp_path / "t.json"), "--dicomdir"]) == 2
    assert "--dicomdir: applies only with --export" in capsys.readouterr().err


def test_series_on_a_nifti_is_an_error(tmp_path: Path, capsys) -> None:
    img = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    with pytest.raises(InputError, match="applies only to a DICOM folder"):
        read_image(tmp_path / "ct.nii.gz", series="3")


def test_raw_export_is_not_modified(exports: dict[str, Path], tmp_path: Path) -> None:
    before = _sha(exports["flat"])
    assert cli.main(["ingest", "--modality", "ct", "--input", str(exports["flat"] / "DICOM"), "--output",
                     str(tmp_path / "o.nii.gz"), "--series", "4"]) == 0
    assert _sha(exports["flat"]) == before


def test_patient_table_series_column(exports: dict[str, Path], tmp_path: Path) -> None:
    from ct2mr.cohort.patients import is_png_source, load_patients

    # a lower-case preview.png beside DICOM files does not turn the folder into png slices
    (exports["flat"] / "DICOM" / "extra_preview.png").write_bytes((exports["flat"] / "preview_0.PNG").read_bytes())
    try:
        assert not is_png_source(str(exports["flat"] / "DICOM"))
    finally:
        (exports["flat"] / "DICOM" / "extra_preview.png").unlink()
    nifti = tmp_path / "mr.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32)), str(nifti))
    table = tmp_path / "p.tsv"
    table.write_text("patient\trole\tct\tmr\tseries\n"
                     f"A\tct_only\t{exports['flat']}\t\t4\n"
                     f"B\tct_only\t{exports['dicomdir']}\t\t\n")
    a, b = load_patients(table)
    assert a.series_of("ct") == "4" and a.series_of("mr") is None and b.series is None
    table.write_text(f"patient\trole\tct\tmr\tmr_series\nA\tct_only\t{exports['flat']}\t\t4\n")
    with pytest.raises(InputError, match="column mr_series.*chooses a series of the MR but the row has no MR"):
        load_patients(table)
    table.write_text(f"patient\trole\tct\tmr\tmr_series\nA\tmr_only\t\t{nifti}\t4\n")
    with pytest.raises(InputError, match="a series choice needs a DICOM folder in column mr"):
        load_patients(table)


def test_workflow_passes_the_series_column(exports: dict[str, Path], tmp_path: Path) -> None:
    """The ingest rule gets `--series` from the table (a param: changing it reruns ingest)."""
    from tests.workflow_helpers import make_tiny_workdir, snakemake

    work = tmp_path / "wf"
    make_tiny_workdir(work)
    rows = [line.split("\t") for line in (work / "patients.tsv").read_text().splitlines()]
    rows = [r + [""] * (5 - len(r)) + (["series"] if i == 0 else [""]) for i, r in enumerate(rows)]
    rows.append(["EXP", "ct_only", str(exports["flat"]), "", "", "Head 2mm tilt"])
    (work / "patients.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    proc = snakemake(work, "-n", "-p", "results/preprocessed/EXP/ct.nii.gz")
    assert "--series 'Head 2mm tilt'" in proc.stdout


@pytest.mark.realdata
@pytest.mark.parametrize("selector, size, spacing", [
    ("2", (512, 512, 34), (0.488281, 0.488281, 5.0)),
    ("601", (512, 110, 512), (0.488281, 2.0, 0.488281)),  # coronal: its axial reference image left out
    ("602", (88, 512, 512), (2.0, 0.488281, 0.488281)),  # sagittal
])
def test_real_export_series_flag(shared_data: Path, selector: str, size: tuple, spacing: tuple) -> None:
    img = ingest(shared_data / "head_ct_dicom_export", "ct", series=selector)
    assert img.GetSize() == size and orientation_code(img) == "LPS"
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=2e-3)


@pytest.mark.realdata
@pytest.mark.parametrize("sub", ["", "DICOM"])
def test_real_export_gives_series_3(shared_data: Path, tmp_path: Path, sub: str, caplog) -> None:
    """The GE export (5 series, DICOMDIR, previews, JPEG-lossless): series 3, 67 axial slices of 2.5 mm."""
    export = shared_data / "head_ct_dicom_export"
    before = _sha(export)
    out = tmp_path / "ct.nii.gz"
    with caplog.at_level(logging.INFO):
        assert cli.main(["ingest", "--modality", "ct", "--input", str(export / sub), "--output", str(out)]) == 0
    assert "reading series 3 (67 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 2.5 mm)" in caplog.text
    assert "passed over series 601 (111 files, DERIVED\\SECONDARY\\REFORMATTED, coronal" in caplog.text
    img = sitk.ReadImage(str(out))
    assert img.GetSize() == (512, 512, 67)
    np.testing.assert_allclose(img.GetSpacing(), (0.488281, 0.488281, 2.5), atol=1e-5)
    assert orientation_code(img) == "LPS" and img.GetPixelID() == sitk.sitkInt16
    a = sitk.GetArrayViewFromImage(img)
    assert a.min() == -1024 and 1500 < a.max() <= 3071  # -3024 outside the field of view -> -1024 air
    assert np.percentile(a, 1) <= -900 and (a > 300).sum() > 100000
    assert _sha(export) == before


# ------------------------------------------------------------------ headers that mislead (issue 22: items 3, 11)
# Each test copies a handful of files of the real GE export to tmp_path and edits the copies with pydicom
# (tags only: the JPEG-lossless pixel data is kept as it is).

#: consecutive files of the real export: series 2 (5 mm) and series 3 (2.5 mm), mid-brain
REAL_S2, REAL_S3 = [f"I{i}" for i in range(19, 23)], [f"I{i}" for i in range(70, 76)]


def _real_copy(shared_data: Path, dest: Path, names: list[str], **tags: object) -> list[Path]:
    """Copy ``names`` of the real export into ``dest``, setting ``tags`` (None deletes a tag)."""
    import pydicom

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        ds = pydicom.dcmread(shared_data / "head_ct_dicom_export" / "DICOM" / name)
        for tag, value in tags.items():
            if value is None:
                if tag in ds:
                    delattr(ds, tag)
            else:
                setattr(ds, tag, value)
        ds.save_as(dest / name)
        out.append(dest / name)
    return out


@pytest.mark.realdata
def test_two_patients_in_one_folder_are_refused_unless_a_series_is_chosen(shared_data: Path, tmp_path: Path,
                                                                          capsys) -> None:
    from ct2mr.io.dicom_series import choose_series_from_headers

    folder = tmp_path / "export"
    _real_copy(shared_data, folder, REAL_S3)
    _real_copy(shared_data, folder, REAL_S2, PatientID="OTHER7")
    out = tmp_path / "o.nii.gz"
    assert cli.main(["ingest", "--modality", "ct", "--input", str(folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert (f"{folder}: PatientID: 2 patients in one DICOM folder: 'NOID' (e.g. I70, series 3) and 'OTHER7' "
            "(e.g. I19, series 2); choose the series to read with --series or the patient table's series column "
            "(mr_series for the MR)") in err
    # a series chosen explicitly: read (each series is one patient's)
    assert choose_series_from_headers(folder, "3", "ct").n == 6
    assert choose_series_from_headers(folder, "2", "ct").patients.keys() == {"OTHER7"}
    # one series whose own files carry two PatientIDs: refused even when chosen, and when given as one file
    _real_copy(shared_data, folder, REAL_S3[-2:], PatientID="OTHER7")
    for path, selector in ((folder, "3"), (folder / "I70", None)):
        with pytest.raises(InputError, match=r"PatientID: 2 patients in one series: 'NOID' \(e\.g\. .*I70, series 3\) "
                                             r"and 'OTHER7' \(e\.g\. .*I74, series 3\); the files of series 3"):
            choose_series_from_headers(path, selector, "ct")


@pytest.mark.realdata
def test_soft_tissue_kernel_is_preferred_over_a_thinner_bone_kernel(shared_data: Path, tmp_path: Path,
                                                                    caplog) -> None:
    """Series 3 (2.5 mm) made a BONE reconstruction: the rule takes series 2 (5 mm, STANDARD) and says why."""
    from ct2mr.io.dicom_series import choose_series_from_headers

    folder = tmp_path / "export"
    _real_copy(shared_data, folder, REAL_S2)
    _real_copy(shared_data, folder, REAL_S3)
    assert choose_series_from_headers(folder, None, "ct").number == 3  # unedited: the thinnest
    _real_copy(shared_data, folder, REAL_S3, ConvolutionKernel="BONE")
    with caplog.at_level(logging.INFO, logger="ct2mr.io.dicom_series"):
        img = ingest(folder, "ct")
    assert img.GetSize() == (512, 512, 4) and img.GetSpacing()[2] == pytest.approx(5.0)
    assert ("passed over series 3 (6 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 2.5 mm): bone/lung reconstruction "
            "kernel (ConvolutionKernel BONE; series 2 has soft-tissue kernel STANDARD)") in caplog.text
    assert choose_series_from_headers(folder, "3", "ct").kernel == "BONE"  # still reachable by choice


@pytest.mark.parametrize("kernel, group, expected", [
    ("STANDARD", None, "soft-tissue"), ("SOFT", None, "soft-tissue"), ("BONE", None, "bone/lung"),
    ("BONEPLUS", None, "bone/lung"), ("LUNG", None, "bone/lung"), ("DETAIL", None, "bone/lung"),  # GE
    ("H30s", None, "soft-tissue"), ("H31s", None, "soft-tissue"), ("Hr38", None, "soft-tissue"),
    ("B40f", None, "soft-tissue"), ("H60s", None, "bone/lung"), ("H70h", None, "bone/lung"),
    ("Br64", None, "bone/lung"), ("Ur77", None, "bone/lung"), ("H48s", None, "unknown"),  # Siemens
    ("UB", None, "soft-tissue"), ("B", None, "soft-tissue"), ("YC", None, "bone/lung"),
    ("L", None, "bone/lung"), ("D", None, "bone/lung"),  # Philips
    ("FC21", None, "soft-tissue"), ("FC26", None, "soft-tissue"), ("FC30", None, "bone/lung"),
    ("FC51", None, "bone/lung"),  # Canon / Toshiba
    ("XYZ", None, "unknown"), ("", None, "unknown"), (None, None, "unknown"),
    ("HEAD BONE", None, "bone/lung"), ("XYZ", "BRAIN", "soft-tissue"), ("STANDARD", "SKELETON", "bone/lung"),
])
def test_kernel_class(kernel: str | None, group: str | None, expected: str) -> None:
    from ct2mr.io.dicom_series import kernel_class

    assert kernel_class(kernel, group) == expected


MR_TAGS = {"Modality": "MR", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.4", "ConvolutionKernel": None,
           "ScanningSequence": "SE", "RescaleSlope": None, "RescaleIntercept": None}


@pytest.mark.realdata
def test_mr_export_with_two_contrasts_needs_mr_series(shared_data: Path, tmp_path: Path, capsys) -> None:
    """An MR export with a T2 and a FLAIR series: no silent thinnest choice; the error lists the contrasts."""
    from ct2mr.io.dicom_series import choose_series_from_headers

    folder = tmp_path / "mr_export"
    _real_copy(shared_data, folder, REAL_S2, **MR_TAGS, SeriesDescription="AX T2 FSE", RepetitionTime=4000,
               EchoTime=100)
    _real_copy(shared_data, folder, REAL_S3, **MR_TAGS, SeriesDescription="AX FLAIR", RepetitionTime=9000,
               EchoTime=120, InversionTime=2500)
    with pytest.raises(InputError) as err:
        choose_series_from_headers(folder, None, "mr")
    assert str(err.value) == (
        f"{folder}: mr_series: the MR export holds 2 contrasts, choose one with --series or the patient table's "
        "mr_series column: T2 (TR 4000 ms, TE 100 ms, ScanningSequence SE): series 2 'AX T2 FSE' (4 files, "
        "ORIGINAL\\PRIMARY\\AXIAL, axial, 5 mm); FLAIR (TR 9000 ms, TE 120 ms, TI 2500 ms, ScanningSequence SE): "
        "series 3 'AX FLAIR' (6 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 2.5 mm)")
    assert choose_series_from_headers(folder, "T2", "mr").number == 2
    assert choose_series_from_headers(folder, "FLAIR", "mr").number == 3
    # the same contrast at two thicknesses (times only, no names): one contrast, the rule takes the thinner
    _real_copy(shared_data, folder, REAL_S2, **MR_TAGS, SeriesDescription="axial 5", RepetitionTime=4000,
               EchoTime=100)
    _real_copy(shared_data, folder, REAL_S3, **MR_TAGS, SeriesDescription="axial 2.5", RepetitionTime=3800,
               EchoTime=95)
    assert choose_series_from_headers(folder, None, "mr").number == 3
    # via the workflow's command: one line, nothing written
    _real_copy(shared_data, folder, REAL_S3, **MR_TAGS, SeriesDescription="axial 2.5", RepetitionTime=500,
               EchoTime=12)
    out = tmp_path / "mr.nii.gz"
    assert cli.main(["ingest", "--modality", "mr", "--input", str(folder), "--output", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and not out.exists()
    assert "the MR export holds 2 contrasts" in lines[0] and "T2 (TR 4000 ms, TE 100 ms" in lines[0] \
        and "T1 (TR 500 ms, TE 12 ms" in lines[0]


@pytest.mark.parametrize("fields, label", [
    ({"SeriesDescription": "Ax T2 FLAIR", "RepetitionTime": 9000.0, "EchoTime": 120.0}, "FLAIR"),
    ({"SeriesDescription": "sag MPRAGE", "ContrastBolusAgent": "Gadovist"}, "T1 + contrast agent"),
    ({"SeriesDescription": "t1_se_tra", "RepetitionTime": 550.0, "EchoTime": 10.0}, "T1"),
    ({"SeriesDescription": "UPDATE", "RepetitionTime": 3000.0, "EchoTime": 20.0}, "PD"),  # no 'PD' inside words
    ({"RepetitionTime": 8000.0, "EchoTime": 90.0, "InversionTime": 2400.0}, "FLAIR"),
    ({"RepetitionTime": 20.0, "EchoTime": 5.0}, "T1"),
    ({"RepetitionTime": 4000.0, "EchoTime": 90.0}, "T2"),
    ({"SeriesDescription": "survey"}, "?"),
])
def test_mr_contrast_labels(fields: dict, label: str) -> None:
    from ct2mr.io.dicom_series import mr_contrast

    assert mr_contrast(fields).split(" (")[0] == label
