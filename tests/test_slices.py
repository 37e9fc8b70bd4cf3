"""Slice extraction, the npz contract, and the inverse (slices back into the volume)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.preprocess.slices import (
    crop_window,
    extract_slices,
    load_slices,
    save_slices,
    volume_from_slices,
    volume_image_from_slices,
)


def _img(a: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:  # noqa: ANN001
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin((-10.0, 5.0, 2.0))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    return img


def _volume(shape=(20, 90, 70), head_box=(10, 60, 15, 55), brain_z=(5, 15)):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(0)
    ct = rng.integers(1, 256, shape, dtype=np.uint8)
    mr = rng.integers(1, 256, shape, dtype=np.uint8)
    head = np.zeros(shape, np.uint8)
    r0, r1, c0, c1 = head_box
    head[:, r0:r1, c0:c1] = 1
    brain = np.zeros(shape, np.uint8)
    brain[brain_z[0]:brain_z[1], r0 + 5:r1 - 5, c0 + 5:c1 - 5] = 1
    return ct, mr, head, brain


def test_crop_window_contains_box() -> None:
    assert crop_window((10, 59, 15, 54), 64) == ((3, 3), 64)  # centre (35, 35) -> origin 35 - 32
    (r0, c0), side = crop_window((0, 299, 40, 99), 256)
    assert side == 300 and (r0, c0) == (0, -80)  # box 300 tall > 256: window grows, never distorts
    for box in [(3, 8, 100, 180), (0, 0, 0, 0), (5, 260, 7, 9)]:
        (r0, c0), side = crop_window(box, 64)
        assert r0 <= box[0] and r0 + side > box[1] and c0 <= box[2] and c0 + side > box[3]


def test_extract_contract_and_round_trip(tmp_path) -> None:  # noqa: ANN001
    ct, mr, head, brain = _volume()
    sp = (0.9, 1.0, 1.1)
    d = extract_slices(_img(ct, sp), _img(mr, sp), _img(head, sp), _img(brain, sp), patient="P001",
                       role="paired", size=64, min_brain_voxels=100, min_slices=5)
    assert d["z_index"].tolist() == list(range(5, 15))
    assert d["ct"].shape == (10, 64, 64) and d["ct"].dtype == np.uint8
    assert d["head_mask"].dtype == np.bool_ and d["brain_mask"].dtype == np.bool_
    assert int(d["crop_size"]) == 64 and d["crop_origin"].tolist() == [3, 3]
    assert d["ref_shape"].tolist() == [20, 90, 70]
    np.testing.assert_allclose(d["ref_spacing"], sp)
    np.testing.assert_array_equal(d["ct"][0], ct[5, 3:67, 3:67])  # 1 voxel stays 1 pixel
    path = tmp_path / "P001.npz"
    save_slices(path, d)
    e = load_slices(path)
    assert e["patient"] == "P001" and e["role"] == "paired" and e["source"] == "volume"
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["ct", "mr", "head_mask", "brain_mask", "z_index", "crop_origin",
                                          "crop_size", "ref_shape", "ref_spacing", "ref_origin",
                                          "ref_direction", "patient", "role", "source"])
        assert z["crop_size"].dtype == np.int64 and z["crop_size"].shape == ()
        assert z["ref_direction"].shape == (9,) and z["patient"].dtype.kind == "U"
    # slices -> volume -> slices: exact on the kept voxels
    vol = volume_from_slices(e["ct"], e, fill=0)
    assert vol.shape == (20, 90, 70) and vol.dtype == np.uint8
    np.testing.assert_array_equal(vol[5:15, 3:67, 3:67], ct[5:15, 3:67, 3:67])
    assert (vol[:5] == 0).all() and (vol[5:15, :3] == 0).all()
    again = extract_slices(_img(vol, sp), None, _img(head, sp), _img(brain, sp), patient="P001", role="paired",
                           size=64, min_brain_voxels=100)
    np.testing.assert_array_equal(again["ct"], e["ct"])
    img = volume_image_from_slices(e["mr"], e)
    assert img.GetSpacing() == pytest.approx(sp) and img.GetOrigin() == (-10.0, 5.0, 2.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img)[5:15, 3:67, 3:67], mr[5:15, 3:67, 3:67])
    bvol = volume_from_slices(e["brain_mask"], e)
    np.testing.assert_array_equal(bvol, brain > 0)
    fvol = volume_from_slices(e["ct"], e, fill=-1.5)
    assert fvol.dtype == np.float32 and fvol[0, 0, 0] == -1.5


def test_padding_when_window_leaves_image() -> None:
    ct, mr, head, brain = _volume(shape=(12, 40, 50), head_box=(0, 40, 0, 30), brain_z=(2, 10))
    d = extract_slices(_img(ct), None, _img(head), _img(brain), patient="P", role="ct_only", size=64,
                       min_brain_voxels=10)
    r0, c0 = d["crop_origin"].tolist()
    assert (r0, c0) == (-12, -17)  # centre (20, 15) - 32
    assert "mr" not in d
    assert (d["ct"][:, :12] == 0).all() and (d["ct"][:, :, :17] == 0).all()
    np.testing.assert_array_equal(d["ct"][:, 12:52, 17:64], ct[2:10, :, :47])  # window ends at column 47
    vol = volume_from_slices(d["ct"], d)
    np.testing.assert_array_equal(vol[2:10, :, :47], ct[2:10, :, :47])
    assert (vol[2:10, :, 47:] == 0).all()


def test_large_head_is_resized_without_distortion() -> None:
    shape = (8, 100, 60)
    ct = np.zeros(shape, np.uint8)
    head = np.zeros(shape, np.uint8)
    head[:, 10:90, 10:50] = 1  # 80 x 40 box > size 40 -> window 80, scale 0.5
    ct[head > 0] = 200
    brain = head.copy()
    d = extract_slices(_img(ct), None, _img(head), _img(brain), patient="P", role="ct_only", size=40,
                       min_brain_voxels=10)
    assert int(d["crop_size"]) == 80 and d["ct"].shape == (8, 40, 40)
    hm = d["head_mask"][0]
    rows, cols = np.nonzero(hm.any(axis=1))[0], np.nonzero(hm.any(axis=0))[0]
    assert rows.size == pytest.approx(40, abs=1) and cols.size == pytest.approx(20, abs=1)  # 2:1 kept
    vol = volume_from_slices(d["head_mask"], d)
    assert vol.dtype == np.bool_ and vol.shape == shape
    assert abs(int(vol.sum()) - int(head.sum())) < 0.05 * head.sum()


def test_too_few_slices_and_bad_files(tmp_path) -> None:  # noqa: ANN001
    ct, mr, head, brain = _volume()
    with pytest.raises(InputError, match="brain_mask.*only 10 axial slices"):
        extract_slices(_img(ct), None, _img(head), _img(brain), patient="P", role="r", size=64,
                       min_brain_voxels=100, min_slices=11)
    with pytest.raises(InputError, match="uint8"):
        extract_slices(_img(ct.astype(np.int16)), None, _img(head), _img(brain), patient="P", role="r", size=64)
    d = extract_slices(_img(ct), None, _img(head), _img(brain), patient="P", role="r", size=64,
                       min_brain_voxels=100)
    bad = dict(d)
    del bad["z_index"]
    with pytest.raises(InputError, match="z_index: missing key"):
        save_slices(tmp_path / "x.npz", bad)
    assert not (tmp_path / "x.npz").exists()
    bad = {k: v for k, v in d.items()}
    np.savez(tmp_path / "y.npz", **{k: np.asarray(v) for k, v in bad.items() if k != "head_mask"},
             head_mask=d["head_mask"].astype(np.uint8))
    with pytest.raises(InputError, match=r"y\.npz: head_mask: dtype uint8"):
        load_slices(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", **{k: np.asarray(v) for k, v in d.items() if k != "ct"},
             ct=d["ct"][:, :32])
    with pytest.raises(InputError, match="ct: shape"):
        load_slices(tmp_path / "z.npz")
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(InputError, match=r"t\.npz: cannot read npz"):
        load_slices(tmp_path / "t.npz")
    with pytest.raises(InputError, match="not found"):
        load_slices(tmp_path / "missing.npz")


def test_cli(tmp_path) -> None:  # noqa: ANN001
    ct, mr, head, brain = _volume()
    for name, a in (("ct", ct), ("mr", mr), ("head", head), ("brain", brain)):
        sitk.WriteImage(_img(a), str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "slices" / "P001.npz"
    args = ["slices", "--patient", "P001", "--role", "paired", "--ct", str(tmp_path / "ct.nii.gz"),
            "--mr", str(tmp_path / "mr.nii.gz"), "--head-mask", str(tmp_path / "head.nii.gz"),
            "--brain-mask", str(tmp_path / "brain.nii.gz"), "--output", str(out), "--size", "64",
            "--min-brain-voxels", "100", "--min-slices", "5"]
    assert main(args) == 0
    d = load_slices(out)
    assert d["ct"].shape == (10, 64, 64) and d["mr"].shape == (10, 64, 64)
    assert main([*args[:-2], "--min-slices", "50"]) == 2


def test_phantom_slices() -> None:
    from ct2mr.phantom.patient import PhantomParams, make_patient
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.skull_mask import ct_masks
    from ct2mr.preprocess.window import window_ct

    p = make_patient("P003", 2, PhantomParams(ct_spacing_mm=(2.0, 2.0, 3.0), mr_spacing_mm=(3.0, 3.0, 3.0)))
    ct = resample_isotropic(p.ct)
    m = ct_masks(ct)
    d = extract_slices(window_ct(ct), None, m.head, m.brain, patient="P003", role="ct_only")
    assert d["ct"].shape[1:] == (256, 256) and d["ct"].shape[0] >= 50
    assert int(d["crop_size"]) == 256  # a ~190 x 210 mm head fits in 256 mm at 1 mm
    # every kept slice has >= 500 brain voxels, and the whole head is in the window
    assert (d["brain_mask"].sum(axis=(1, 2)) >= 500).all()
    head = sitk.GetArrayFromImage(m.head)[d["z_index"]] > 0
    assert d["head_mask"].sum() == head.sum()


@pytest.mark.realdata
def test_real_ct_slices(shared_data) -> None:  # noqa: ANN001
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.skull_mask import ct_masks
    from ct2mr.preprocess.window import window_ct

    ct = resample_isotropic(sitk.DICOMOrient(sitk.ReadImage(str(shared_data / "volumes" / "ct_head_invesalius.nii.gz")),
                                             "LPS"))
    m = ct_masks(ct)
    d = extract_slices(window_ct(ct), None, m.head, m.brain, patient="INV", role="ct_only")
    assert d["ct"].shape[1:] == (256, 256) and 60 <= d["ct"].shape[0] <= 162
    assert int(d["crop_size"]) == 256  # 245 x 245 mm axial field of view fits at 1 mm
    vol = volume_from_slices(d["ct"], d)
    a = sitk.GetArrayFromImage(window_ct(ct))  # a copy: a view of a temporary image dangles
    head = sitk.GetArrayFromImage(m.head)[d["z_index"]] > 0
    # every head voxel of the kept slices is inside the 256 window and comes back exactly
    np.testing.assert_array_equal(vol[d["z_index"]][head], a[d["z_index"]][head])


@pytest.mark.parametrize("flag", [["--size", "0"], ["--size", "-4"], ["--min-slices", "0"]])
def test_cli_non_positive_size_or_count_is_a_one_line_error(tmp_path, capsys, flag) -> None:  # noqa: ANN001
    """`--size 0` ended in a raw OverflowError from skimage, `--min-slices 0` could end in an IndexError."""
    ct, mr, head, brain = _volume()
    for name, a in (("ct", ct), ("head", head), ("brain", brain)):
        sitk.WriteImage(_img(a), str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "P001.npz"
    args = ["slices", "--patient", "P001", "--role", "ct_only", "--ct", str(tmp_path / "ct.nii.gz"),
            "--head-mask", str(tmp_path / "head.nii.gz"), "--brain-mask", str(tmp_path / "brain.nii.gz"),
            "--output", str(out), *flag]
    assert main(args) == 2
    assert flag[0] in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(InputError, match="must be >= 1"):
        extract_slices(_img(ct), None, _img(head), _img(brain), patient="P", role="ct_only", size=0)


def test_mask_with_another_orientation_is_refused() -> None:
    """Same size, spacing and origin but another direction (a flipped axis): the arrays do not
    line up voxel by voxel, so the mask must be refused (it was silently used)."""
    ct, _, head, brain = _volume()
    flipped = _img(head)
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="direction") as err:
        extract_slices(_img(ct), None, flipped, _img(brain), patient="P", role="ct_only", size=64,
                       min_brain_voxels=100)
    assert err.value.field == "head_mask"
