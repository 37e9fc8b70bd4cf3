"""ct2mr.phantom (anatomy, patient, command) and the truth JSON of ct2mr.preprocess.registration.truth:
determinism, variety, plausible anatomy, the truth convention, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.io.atomic import write_json
from ct2mr.io.imageio import read_image
from ct2mr.phantom.anatomy import LABELS
from ct2mr.phantom.patient import (
    MR_FOV_MARGIN,
    PhantomParams,
    brain_points,
    make_ct,
    make_mr,
    make_patient,
    make_truth,
    tre_mm,
)
from ct2mr.preprocess.registration.truth import truth_from_json, truth_to_json

#: coarse grids keep the tests fast (~0.1 s a patient)
COARSE = PhantomParams(ct_spacing_mm=(2.0, 2.0, 3.0), mr_spacing_mm=(2.5, 2.5, 3.5))


@pytest.fixture(scope="module")
def p01():
    return make_patient("P01", 2018, COARSE)


def _arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


def test_types_and_grids(p01) -> None:
    assert p01.ct.GetPixelID() == sitk.sitkInt16
    assert p01.mr.GetPixelID() == sitk.sitkFloat32
    assert p01.labels.GetPixelID() == sitk.sitkUInt8
    assert p01.ct.GetSize() == (105, 120, 40)  # fov / spacing
    assert p01.labels.GetSize() == p01.ct.GetSize()
    assert p01.mr.GetSize() == tuple(round(f * MR_FOV_MARGIN / s) for f, s in zip(COARSE.fov_mm, COARSE.mr_spacing_mm))
    for img in (p01.ct, p01.mr, p01.labels):
        assert img.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)  # LPS
    np.testing.assert_allclose(p01.ct.GetSpacing(), COARSE.ct_spacing_mm)
    np.testing.assert_allclose(p01.mr.GetSpacing(), COARSE.mr_spacing_mm)
    # grids are centred on the physical origin
    centre = p01.ct.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in p01.ct.GetSize()])
    np.testing.assert_allclose(centre, 0, atol=1e-9)
    assert set(np.unique(_arr(p01.labels))) == set(LABELS.values())


def test_deterministic_and_grid_independent_anatomy(p01) -> None:
    again = make_patient("P01", 2018, COARSE)
    for key in ("ct", "mr", "labels"):
        np.testing.assert_array_equal(_arr(getattr(again, key)), _arr(getattr(p01, key)))
    assert truth_to_json(again.truth) == truth_to_json(p01.truth)
    other_grid = make_patient("P01", 2018, PhantomParams(ct_spacing_mm=(3.0, 3.0, 4.0), mr_spacing_mm=(4.0, 4.0, 4.0)))
    assert other_grid.anatomy == p01.anatomy
    assert truth_to_json(other_grid.truth) == truth_to_json(p01.truth)


def test_parts_equal_whole(p01) -> None:
    ct, labels = make_ct("P01", 2018, COARSE)
    np.testing.assert_array_equal(_arr(ct), _arr(p01.ct))
    np.testing.assert_array_equal(_arr(labels), _arr(p01.labels))
    np.testing.assert_array_equal(_arr(make_mr("P01", 2018, COARSE)), _arr(p01.mr))
    assert truth_to_json(make_truth("P01", 2018, COARSE)) == truth_to_json(p01.truth)


def test_patients_and_seeds_differ(p01) -> None:
    others = [make_patient("P02", 2018, COARSE), make_patient("P01", 7, COARSE)]
    for other in others:
        assert other.anatomy["head_semi_axes_mm"] != p01.anatomy["head_semi_axes_mm"]
        assert other.anatomy["skull_mm"] != p01.anatomy["skull_mm"]
        assert other.anatomy["centre_mm"] != p01.anatomy["centre_mm"]
        assert not np.allclose(other.truth.GetMatrix(), p01.truth.GetMatrix())
        assert (_arr(other.labels) != _arr(p01.labels)).mean() > 0.01


def test_ct_hu_values_per_tissue(p01) -> None:
    ct, lab = _arr(p01.ct).astype(float), _arr(p01.labels)
    # interior voxels only (away from partial-volume edges)
    core = {k: ndimage.binary_erosion(lab == v) for k, v in LABELS.items()}
    assert ct[core["air"]].mean() == pytest.approx(-1000, abs=5)
    assert 20 <= ct[core["scalp"]].mean() <= 60
    assert 600 <= ct[lab == LABELS["skull"]].mean() <= 1500
    assert ct[lab == LABELS["skull"]].max() >= 900
    assert 20 <= ct[core["white_matter"]].mean() <= 35
    assert 0 <= ct[core["ventricles"]].mean() <= 16
    sd = ct[core["white_matter"]].std()
    assert 4 <= sd <= 11  # noise sigma 5-10 HU
    assert ct.min() >= -1024 and ct.max() <= 3071


def test_label_volumes_plausible_and_skull_encloses_brain(p01) -> None:
    lab = _arr(p01.labels)
    ml = np.prod(p01.labels.GetSpacing()) / 1000
    vol = {k: (lab == v).sum() * ml for k, v in LABELS.items()}
    brain = vol["csf"] + vol["grey_matter"] + vol["white_matter"] + vol["ventricles"]
    # FOV is 120 mm in z: most of, not the whole, brain
    assert 700 <= brain <= 2000
    assert 150 <= vol["skull"] <= 700
    assert 100 <= vol["grey_matter"] <= 800
    assert 3 <= vol["ventricles"] <= 60
    # nothing intracranial is reachable from the outside air without crossing bone
    comp, _ = ndimage.label(lab != LABELS["skull"])
    outside = comp == comp[0, 0, 0]
    assert not np.any(outside & (lab >= LABELS["csf"]))
    # skull thickness along the x axis through the head centre: 5-8 mm (2 mm voxels)
    cz, cy = lab.shape[0] // 2, lab.shape[1] // 2
    row = lab[cz, cy]
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, row == LABELS["skull"], 0])))[::2] * 2.0
    assert len(runs) == 2 and all(4 <= r <= 10 for r in runs)


def test_mr_values_t2_like(p01) -> None:
    mr = _arr(p01.mr)
    assert mr.min() >= 0
    reg = _arr(sitk.Resample(p01.mr, p01.ct, p01.truth, sitk.sitkLinear, 0.0))
    lab = _arr(p01.labels)
    core = {k: ndimage.binary_erosion(lab == v) for k, v in LABELS.items()}
    mean = {k: reg[m].mean() for k, m in core.items() if m.any()}
    assert mean["ventricles"] > mean["grey_matter"] > mean["white_matter"] > mean["skull"]
    assert mean["scalp"] > mean["skull"]
    assert mean["air"] < 0.1 * mean["white_matter"]


def _template(labels: np.ndarray) -> np.ndarray:
    """Nominal T2-like value per label (what a perfectly registered MR looks like)."""
    lut = np.array([0, 480, 40, 950, 610, 420, 950], dtype=float)
    return lut[labels]


def test_truth_convention_registers_mr_onto_ct_labels(p01) -> None:
    lab = _arr(p01.labels)
    tmpl = _template(lab).ravel()
    good = _arr(sitk.Resample(p01.mr, p01.ct, p01.truth, sitk.sitkLinear, 0.0)).ravel()
    wrong = _arr(sitk.Resample(p01.mr, p01.ct, p01.truth.GetInverse(), sitk.sitkLinear, 0.0)).ravel()
    none = _arr(sitk.Resample(p01.mr, p01.ct, sitk.Transform(), sitk.sitkLinear, 0.0)).ravel()
    r_good, r_wrong, r_none = (np.corrcoef(tmpl, x)[0, 1] for x in (good, wrong, none))
    assert r_good > 0.9
    assert r_good > max(r_wrong, r_none) + 0.05
    # ventricles are bright exactly where the CT labels say so
    vent = ndimage.binary_erosion(lab == LABELS["ventricles"]).ravel()
    wm = ndimage.binary_erosion(lab == LABELS["white_matter"], iterations=2).ravel()
    assert good[vent].mean() > 1.6 * good[wm].mean()


def test_misalignment_within_limits() -> None:
    params = PhantomParams(ct_spacing_mm=(6.0, 6.0, 6.0), mr_spacing_mm=(6.0, 6.0, 6.0))
    for pid in ("P01", "P02", "P03", "P04"):
        t = make_patient(pid, 2018, params).truth
        m = np.asarray(t.GetMatrix()).reshape(3, 3)
        sv = np.linalg.svd(m, compute_uv=False)
        assert np.all(np.abs(sv - 1) <= params.max_scale + 1e-9)
        assert np.all(np.abs(t.GetTranslation()) <= params.max_translation_mm)
        # rotation part: angle of the polar factor <= sqrt(3) * max per-axis angle
        u, _, vt = np.linalg.svd(m)
        angle = np.degrees(np.arccos(np.clip((np.trace(u @ vt) - 1) / 2, -1, 1)))
        assert 0 < angle <= np.sqrt(3) * params.max_rotation_deg + 1e-6
    still = make_patient("P01", 2018, PhantomParams(ct_spacing_mm=(6.0, 6.0, 6.0), mr_spacing_mm=(6.0, 6.0, 6.0),
                                                    max_rotation_deg=0, max_translation_mm=0, max_scale=0))
    np.testing.assert_allclose(still.truth.GetMatrix(), np.eye(3).ravel())
    np.testing.assert_allclose(still.truth.GetTranslation(), 0)


def test_truth_json_round_trip(tmp_path: Path, p01) -> None:
    path = tmp_path / "truth.json"
    write_json(path, truth_to_json(p01.truth))
    data = json.loads(path.read_text())
    assert set(data) >= {"matrix", "translation", "center", "convention"}
    assert np.asarray(data["matrix"]).shape == (3, 3)
    back = truth_from_json(path)
    pts = np.random.default_rng(0).uniform(-80, 80, (20, 3))
    assert tre_mm(back, p01.truth, pts) < 1e-9
    # row-major matrix, ITK semantics q = M (p - c) + c + t
    p = np.array([10.0, -20.0, 30.0])
    m, c, t = np.asarray(data["matrix"]), np.asarray(data["center"]), np.asarray(data["translation"])
    np.testing.assert_allclose(p01.truth.TransformPoint(tuple(p)), m @ (p - c) + c + t, atol=1e-9)


def test_truth_json_of_other_linear_transforms(tmp_path: Path) -> None:
    euler = sitk.Euler3DTransform((5.0, -3.0, 2.0), 0.1, -0.05, 0.2, (1.0, 2.0, -4.0))
    path = tmp_path / "t.json"
    write_json(path, truth_to_json(euler))
    pts = np.random.default_rng(2).uniform(-100, 100, (50, 3))
    assert tre_mm(truth_from_json(path), euler, pts) < 1e-9


@pytest.mark.parametrize(
    ("content", "field"),
    [("{}", "matrix"), ('{"matrix": [[1,0],[0,1]], "translation": [0,0,0], "center": [0,0,0]}', "matrix"),
     ('{"matrix": [[1,0,0],[0,1,0],[0,0,1]], "translation": [0,0], "center": [0,0,0]}', "translation"),
     ("not json", None)],
)
def test_truth_json_bad_input(tmp_path: Path, content: str, field: str | None) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        truth_from_json(path)
    assert str(path) in str(err.value)
    if field:
        assert err.value.field == field
    with pytest.raises(InputError, match="does not exist"):
        truth_from_json(tmp_path / "missing.json")


def test_tre_mm_known_answers() -> None:
    pts = np.random.default_rng(1).normal(0, 50, (100, 3))
    ident = sitk.AffineTransform(3)
    assert tre_mm(ident, sitk.Transform(3, sitk.sitkIdentity), pts) == 0.0
    shift = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    assert tre_mm(shift, ident, pts) == pytest.approx(5.0)
    # 90 degrees about z around the origin: |R p - p| = sqrt(2) * radial distance
    rot = sitk.Euler3DTransform((0, 0, 0), 0, 0, np.pi / 2)
    expected = np.mean(np.sqrt(2) * np.linalg.norm(pts[:, :2], axis=1))
    assert tre_mm(rot, ident, pts) == pytest.approx(expected)


def test_brain_points_lie_in_the_brain(p01) -> None:
    pts = brain_points(p01.labels, n=200, seed=0)
    assert pts.shape == (200, 3)
    lab = p01.labels
    values = [lab[lab.TransformPhysicalPointToIndex(tuple(p))] for p in pts]
    assert min(values) >= LABELS["csf"]


def test_cli_subsets_are_consistent(tmp_path: Path, p01) -> None:
    common = ["phantom", "--patient", "P01", "--seed", "2018", "--ct-spacing", "2", "2", "3",
              "--mr-spacing", "2.5", "2.5", "3.5"]
    assert main([*common, "--ct", str(tmp_path / "ct.nii.gz"), "--mr", str(tmp_path / "mr_dicom"),
                 "--truth", str(tmp_path / "truth.json"), "--labels", str(tmp_path / "labels.nii.gz")]) == 0
    assert main([*common, "--ct", str(tmp_path / "ct_alone.nii.gz")]) == 0
    assert main([*common, "--truth", str(tmp_path / "truth_alone.json")]) == 0
    assert main([*common, "--mr", str(tmp_path / "mr_alone.nrrd")]) == 0
    np.testing.assert_array_equal(_arr(read_image(tmp_path / "mr_alone.nrrd")), _arr(p01.mr))
    ct, alone = read_image(tmp_path / "ct.nii.gz"), read_image(tmp_path / "ct_alone.nii.gz")
    np.testing.assert_array_equal(_arr(ct), _arr(alone))
    np.testing.assert_array_equal(_arr(ct), _arr(p01.ct))
    np.testing.assert_array_equal(_arr(read_image(tmp_path / "labels.nii.gz")), _arr(p01.labels))
    mr = read_image(tmp_path / "mr_dicom")  # DICOM series (no image suffix)
    np.testing.assert_allclose(mr.GetOrigin(), p01.mr.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mr.GetSpacing(), p01.mr.GetSpacing(), atol=1e-4)
    assert np.abs(_arr(mr) - _arr(p01.mr)).max() <= _arr(p01.mr).max() / 50000
    t1, t2 = truth_from_json(tmp_path / "truth.json"), truth_from_json(tmp_path / "truth_alone.json")
    assert tre_mm(t1, p01.truth, np.zeros((1, 3))) == 0 and tre_mm(t2, t1, np.eye(3) * 50) == 0


def test_cli_rejects_bad_flags(tmp_path: Path, capsys) -> None:
    assert main(["phantom", "--patient", "P01", "--ct-spacing", "0", "1", "1", "--ct", str(tmp_path / "c.nii.gz")]) == 2
    assert "--ct-spacing" in capsys.readouterr().err
    assert main(["phantom", "--patient", "P01", "--labels", str(tmp_path / "labels_folder")]) == 2
    assert main(["phantom", "--patient", "P01"]) == 2
    assert "at least one of" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_one_tre_function_and_one_affine_flattener() -> None:
    """phantom's TRE / affine helpers are the registration package's (no second implementation)."""
    from ct2mr.phantom import patient as phantom
    from ct2mr.preprocess.registration import base, quality

    assert phantom.tre_mm is quality.tre_mm
    assert not hasattr(phantom, "_as_affine")
    euler = sitk.Euler3DTransform((5.0, -3.0, 2.0), 0.1, -0.05, 0.2, (1.0, 2.0, -4.0))
    d = truth_to_json(euler)
    ref = base.as_affine(euler)
    np.testing.assert_allclose(np.asarray(d["matrix"]).ravel(), ref.GetMatrix(), atol=1e-12)
    np.testing.assert_allclose(d["translation"], ref.GetTranslation(), atol=1e-9)
