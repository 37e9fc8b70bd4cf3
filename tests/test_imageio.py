"""ct2mr.io.imageio: format detection, readers, atomic writers, DICOM series round trip."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from ct2mr.errors import InputError, OutputError
from ct2mr.io import imageio
from ct2mr.io.imageio import detect_format, read_image, write_dicom_series, write_image


def _oblique_image(dtype=np.int16, shape=(6, 9, 11), seed=0) -> sitk.Image:
    """Small 3D image with anisotropic spacing, an off-origin corner and an oblique direction."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        arr = rng.integers(-1024, 3000, shape).astype(dtype)
    else:
        arr = (rng.random(shape) * 800).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((-10.25, 20.5, 30.75))
    img.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.1, -0.2, 0.3).GetMatrix())
    return img


def _assert_same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-5) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tol)


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".nii.gz", "nifti"), (".nii", "nifti"), (".mha", "mha"), (".nrrd", "nrrd")]
)
def test_write_read_round_trip_each_format(tmp_path: Path, suffix: str, fmt: str) -> None:
    img = _oblique_image(np.float32)
    path = tmp_path / f"img{suffix}"
    write_image(img, path)
    assert detect_format(path) == fmt
    back = read_image(path)
    _assert_same_geometry(img, back)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_detect_format_folders_and_globs(tmp_path: Path) -> None:
    png = tmp_path / "png"
    png.mkdir()
    for i in range(2):
        sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(png / f"16{i:03d}.png"))
    assert detect_format(png) == "png"
    assert detect_format(str(png / "16*.png")) == "png"
    assert detect_format(png / "16000.png") == "png"
    dcm = tmp_path / "dcm"
    write_dicom_series(_oblique_image(), dcm)
    assert detect_format(dcm) == "dicom"
    # DICOM files without the .dcm ending are found by content
    for f in dcm.iterdir():
        f.rename(f.with_suffix(""))
    assert detect_format(dcm) == "dicom"
    assert read_image(dcm).GetSize() == (11, 9, 6)


@pytest.mark.parametrize("name", ["missing.nii.gz", "scan.txt", "nothing*.png"])
def test_detect_format_errors_name_the_file(tmp_path: Path, name: str) -> None:
    if name == "scan.txt":
        (tmp_path / name).write_text("not an image")
    with pytest.raises(InputError) as err:
        detect_format(tmp_path / name)
    assert name in str(err.value)


def test_read_png_folder_is_refused(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(tmp_path / "1.png"))
    with pytest.raises(InputError, match="slices-png"):
        read_image(tmp_path)


def test_dicom_ct_round_trip_geometry_and_hu(tmp_path: Path) -> None:
    img = _oblique_image(np.int16)
    folder = tmp_path / "ct_series"
    write_dicom_series(img, folder, modality="CT", series_description="test CT", uid_seed="p1")
    files = sorted(folder.iterdir())
    assert len(files) == 6
    back = read_image(folder)
    _assert_same_geometry(img, back, tol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))
    # the tags a DICOM consumer relies on
    ds = [pydicom.dcmread(f) for f in files]
    assert {d.Modality for d in ds} == {"CT"}
    assert len({d.SeriesInstanceUID for d in ds}) == 1
    assert len({d.StudyInstanceUID for d in ds}) == 1
    assert len({d.FrameOfReferenceUID for d in ds}) == 1
    assert len({d.SOPInstanceUID for d in ds}) == 6
    assert float(ds[0].RescaleIntercept) == -1024.0 and float(ds[0].RescaleSlope) == 1.0
    assert ds[0].pixel_array.dtype == np.int16
    np.testing.assert_allclose([float(v) for v in ds[0].PixelSpacing], [0.9, 0.8])  # row, column spacing
    assert float(ds[0].SliceThickness) == pytest.approx(2.5)
    np.testing.assert_allclose([float(v) for v in ds[0].ImageOrientationPatient],
                               np.asarray(img.GetDirection()).reshape(3, 3)[:, :2].T.ravel(), atol=1e-9)
    positions = sorted((d.InstanceNumber, [float(v) for v in d.ImagePositionPatient]) for d in ds)
    for k, pos in positions:
        np.testing.assert_allclose(pos, img.TransformIndexToPhysicalPoint((0, 0, k - 1)), atol=1e-6)
    # deterministic UIDs with a uid_seed
    write_dicom_series(img, tmp_path / "again", modality="CT", series_description="test CT", uid_seed="p1")
    assert pydicom.dcmread(sorted((tmp_path / "again").iterdir())[0]).SeriesInstanceUID == ds[0].SeriesInstanceUID


