"""CT and MR masks: Dice against the phantom's labels, real-data sanity, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.phantom.patient import PhantomParams, make_patient
from ct2mr.preprocess.skull_mask import ct_masks, mr_masks


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
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.window import window_ct

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


def _pipeline_mr(path) -> sitk.Image:  # noqa: ANN001
    """An MR as the pipeline masks it: LPS (ingest), 1 mm (resample)."""
    from ct2mr.preprocess.resample import resample_isotropic

    return resample_isotropic(sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS"))


@pytest.fixture(scope="module")
def mne_t1(shared_data):  # noqa: ANN001, ANN201
    """The real T1 head and FreeSurfer's brain mask of it (bool array), on the pipeline's grid."""
    mr = _pipeline_mr(shared_data / "volumes" / "mr_head_t1_mne.nii.gz")
    t = sitk.ReadImage(str(shared_data / "volumes" / "mr_head_t1_mne_brainmask.nii.gz"))
    return mr, _a(sitk.Resample(t, mr, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0


@pytest.mark.realdata
def test_real_t1_brain_vs_freesurfer(mne_t1, tmp_path) -> None:  # noqa: ANN001
    """The default (auto -> deepbet here) against FreeSurfer: the morphology alone reached 0.825."""
    mr, truth = mne_t1
    m = mr_masks(mr)
    assert m.info is not None and m.info["method"] == "auto" and m.info["method_used"] == "deepbet"
    assert m.info["csf_contrast"] < 1.0  # T1: CSF darker than brain tissue (the threshold is 2)
    brain, head = _a(m.brain) > 0, _a(m.head) > 0
    assert dice(brain, truth) >= 0.93
    assert 1100 < _cm3(m.brain) < 1600 and not (brain & ~head).any()
    assert m.info["packages"]["deepbet"]["version"] == "1.0.2"


@pytest.mark.realdata
def test_real_t1_seg3d_volume(shared_data) -> None:  # noqa: ANN001
    mr = _pipeline_mr(shared_data / "volumes" / "mr_head_t1_seg3d.nii.gz")
    m = mr_masks(mr)
    assert 1100 < _cm3(m.brain) < 1600
    assert 1500 < _cm3(m.head) < 5000
    brain, head = _a(m.brain) > 0, _a(m.head) > 0
    assert not (brain & ~head).any()


@pytest.mark.realdata
def test_real_t1_morphology_fallback(mne_t1) -> None:  # noqa: ANN001
    """The morphology (no CNN) stays selectable; on real T1 it is the weaker mask."""
    mr, truth = mne_t1
    m = mr_masks(mr, method="morphology")
    assert m.info is not None and m.info["method_used"] == "morphology"
    assert 0.75 < dice(_a(m.brain) > 0, truth) < 0.9
    assert 900 < _cm3(m.brain) < 1900


@pytest.mark.parametrize("patient", ["P01", "P02", "P03"])
def test_phantom_t2_heads_auto(patient) -> None:  # noqa: ANN001
    """The default cohort's T2-like MR on its own grid: auto finds it CSF-bright and keeps the morphology
    (the CNN, T1-trained, cuts the bright CSF rim): Dice >= 0.99 against the analytic labels."""
    from ct2mr.phantom.patient import make_mr, mr_labels

    mr = make_mr(patient, 2018)
    truth = _a(mr_labels(patient, 2018, mr)) >= 3
    m = mr_masks(mr)
    assert m.info is not None and m.info["method_used"] == "morphology" and m.info["agreement_dice"] >= 0.75
    assert m.info["csf_contrast"] > 4.0 and m.info["brain_head_fraction"] < 0.8  # CSF-bright, with skull
    assert dice(_a(m.brain) > 0, truth) >= 0.99


def test_mr_method_choice_and_qa_json(phantom, tmp_path) -> None:  # noqa: ANN001
    import json

    with pytest.raises(InputError, match="mr_method"):
        mr_masks(phantom.mr, method="bet")
    sitk.WriteImage(phantom.mr, str(tmp_path / "mr.nii.gz"))
    for method in ("morphology", "deepbet"):
        rc = main(["skull-mask", "--modality", "mr", "--input", str(tmp_path / "mr.nii.gz"),
                   "--head-mask", str(tmp_path / "h.nii.gz"), "--brain-mask", str(tmp_path / "b.nii.gz"),
                   "--stripped", str(tmp_path / "s.nii.gz"), "--qa-png", str(tmp_path / "qa.png"),
                   "--qa-json", str(tmp_path / f"{method}.json"), "--method", method])
        assert rc == 0
        qa = json.loads((tmp_path / f"{method}.json").read_text())
        assert qa["method"] == qa["method_used"] == method
        assert qa["runtime_s"] > 0 and qa["brain_cm3"] > 100 and qa["head_cm3"] > qa["brain_cm3"]
        assert qa["packages"][method]["version"]
        assert abs(qa["brain_cm3"] - _cm3(sitk.ReadImage(str(tmp_path / "b.nii.gz")))) < 0.1


def test_auto_falls_back_to_morphology(phantom, monkeypatch) -> None:  # noqa: ANN001
    from ct2mr.preprocess import brain_extraction as bx

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise InputError(None, "skull_mask.mr_method", "deepbet is not installed")

    monkeypatch.setattr(bx, "deepbet_mask", broken)
    m = mr_masks(phantom.mr, method="auto")
    assert m.info is not None and m.info["method_used"] == "morphology" and "not installed" in m.info["fallback"]
    np.testing.assert_array_equal(_a(m.brain), _a(mr_masks(phantom.mr, method="morphology").brain))
    with pytest.raises(InputError, match="not installed"):
        mr_masks(phantom.mr, method="deepbet")


def test_deepbet_weights_come_from_the_wheel(monkeypatch) -> None:
    """No download at run time: the models are the wheel's files, loaded with networking unavailable."""
    import socket
    from pathlib import Path

    from deepbet.utils import DATA_PATH

    from ct2mr.preprocess import brain_extraction as bx

    for name in ("model.pt", "bbox_model.pt"):
        assert (Path(DATA_PATH) / "models" / name).stat().st_size > 1_000_000

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    bx._deepbet_model.cache_clear()
    try:
        model = bx._deepbet_model()
    finally:
        bx._deepbet_model.cache_clear()
    assert model.model is not None and model.bbox_model is not None


def test_mr_qa_views_go_through_the_skull_base() -> None:
    from ct2mr.preprocess.skull_mask import mr_qa_views

    brain = np.zeros((100, 120, 110), bool)
    brain[20:90, 10:110, 15:95] = True
    views = mr_qa_views(brain)
    axial = [i for v, i in views if v == "axial"]
    assert {v for v, _ in views} == {"axial", "coronal", "sagittal"}
    assert min(axial) <= 20 + 0.15 * 70  # a slice near the bottom of the brain (skull base)
    assert mr_qa_views(np.zeros((5, 5, 5), bool)) == []


def test_qa_images_overlay_and_contours(phantom, tmp_path) -> None:  # noqa: ANN001
    from ct2mr.preprocess.qa_images import save_contours_png, save_overlay_png

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
