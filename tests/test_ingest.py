"""ct2mr.preprocess.ingest: canonical LPS output, value casts, orientation round trip, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.io.imageio import read_image, write_dicom_series, write_image
from ct2mr.phantom.patient import PhantomParams, make_patient
from ct2mr.preprocess.ingest import ingest, orientation_code

SMALL = PhantomParams(ct_spacing_mm=(3.0, 3.0, 4.0), mr_spacing_mm=(3.5, 3.5, 4.5))


@pytest.fixture(scope="module")
def phantom():
    return make_patient("P07", 11, SMALL)


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def _values_at_same_points(a: sitk.Image, b: sitk.Image, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``a`` at random voxel centres and of ``b`` at the same physical points."""
    rng = np.random.default_rng(0)
    size = np.array(a.GetSize())
    idx = rng.integers(0, size, (n, 3))
    va, vb = [], []
    for i in idx:
        p = a.TransformIndexToPhysicalPoint(tuple(int(v) for v in i))
        j = b.TransformPhysicalPointToContinuousIndex(p)
        assert np.allclose(j, np.round(j), atol=1e-4)  # still a voxel centre
        va.append(a[tuple(int(v) for v in i)])
        vb.append(b[tuple(int(round(v)) for v in j)])
    return np.array(va), np.array(vb)


@pytest.mark.parametrize("code", ["RAS", "LIA", "ASL", "PIR", "LPS"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_orientation_round_trip(tmp_path: Path, phantom, code: str, suffix: str) -> None:
    src = sitk.DICOMOrient(phantom.ct, code)
    assert orientation_code(src) == code
    path = tmp_path / f"ct_{code}{suffix}"
    write_image(src, path)
    out = ingest(path, "ct")
    assert orientation_code(out) == "LPS"
    assert out.GetPixelID() == sitk.sitkInt16
    # same grid and values as the LPS original...
    assert out.GetSize() == phantom.ct.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), phantom.ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), phantom.ct.GetSpacing(), atol=1e-6)
    np.testing.assert_array_equal(_arr(out), _arr(phantom.ct))
    # ...and every physical point keeps its value relative to the file as given
    va, vb = _values_at_same_points(out, read_image(path))
    np.testing.assert_array_equal(va, vb)


def test_mr_ingest_float32_lps_from_dicom(tmp_path: Path, phantom) -> None:
    write_dicom_series(sitk.DICOMOrient(phantom.mr, "RAS"), tmp_path / "mr", modality="MR")
    out = ingest(tmp_path / "mr", "mr")
    assert out.GetPixelID() == sitk.sitkFloat32
    assert orientation_code(out) == "LPS"
    np.testing.assert_allclose(out.GetOrigin(), phantom.mr.GetOrigin(), atol=1e-3)
    ref = _arr(phantom.mr)
    assert np.abs(_arr(out) - ref).max() <= ref.max() / 50000


def test_ct_dicom_series_keeps_hu(tmp_path: Path, phantom) -> None:
    write_dicom_series(phantom.ct, tmp_path / "ct", modality="CT")
    out = ingest(tmp_path / "ct", "ct")
    assert out.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(_arr(out), _arr(phantom.ct))


def test_ct_padding_and_metal_are_clipped(tmp_path: Path, phantom) -> None:
    arr = _arr(phantom.ct).astype(np.float32)
    arr[0] = -2000  # scanner padding outside the reconstruction circle
    arr[-1, 0, 0] = 6000.4  # metal
    arr[-1, 0, 1] = 39.6
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(phantom.ct)
    write_image(img, tmp_path / "ct.nrrd")
    out = _arr(ingest(tmp_path / "ct.nrrd", "ct"))
    assert out.dtype == np.int16
    assert np.all(out[0] == -1024)
    assert out[-1, 0, 0] == 3071 and out[-1, 0, 1] == 40


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
def test_ct_high_hu_kept_exactly(tmp_path: Path, phantom, dtype) -> None:
    arr = _arr(phantom.ct).astype(dtype)
    arr[-1, 0, :4] = [2049, 2051, 2999, 3071]  # not representable in float16
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(phantom.ct)
    write_image(img, tmp_path / "ct.nii.gz")
    out = _arr(ingest(tmp_path / "ct.nii.gz", "ct"))
    np.testing.assert_array_equal(out[-1, 0, :4], [2049, 2051, 2999, 3071])
    write_dicom_series(img, tmp_path / "dcm")
    np.testing.assert_array_equal(_arr(read_image(tmp_path / "dcm"))[-1, 0, :4], [2049, 2051, 2999, 3071])