def test_dicom_ct_clips_to_hu_range(tmp_path: Path) -> None:
    arr = np.array([[[-3000, -1024, 0], [40, 3071, 5000]]] * 2, dtype=np.int16)
    img = sitk.GetImageFromArray(arr)
    write_dicom_series(img, tmp_path / "s")
    back = sitk.GetArrayFromImage(read_image(tmp_path / "s"))
    np.testing.assert_array_equal(back[0], [[-1024, -1024, 0], [40, 3071, 3071]])


def test_dicom_mr_round_trip(tmp_path: Path) -> None:
    img = _oblique_image(np.float32)
    write_dicom_series(img, tmp_path / "mr", modality="MR")
    back = read_image(tmp_path / "mr")
    _assert_same_geometry(img, back, tol=1e-6)
    a, b = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(back)
    assert np.abs(a - b).max() <= a.max() / 60000 * 1.01
    assert pydicom.dcmread(next((tmp_path / "mr").iterdir())).Modality == "MR"


def test_dicom_left_handed_image_keeps_physical_content(tmp_path: Path) -> None:
    img = _oblique_image(np.int16, seed=3)
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # z pointing inferior: det = -1
    write_dicom_series(img, tmp_path / "s")
    back = read_image(tmp_path / "s")
    assert np.linalg.det(np.asarray(back.GetDirection()).reshape(3, 3)) > 0
    same = sitk.Resample(back, img, sitk.Transform(), sitk.sitkNearestNeighbor)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(same), sitk.GetArrayFromImage(img))


def test_dicom_series_replaces_existing_folder_atomically(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "s"
    write_dicom_series(_oblique_image(shape=(3, 4, 5)), folder)
    before = sorted(p.name for p in folder.iterdir())

    def boom(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", boom)
    with pytest.raises(OutputError, match="disk full"):
        write_dicom_series(_oblique_image(shape=(7, 4, 5)), folder)
    assert sorted(p.name for p in folder.iterdir()) == before  # old series intact
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # temp folder removed


def test_several_series_rule_chooses_and_logs(tmp_path: Path, caplog) -> None:
    """Same ImageType, plane and thickness: the rule's tie-break (the most slices) decides, and says so."""
    write_dicom_series(_oblique_image(shape=(3, 4, 5), seed=1), tmp_path / "a", uid_seed="a")
    write_dicom_series(_oblique_image(shape=(7, 4, 5), seed=2), tmp_path / "b", uid_seed="b")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for sub in ("a", "b"):
        for f in (tmp_path / sub).iterdir():
            f.rename(mixed / f"{sub}_{f.name}")
    with caplog.at_level(logging.INFO, logger="ct2mr.io.dicom_series"):
        img = read_image(mixed)
    assert img.GetSize() == (5, 4, 7)
    assert "holds 2 DICOM series" in caplog.text
    assert "passed over series 1 'ct2mr' (3 files" in caplog.text and "fewer slices (3 vs 7)" in caplog.text


def test_single_dicom_file_reads_its_series(tmp_path: Path) -> None:
    img = _oblique_image(np.int16, seed=5)
    write_dicom_series(img, tmp_path / "s", uid_seed="one")
    one = sorted((tmp_path / "s").iterdir())[2]
    assert detect_format(one) == "dicom"
    back = read_image(one)
    _assert_same_geometry(img, back, tol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(img))


def test_nifti_nonfinite_count(tmp_path: Path) -> None:
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3], arr[2, 2, 2], arr[3, 0, 0] = np.nan, np.inf, -np.inf
    for suffix in (".nii", ".nii.gz"):
        write_image(sitk.GetImageFromArray(arr), tmp_path / f"a{suffix}")
        assert imageio.nifti_nonfinite_count(tmp_path / f"a{suffix}") == 3
    write_image(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), tmp_path / "i.nii.gz")
    assert imageio.nifti_nonfinite_count(tmp_path / "i.nii.gz") == 0


