"""CT and MR masks: Dice against the phantom's labels, real-data sanity, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.phantom import PhantomParams, make_patient
from ct2mr.skull_mask import ct_masks, mr_masks


def _a(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom():  # noqa: ANN201
    # 1 x 1 x 1.5 mm CT, a 60 mm slab: fast, and fine enough for the skull's partial volume
    return make_patient("P001", 1, PhantomParams(ct_spacing_mm=(1.0, 1.0, 1.5), mr_spacing_mm=(1.5, 1.5, 2.0),
                                                 fov_mm=(210.0, 240.0, 60.0)))


def test_ct_masks_dice(phantom) -> None:  # noqa: ANN001
    m = ct_masks(phantom.ct)
    lab = _a(phantom.labels)
    for img in (m.head, m.skull, m.brain):
        assert img.GetPixelID() == sitk.sitkUInt8
        assert set(np.unique(_a(img))) <= {0, 1}
        assert img.GetSize() == phantom.ct.GetSize() and img.GetOrigin() == phantom.ct.GetOrigin()
    assert dice(_a(m.head), lab > 0) >= 0.95
    # the phantom's skull label is "bone fraction >= 0.5" (half way between scalp ~40 HU and bone ~1400 HU);
    # the default 300 HU threshold also takes partial-volume voxels with ~20 % bone: Dice ~0.946 here.
    assert dice(_a(m.skull), lab == 2) >= 0.94
    hu = phantom.anatomy.get("ct_values_hu", {})
    mid = 0.5 * (hu.get("scalp", 40.0) + hu.get("skull", 1400.0))
    assert dice(_a(ct_masks(phantom.ct, skull_threshold_hu=mid).skull), lab == 2) >= 0.98
    assert dice(_a(m.brain), lab >= 3) >= 0.95
    brain = _a(m.brain) > 0
    assert not (brain & (_a(m.skull) > 0)).any()
    stripped = _a(m.stripped)
    assert stripped.dtype == np.int16
    assert (stripped[~brain] == -1024).all()
    np.testing.assert_array_equal(stripped[brain], _a(phantom.ct)[brain])


def test_mr_masks_dice(phantom) -> None:  # noqa: ANN001
    m = mr_masks(phantom.mr)
    # labels on the MR grid through the known transform; 255 marks MR voxels outside the CT's field of view
    lab = _a(sitk.Resample(phantom.labels, phantom.mr, phantom.truth.GetInverse(), sitk.sitkNearestNeighbor, 255))
    valid = lab != 255
    assert valid.sum() > 0.3 * lab.size
    assert dice(_a(m.head)[valid], lab[valid] > 0) >= 0.95
    assert dice(_a(m.brain)[valid], lab[valid] >= 3) >= 0.95
    brain = _a(m.brain) > 0
    assert not (brain & ~(_a(m.head) > 0)).any()
    np.testing.assert_array_equal(_a(m.stripped), _a(phantom.mr) * brain)


def test_skull_threshold_parameter(phantom) -> None:  # noqa: ANN001
    lo = ct_masks(phantom.ct, skull_threshold_hu=200.0).skull
    hi = ct_masks(phantom.ct, skull_threshold_hu=900.0).skull
    assert _a(hi).sum() < _a(lo).sum()
    assert not (_a(hi) > _a(lo)).any()  # higher threshold -> subset


def test_bad_input() -> None:
    air = sitk.Image(20, 20, 20, sitk.sitkInt16) - 1000
    with pytest.raises(InputError, match="head"):
        ct_masks(air)
    with pytest.raises(InputError, match="constant"):
        mr_masks(sitk.Image(10, 10, 10, sitk.sitkFloat32))


def test_cli_ct_and_mr(phantom, tmp_path) -> None:  # noqa: ANN001
    sitk.WriteImage(phantom.ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(phantom.mr, str(tmp_path / "mr.nii.gz"))
    rc = main(["skull-mask", "--modality", "ct", "--input", str(tmp_path / "ct.nii.gz"),
               "--head-mask", str(tmp_path / "h.nii.gz"), "--brain-mask", str(tmp_path / "b.nii.gz"),
               "--stripped", str(tmp_path / "s.nii.gz"), "--skull-mask", str(tmp_path / "k.nii.gz"),
               "--qa-png", str(tmp_path / "qa_ct.png"), "--skull-threshold-hu", "300", "--head-threshold-hu", "-400"])
    assert rc == 0
    for name in ("h", "b", "s", "k"):
        assert sitk.ReadImage(str(tmp_path / f"{name}.nii.gz")).GetSize() == phantom.ct.GetSize()
    assert (tmp_path / "qa_ct.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc = main(["skull-mask", "--modality", "mr", "--input", str(tmp_path / "mr.nii.gz"),
               "--head-mask", str(tmp_path / "mh.nii.gz"), "--brain-mask", str(tmp_path / "mb.nii.gz"),
               "--stripped", str(tmp_path / "ms.nii.gz"), "--qa-png", str(tmp_path / "qa_mr.png"),
               "--brain-erosion-mm", "3"])
    assert rc == 0
    assert sitk.ReadImage(str(tmp_path / "mb.nii.gz")).GetPixelID() == sitk.sitkUInt8
    assert (tmp_path / "qa_mr.png").stat().st_size > 1000


def _cm3(m: sitk.Image) -> float:
    return float(_a(m).sum()) * float(np.prod(m.GetSpacing())) / 1000.0


@pytest.mark.realdata
def test_real_ct(shared_data) -> None:  # noqa: ANN001
    from ct2mr.resample import resample_isotropic
    from ct2mr.window import window_ct

    ct = resample_isotropic(sitk.DICOMOrient(sitk.ReadImage(str(shared_data / "volumes" / "ct_head_invesalius.nii.gz")),
                                             "LPS"))
    m = ct_masks(ct)
    skull, brain, head = (_a(x) > 0 for x in (m.skull, m.brain, m.head))
    assert 200 < _cm3(m.skull) < 1200
    assert 900 < _cm3(m.brain) < 1900
    assert not (brain & skull).any() and not (brain & ~head).any()
    # the brain sits inside the skull: each brain voxel has skull both above it and below it in its column
    # along y (anterior-posterior) for most voxels (the field of view cuts the forehead)
    zc = int(np.median(np.nonzero(brain)[0]))
    cols = np.nonzero(brain[zc].any(axis=0))[0]
    inside = [skull[zc, :, c].any() for c in cols]
    assert np.mean(inside) > 0.95
    g = _a(window_ct(ct))
    assert g.dtype == np.uint8
    assert 40 <= np.median(g[brain]) <= 200  # grey/white matter ~20-40 HU -> ~64-128


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mr_head_t1_seg3d", "mr_head_t1_mne"])
def test_real_t1(shared_data, name) -> None:  # noqa: ANN001
    from ct2mr.resample import resample_isotropic

    mr = resample_isotropic(sitk.DICOMOrient(sitk.ReadImage(str(shared_data / "volumes" / f"{name}.nii.gz")), "LPS"))
    m = mr_masks(mr)
    assert 900 < _cm3(m.brain) < 1900
    assert 1500 < _cm3(m.head) < 5000
    brain, head = _a(m.brain) > 0, _a(m.head) > 0
    assert not (brain & ~head).any()


def test_qa_images_overlay_and_contours(phantom, tmp_path) -> None:  # noqa: ANN001
    from ct2mr.qa_images import save_contours_png, save_overlay_png

    ct = phantom.ct
    shifted = sitk.Resample(ct, ct, sitk.TranslationTransform(3, (5.0, 0.0, 0.0)), sitk.sitkLinear, -1024.0)
    save_overlay_png(tmp_path / "ov.png", ct, {"before": shifted, "after": ct}, title="test")
    save_contours_png(tmp_path / "c.png", ct, {"head": ct > -400})
    from PIL import Image

    with Image.open(tmp_path / "ov.png") as im:
        assert im.height > im.width / 5  # two rows (before, after) of five views
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # misalignment shows colour (magenta/green fringes), alignment grey: some strongly coloured pixels exist
    assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 100).any()
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(InputError, match="shape"):
        save_contours_png(tmp_path / "bad.png", ct, {"m": np.zeros((2, 2, 2), np.uint8)})
    assert not (tmp_path / "bad.png").exists()