def test_cli_rejects_output_without_image_ending(tmp_path: Path, phantom, capsys) -> None:
    write_image(phantom.ct, tmp_path / "ct.nii.gz")
    assert main(["ingest", "--modality", "ct", "--input", str(tmp_path / "ct.nii.gz"),
                 "--output", str(tmp_path / "out.txt")]) == 2
    assert "out.txt" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_mr_small_negatives_set_to_zero(tmp_path: Path, phantom) -> None:
    arr = _arr(phantom.mr)
    arr[0, 0, :5] = -3.0
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(phantom.mr)
    write_image(img, tmp_path / "mr.nii.gz")
    out = _arr(ingest(tmp_path / "mr.nii.gz", "mr"))
    assert out.min() == 0.0 and out[0, 0, :5].max() == 0.0


def test_4d_singleton_is_squeezed(tmp_path: Path, phantom) -> None:
    arr = _arr(phantom.ct)[None]  # (t=1, z, y, x)
    img = sitk.GetImageFromArray(arr, isVector=False)
    img.SetSpacing((*phantom.ct.GetSpacing(), 1.0))
    img.SetOrigin((*phantom.ct.GetOrigin(), 0.0))
    write_image(img, tmp_path / "ct4d.nii.gz")
    out = ingest(tmp_path / "ct4d.nii.gz", "ct")
    assert out.GetDimension() == 3
    np.testing.assert_array_equal(_arr(out), _arr(phantom.ct))


def _bad_inputs(tmp: Path, phantom) -> dict[str, tuple[Path, str, str]]:
    """name -> (path, modality, expected message fragment)."""
    cases: dict[str, tuple[Path, str, str]] = {}
    cases["missing"] = (tmp / "missing.nii.gz", "ct", "does not exist")
    good = tmp / "good.nii.gz"
    write_image(phantom.ct, good)
    data = good.read_bytes()
    (tmp / "trunc.nii.gz").write_bytes(data[: len(data) // 3])
    cases["truncated"] = (tmp / "trunc.nii.gz", "ct", "truncated")
    (tmp / "emptydir").mkdir()
    cases["empty dicom"] = (tmp / "emptydir", "ct", "no DICOM series found")
    write_image(phantom.ct[:, :, 5], tmp / "slice2d.nii.gz")
    cases["2D"] = (tmp / "slice2d.nii.gz", "ct", "2D")
    img4 = sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), np.int16), isVector=False)
    write_image(img4, tmp / "vol4d.nii.gz")
    cases["4D"] = (tmp / "vol4d.nii.gz", "ct", "4D")
    arr = _arr(phantom.mr)
    arr[1, 2, 3:10] = np.nan
    arr[2, 2, 2] = np.inf
    nan = sitk.GetImageFromArray(arr)
    nan.CopyInformation(phantom.mr)
    write_image(nan, tmp / "nan.nii.gz")
    cases["NaN"] = (tmp / "nan.nii.gz", "mr", "8 of")
    write_image(nan, tmp / "nan.mha")
    cases["NaN mha"] = (tmp / "nan.mha", "mr", "8 of")
    u8 = sitk.GetImageFromArray(np.clip((_arr(phantom.ct) + 1000) / 8, 0, 255).astype(np.uint8))
    write_image(u8, tmp / "ct_uint8.nii.gz")
    cases["CT 0..255"] = (tmp / "ct_uint8.nii.gz", "ct", "not in Hounsfield units: observed range 0..255")
    soft = sitk.GetImageFromArray(np.clip(_arr(phantom.ct), -50, 100))
    write_image(soft, tmp / "ct_noair.nii.gz")
    cases["CT without air"] = (tmp / "ct_noair.nii.gz", "ct", "1st percentile")
    nobone = sitk.GetImageFromArray(np.clip(_arr(phantom.ct), -1024, 200))
    write_image(nobone, tmp / "ct_nobone.nii.gz")
    cases["CT without bone"] = (tmp / "ct_nobone.nii.gz", "ct", "bone")
    write_image(sitk.GetImageFromArray(np.full((4, 5, 6), 7.0, np.float32)), tmp / "mr_const.nii.gz")
    cases["MR constant"] = (tmp / "mr_const.nii.gz", "mr", "constant")
    write_image(sitk.GetImageFromArray(np.random.default_rng(0).normal(0, 1, (4, 5, 6)).astype(np.float32)),
                tmp / "mr_neg.nii.gz")
    cases["MR negative"] = (tmp / "mr_neg.nii.gz", "mr", "negative")
    return cases