def test_dicom_series_in_sub_folder(tmp_path: Path) -> None:
    img = _oblique_image(np.int16, seed=6)
    write_dicom_series(img, tmp_path / "export" / "study1" / "series3")
    assert detect_format(tmp_path / "export") == "dicom"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(tmp_path / "export")),
                                  sitk.GetArrayFromImage(img))


def test_empty_dicom_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series found") as err:
        read_image(tmp_path / "empty")
    assert "empty" in str(err.value)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    good = tmp_path / f"good{suffix}"
    write_image(_oblique_image(np.float32, shape=(10, 20, 30)), good)
    bad = tmp_path / f"bad{suffix}"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as err:
        read_image(bad)
    assert str(bad) in str(err.value)


def test_corrupt_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mha"
    bad.write_text("this is not a MetaImage header\n")
    with pytest.raises(InputError) as err:
        read_image(bad)
    assert str(bad) in str(err.value)


def test_write_image_refuses_unknown_suffix_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ValueError):
        write_image(_oblique_image(), tmp_path / "x.png")

    def boom(*_a, **_k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(imageio.sitk, "WriteImage", boom)
    with pytest.raises(RuntimeError):
        write_image(_oblique_image(), tmp_path / "y.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_cli_output_with_unknown_image_ending_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    """`--output x.png` (any stage writing through write_image) -> exit 2 naming the file, not a traceback."""
    from ct2mr.cli import main

    src = tmp_path / "in.nii.gz"
    write_image(_oblique_image(), src)
    with pytest.raises(InputError) as err:
        write_image(_oblique_image(), tmp_path / "x.png")
    assert "x.png" in str(err.value) and ".nii.gz" in str(err.value)
    out = tmp_path / "out.png"
    assert main(["resample", "--input", str(src), "--output", str(out), "--spacing", "2", "2", "2"]) == 2
    assert "out.png" in capsys.readouterr().err
    assert not out.exists()


def test_dicom_writing_keeps_the_process_locale(tmp_path: Path) -> None:
    """ITK's GDCM writer switched the process to the "C" locale: afterwards Python's default
    text encoding was ASCII and e.g. ``Path.write_text("±")`` failed in the same process."""
    import locale

    before = locale.setlocale(locale.LC_ALL)
    write_dicom_series(_oblique_image(), tmp_path / "dcm", modality="CT", uid_seed="locale")
    assert locale.setlocale(locale.LC_ALL) == before


def test_grid_difference_names_what_differs() -> None:
    from ct2mr.io.imageio import grid_difference

    a = sitk.Image(4, 5, 6, sitk.sitkUInt8)
    a.SetSpacing((1.0, 1.0, 2.5))
    b = sitk.Image(a)
    assert grid_difference(a, b) is None
    b.SetOrigin((0.0, 0.0, 0.0005))  # below the 1e-3 mm tolerance (float32 headers)
    assert grid_difference(a, b) is None
    b.SetOrigin((0.0, 0.0, 2.0))
    assert grid_difference(a, b) == "origin (0.0, 0.0, 0.0) vs (0.0, 0.0, 2.0)"
    c = sitk.Image(a)
    c.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert grid_difference(a, c).startswith("direction ")
    assert grid_difference(a, sitk.Image(4, 5, 7, sitk.sitkUInt8)) == "size (4, 5, 6) vs (4, 5, 7)"