def test_bad_inputs_raise_input_error_naming_the_file(tmp_path: Path, phantom) -> None:
    for name, (path, modality, fragment) in _bad_inputs(tmp_path, phantom).items():
        with pytest.raises(InputError) as err:
            ingest(path, modality)  # type: ignore[arg-type]
        msg = str(err.value)
        assert str(path) in msg, name
        assert fragment in msg, (name, msg)


def test_cli_failure_writes_nothing_and_exits_2(tmp_path: Path, phantom, capsys) -> None:
    out_dir = tmp_path / "out"
    for name, (path, modality, _) in _bad_inputs(tmp_path, phantom).items():
        out = out_dir / f"{name.replace(' ', '_')}.nii.gz"
        assert main(["ingest", "--modality", modality, "--input", str(path), "--output", str(out)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("ct2mr ingest: error: ") and str(path) in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_cli_success(tmp_path: Path, phantom) -> None:
    src = tmp_path / "ct_ras.mha"
    write_image(sitk.DICOMOrient(phantom.ct, "RAS"), src)
    out = tmp_path / "interim" / "ct_ingested.nii.gz"
    assert main(["ingest", "--modality", "ct", "--input", str(src), "--output", str(out)]) == 0
    img = read_image(out)
    assert orientation_code(img) == "LPS" and img.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(_arr(img), _arr(phantom.ct))
    assert sorted(p.name for p in out.parent.iterdir()) == ["ct_ingested.nii.gz"]


@pytest.mark.realdata
def test_real_ct(shared_data: Path) -> None:
    path = shared_data / "volumes" / "ct_head_invesalius.nii.gz"
    raw = read_image(path)
    out = ingest(path, "ct")
    assert orientation_code(out) == "LPS" and out.GetPixelID() == sitk.sitkInt16
    assert sorted(np.round(out.GetSpacing(), 3)) == sorted(np.round(raw.GetSpacing(), 3))
    arr = _arr(out)
    assert arr.min() == -1024 and 2000 < arr.max() <= 3071
    assert np.percentile(arr, 1) <= -900 and (arr > 300).sum() > 10000
    va, vb = _values_at_same_points(out, raw)
    np.testing.assert_array_equal(va, vb)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mr_head_t1_seg3d.nii.gz", "mr_head_t1_mne.nii.gz"])
def test_real_mr(shared_data: Path, name: str) -> None:
    path = shared_data / "volumes" / name
    raw = read_image(path)
    assert orientation_code(raw) != "LPS"  # both are stored in another orientation
    out = ingest(path, "mr")
    assert orientation_code(out) == "LPS" and out.GetPixelID() == sitk.sitkFloat32
    assert sorted(np.round(out.GetSpacing(), 4)) == sorted(np.round(raw.GetSpacing(), 4))
    arr = _arr(out)
    assert arr.min() >= 0 and arr.max() == pytest.approx(float(_arr(raw).max()))
    va, vb = _values_at_same_points(out, raw)
    np.testing.assert_allclose(va, vb)
    with pytest.raises(InputError, match="not in Hounsfield units"):
        ingest(path, "ct")


# ------------------------------------------------------------------ HU judged on the head (issue 22, item 2)


@pytest.mark.realdata
@pytest.mark.parametrize("edit, field", [
    ({"RescaleSlope": None, "RescaleIntercept": None}, "RescaleSlope/RescaleIntercept"),  # tags lost
    ({"RescaleIntercept": 0}, "voxel values"),  # tags present but wrong
])
def test_real_dicom_ct_in_stored_values_is_refused_in_ingest_and_predict(shared_data: Path, tmp_path: Path, capsys,
                                                                        edit: dict, field: str) -> None:
    """Six slices of the real GE series 3 whose values are the stored ones (air ~0, brain ~1050, padding -2000).

    The padding made the old air check pass (1st percentile -2000); the landmarks are measured
    without it and the refusal gives them with the expected values, in ingest and in predict."""
    import re

    import pydicom

    from ct2mr.models.model_folder import make_untrained_model

    folder, good = tmp_path / "ct_dicom", tmp_path / "ct_good"
    folder.mkdir()
    good.mkdir()
    for i in range(70, 76):
        ds = pydicom.dcmread(shared_data / "head_ct_dicom_export" / "DICOM" / f"I{i}")
        ds.save_as(good / f"I{i}")
        for tag, value in edit.items():
            if value is None:
                delattr(ds, tag)
            else:
                setattr(ds, tag, value)
        ds.save_as(folder / f"I{i}")
    assert ingest(good, "ct").GetSize() == (512, 512, 6)  # the unedited copy is fine
    model = make_untrained_model(tmp_path / "model", "paired", image_size=32, ngf=4, n_blocks=1)
    for command in (["ingest", "--modality", "ct", "--input", str(folder), "--output", str(tmp_path / "o.nii.gz")],
                    ["predict", "--model", str(model), "--ct", str(folder), "--out", str(tmp_path / "p.nii.gz"),
                     "--device", "cpu"]):
        assert main(command) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        m = re.search(rf"{re.escape(str(folder))}: {field}: CT not in Hounsfield units: air around the head at "
                      r"(-?\d+) \(expected near -1000 HU, at most -900\), head soft tissue at (-?\d+) \(expected "
                      r"-150\.\.150 HU, brain 20\.\.50\), padding below -1100 \((\d+\.\d) % of voxels\) left out",
                      lines[0])
        assert m, lines[0]
        air, tissue, padding = int(m[1]), int(m[2]), float(m[3])
        assert 0 <= air <= 100 and 1000 <= tissue <= 1100 and 15 < padding < 30
    assert not (tmp_path / "o.nii.gz").exists() and not (tmp_path / "p.nii.gz").exists()


@pytest.mark.realdata
def test_ct_landmarks_of_real_and_phantom_heads(shared_data: Path, phantom) -> None:
    """Air near -1000 and the soft-tissue peak at brain values (HU), with and without padding."""
    from ct2mr.preprocess.ingest import ct_landmarks

    real = _arr(read_image(shared_data / "volumes" / "ct_head_invesalius.nii.gz"))
    for arr in (real, _arr(phantom.ct)):
        lm = ct_landmarks(arr)
        assert -1010 <= lm["air"] <= -990 and 15 <= lm["tissue"] <= 50 and lm["padding"] == 0
        padded = np.pad(arr, ((0, 0), (40, 40), (0, 0)), constant_values=-3024)  # outside the field of view
        lm_p = ct_landmarks(padded)
        assert abs(lm_p["air"] - lm["air"]) <= 5 and abs(lm_p["tissue"] - lm["tissue"]) <= 5 and lm_p["padding"] > 0.1
        shifted = ct_landmarks(np.where(padded < -1100, -2000, padded + 1024))  # stored values, padding -2000
        assert abs(shifted["air"] - lm["air"] - 1024) <= 5 and abs(shifted["tissue"] - lm["tissue"] - 1024) <= 5


@pytest.mark.realdata
def test_real_dicom_ct_in_unsigned_stored_values_names_the_missing_tags(shared_data: Path, tmp_path: Path) -> None:
    """The same slices stored unsigned 0..4095 (padding 0, air ~24: Siemens-like) without rescale tags."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    folder = tmp_path / "ct_dicom"
    folder.mkdir()
    for i in range(70, 73):
        src = shared_data / "head_ct_dicom_export" / "DICOM" / f"I{i}"
        hu = _arr(sitk.ReadImage(str(src)))[0]  # GDCM decodes the JPEG-lossless pixels (pydicom has no decoder here)
        ds = pydicom.dcmread(src)
        del ds.RescaleSlope, ds.RescaleIntercept, ds.PixelPaddingValue
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.uint16).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.save_as(folder / f"I{i}", enforce_file_format=True)
    with pytest.raises(InputError) as err:
        ingest(folder, "ct")
    assert str(err.value).startswith(f"{folder}: RescaleSlope/RescaleIntercept: CT not in Hounsfield units: "
                                     "observed range 0..")
