"""Tissue classes by ANTs Atropos and their overlap metrics (ct2mr.evaluation.tissue_segmentation)."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.evaluation import tissue_segmentation as ts
from ct2mr.evaluation.tissue_segmentation import (
    TISSUE_LABELS,
    AtroposSettings,
    class_means,
    dice,
    dice_per_class,
    hd95,
    hd95_per_class,
    order_classes,
    segment_tissues,
)

pytest.importorskip("ants")

#: T1-like and T2-like grey levels of CSF, GM, WM
T1_VALUES = {1: 40.0, 2: 110.0, 3: 170.0}
T2_VALUES = {1: 220.0, 2: 130.0, 3: 80.0}
SPACING = (1.2, 1.0, 0.9)  # (sz, sy, sx) mm


def three_tissue_head(shape: tuple[int, int, int] = (36, 44, 48)) -> tuple[np.ndarray, np.ndarray]:
    """Known labels (0 outside, 1 CSF, 2 GM, 3 WM) of nested ellipsoids, two CSF 'ventricles' inside the WM,
    and the brain mask (labels > 0)."""
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    lab = np.zeros(shape, dtype=np.uint8)
    lab[r <= 0.95] = 1
    lab[r <= 0.8] = 2
    lab[r <= 0.6] = 3
    vent = ((xx - 0.22) ** 2 + (yy / 2) ** 2 + zz**2 <= 0.15**2) | ((xx + 0.22) ** 2 + (yy / 2) ** 2 + zz**2 <= 0.15**2)
    lab[vent] = 1
    return lab, lab > 0


def render(labels: np.ndarray, values: dict[int, float], noise: float = 20.0, seed: int = 0) -> np.ndarray:
    """Grey levels of each class plus Gaussian noise (sigma 20: a third of the gap between classes)."""
    img = np.zeros(labels.shape, dtype=np.float64)
    for k, v in values.items():
        img[labels == k] = v
    img += np.random.default_rng(seed).normal(0.0, noise, labels.shape)
    return np.clip(img, 0, 255)


# --------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(("contrast", "values"), [("t1", T1_VALUES), ("t2", T2_VALUES)])
def test_three_tissue_phantom_dice(contrast: str, values: dict[int, float]) -> None:
    truth, mask = three_tissue_head()
    img = render(truth, values)
    seg = segment_tissues(img, mask, contrast=contrast, spacing_mm=SPACING)  # type: ignore[arg-type]
    assert seg.dtype == np.uint8 and seg.shape == truth.shape
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert not seg[~mask].any()  # background outside the mask
    d = dice_per_class(seg, truth)
    assert set(d) == {"csf", "gm", "wm"}
    assert min(d.values()) >= 0.9, d
    means = class_means(img, seg)
    assert means["csf"] == pytest.approx(values[1], abs=10)
    assert means["wm"] == pytest.approx(values[3], abs=10)


def test_contrast_mapping_reverses_for_t2() -> None:
    truth, mask = three_tissue_head()
    t2 = render(truth, T2_VALUES, seed=1)
    right = segment_tissues(t2, mask, contrast="t2", spacing_mm=SPACING)
    wrong = segment_tissues(t2, mask, contrast="t1", spacing_mm=SPACING)
    # the same three classes, CSF and WM swapped, GM kept
    assert np.array_equal(wrong == 1, right == 3)
    assert np.array_equal(wrong == 3, right == 1)
    assert np.array_equal(wrong == 2, right == 2)
    d = dice_per_class(wrong, truth)
    assert d["csf"] < 0.1 and d["wm"] < 0.1


def test_simpleitk_input_keeps_the_geometry_and_equals_array_input() -> None:
    truth, mask = three_tissue_head((30, 36, 40))
    arr = render(truth, T1_VALUES, seed=2).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING[::-1])  # SimpleITK spacing is (sx, sy, sz)
    img.SetOrigin((-10.0, 5.0, 3.0))
    msk = sitk.GetImageFromArray(mask.astype(np.uint8))
    msk.CopyInformation(img)
    out = segment_tissues(img, msk, contrast="t1")
    assert isinstance(out, sitk.Image)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSpacing() == img.GetSpacing() and out.GetOrigin() == img.GetOrigin()
    as_array = segment_tissues(arr, mask, contrast="t1", spacing_mm=SPACING)
    assert np.array_equal(sitk.GetArrayFromImage(out), as_array)
    # deterministic: a second run gives the same labels
    assert np.array_equal(segment_tissues(arr, mask, contrast="t1", spacing_mm=SPACING), as_array)


def test_public_antspyx_path_gives_the_same_labels() -> None:
    """The direct Atropos call equals antspyx' ants.atropos with the same arguments (which writes
    probability images: those go to a private temporary folder, and tempfile's folder is restored)."""
    truth, mask = three_tissue_head((28, 32, 30))
    img = render(truth, T1_VALUES, seed=3).astype(np.float32)
    settings = AtroposSettings()
    before = tempfile.tempdir
    lib = ts._run_atropos(img, mask, SPACING, settings, backend="lib")
    public = ts._run_atropos(img, mask, SPACING, settings, backend="public")
    assert tempfile.tempdir == before
    assert np.array_equal(lib, public)
    assert set(np.unique(lib[mask])) == {1, 2, 3}


def test_segmentation_input_errors() -> None:
    truth, mask = three_tissue_head((20, 20, 20))
    img = render(truth, T1_VALUES)
    with pytest.raises(ValueError, match="spacing_mm"):
        segment_tissues(img, mask, contrast="t1")
    with pytest.raises(ValueError, match="spacing_mm"):
        segment_tissues(img, mask, contrast="t1", spacing_mm=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="empty"):
        segment_tissues(img, np.zeros_like(mask), contrast="t1", spacing_mm=SPACING)
    with pytest.raises(ValueError, match="contrast"):
        segment_tissues(img, mask, contrast="flair", spacing_mm=SPACING)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differs"):
        segment_tissues(img, mask[:-1], contrast="t1", spacing_mm=SPACING)
    with pytest.raises(ValueError, match="3D"):
        segment_tissues(img[0], mask[0], contrast="t1", spacing_mm=SPACING)
    with pytest.raises(ValueError, match="fewer than 3 distinct"):
        segment_tissues(np.full(img.shape, 7.0), mask, contrast="t1", spacing_mm=SPACING)
    with pytest.raises(ValueError, match="iterations"):
        AtroposSettings(iterations=0)


def test_order_classes_by_mean_intensity() -> None:
    img = np.array([[[5.0, 50.0, 100.0, 0.0]]])
    raw = np.array([[[2, 3, 1, 0]]])  # Atropos' classes in some order
    assert order_classes(img, raw, "t1").tolist() == [[[1, 2, 3, 0]]]  # dark CSF, bright WM
    assert order_classes(img, raw, "t2").tolist() == [[[3, 2, 1, 0]]]  # bright CSF, dark WM
    with pytest.raises(ValueError, match="3 tissue classes"):
        order_classes(img, np.array([[[1, 1, 2, 0]]]), "t1")


# --------------------------------------------------------------------------- Dice


def test_dice_hand_cases() -> None:
    a = np.zeros((4, 5, 6), dtype=bool)
    b = np.zeros_like(a)
    a[0, 0, :5] = True  # 5 voxels
    b[0, 0, 2:6] = True  # 4 voxels, 3 shared
    assert dice(a, b) == pytest.approx(2 * 3 / 9)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dice(np.zeros_like(a), np.zeros_like(a)))
    with pytest.raises(ValueError, match="shape"):
        dice(a, b[:-1])


def test_dice_per_class() -> None:
    la = np.array([0, 1, 1, 2, 2, 3, 3, 3]).reshape(2, 2, 2)
    lb = np.array([0, 1, 2, 2, 2, 3, 3, 0]).reshape(2, 2, 2)
    d = dice_per_class(la, lb)
    assert d == pytest.approx({"csf": 2 * 1 / 3, "gm": 2 * 2 / 5, "wm": 2 * 2 / 5})
    d = dice_per_class(np.where(la == 1, 0, la), np.where(lb == 1, 0, lb))
    assert math.isnan(d["csf"])  # absent from both
    assert dice_per_class(la, np.where(lb == 3, 0, lb))["wm"] == 0.0  # absent from one
    assert dice_per_class(la, lb, {"x": 2}) == pytest.approx({"x": 0.8})
    assert TISSUE_LABELS == {"csf": 1, "gm": 2, "wm": 3}


# --------------------------------------------------------------------------- HD95


def cube(shape: tuple[int, int, int], lo: tuple[int, int, int], side: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[lo[0]:lo[0] + side, lo[1]:lo[1] + side, lo[2]:lo[2] + side] = True
    return m


def test_hd95_of_a_shifted_cube() -> None:
    a = cube((30, 30, 30), (8, 8, 8), 10)
    shifted_x = cube((30, 30, 30), (8, 8, 10), 10)  # 2 voxels along x
    assert hd95(a, shifted_x, (1.5, 1.5, 1.5)) == pytest.approx(3.0)  # 2 voxels of 1.5 mm
    assert hd95(shifted_x, a, (1.5, 1.5, 1.5)) == pytest.approx(3.0)
    # the spacing of the shifted axis is the one that counts: (sz, sy, sx)
    assert hd95(a, shifted_x, (5.0, 5.0, 0.7)) == pytest.approx(1.4)
    shifted_z = cube((30, 30, 30), (11, 8, 8), 10)  # 3 voxels along z of 2 mm
    assert hd95(a, shifted_z, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, a, (1.0, 1.0, 1.0)) == 0.0


def test_hd95_is_robust_to_a_stray_voxel_and_crops_exactly() -> None:
    a = cube((40, 40, 40), (5, 5, 5), 12)  # 728 surface voxels
    b = a.copy()
    b[35, 35, 35] = True  # one voxel far away: the plain Hausdorff distance would be ~40 mm
    assert hd95(a, b, (1.0, 1.0, 1.0)) == 0.0
    # two single voxels: the distance between them (the bounding-box crop must not change it)
    p = np.zeros((20, 30, 40), dtype=bool)
    q = np.zeros_like(p)
    p[2, 3, 4] = True
    q[2 + 3, 3 + 4, 4] = True
    assert hd95(p, q, (1.0, 2.0, 9.0)) == pytest.approx(math.hypot(3.0, 8.0))


def test_hd95_empty_and_errors() -> None:
    a = cube((10, 10, 10), (2, 2, 2), 4)
    empty = np.zeros_like(a)
    assert math.isnan(hd95(a, empty, (1, 1, 1)))
    assert math.isnan(hd95(empty, a, (1, 1, 1)))
    assert math.isnan(hd95(empty, empty, (1, 1, 1)))
    with pytest.raises(ValueError, match="shape"):
        hd95(a, a[:-1], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing_mm"):
        hd95(a, a, (1, 1))
    with pytest.raises(ValueError, match="3D"):
        hd95(a[0], a[0], (1, 1, 1))


def test_hd95_per_class() -> None:
    la = np.zeros((20, 20, 20), dtype=np.uint8)
    la[cube(la.shape, (4, 4, 4), 6)] = 3
    lb = np.zeros_like(la)
    lb[cube(la.shape, (4, 4, 6), 6)] = 3  # WM shifted by 2 voxels along x
    lb[0, 0, 0] = 1  # CSF only in b
    out = hd95_per_class(la, lb, (1.0, 1.0, 1.0))
    assert out["wm"] == pytest.approx(2.0)
    assert math.isnan(out["csf"]) and math.isnan(out["gm"])


# --------------------------------------------------------------------------- the workflow's segmentation


def _image(arr: np.ndarray, spacing_zyx: tuple[float, float, float] = SPACING) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_zyx[::-1])
    img.SetOrigin((10.0, -5.0, 3.0))
    return img


def test_kept_slices_mask_and_shrink_known_answers() -> None:
    m = np.ones((5, 2, 2), dtype=np.uint8)
    kept = ts.kept_slices_mask(m, [1, 2])
    assert kept[:, 0, 0].tolist() == [False, True, True, False, False]
    with pytest.raises(ValueError, match="outside the volume"):
        ts.kept_slices_mask(m, [5])
    arr = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    small = ts.shrink(_image(arr, (1.0, 1.0, 1.0)), 2)
    assert small.GetSize() == (2, 2, 2) and small.GetSpacing() == (2.0, 2.0, 2.0)
    assert small.GetOrigin() == pytest.approx((10.5, -4.5, 3.5))  # the block's centre
    assert sitk.GetArrayFromImage(small)[0, 0, 0] == pytest.approx(arr[:2, :2, :2].mean())
    mask = np.zeros((4, 4, 4), dtype=np.uint8)
    mask[:2, :2, :2] = 1
    mask[2, 2, 2] = 1  # 1 of 8: the coarse voxel stays outside
    coarse = sitk.GetArrayFromImage(ts.shrink(_image(mask), 2, is_mask=True))
    assert coarse.tolist() == [[[1, 0], [0, 0]], [[0, 0], [0, 0]]]


def test_segment_tissues_cli_on_the_kept_slices(tmp_path, capsys) -> None:  # noqa: ANN001
    from ct2mr import cli

    truth, mask = three_tissue_head()
    mr, brain = tmp_path / "mr.nii.gz", tmp_path / "brain.nii.gz"
    sitk.WriteImage(_image(render(truth, T2_VALUES).astype(np.uint8)), str(mr))
    sitk.WriteImage(_image(mask.astype(np.uint8)), str(brain))
    z_index = np.arange(4, 32)
    np.savez(tmp_path / "P.npz", z_index=z_index)
    out = tmp_path / "labels.nii.gz"
    args = ["segment-tissues", "--mr", str(mr), "--brain-mask", str(brain), "--slices", str(tmp_path / "P.npz"),
            "--output", str(out), "--contrast", "t2", "--mrf-smoothing", "0"]
    assert cli.main(args) == 0
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert not lab[:4].any() and not lab[32:].any()  # only the synthesized slices are segmented
    assert min(dice_per_class(lab[4:32], truth[4:32]).values()) >= 0.85  # no MRF, noise sigma 20
    assert cli.main([*args, "--downsample", "2"]) == 0
    coarse = sitk.ReadImage(str(out))
    assert coarse.GetSize() == (24, 22, 18) and coarse.GetSpacing() == pytest.approx((1.8, 2.0, 2.4))
    assert cli.main([*args, "--iterations", "0"]) == 2
    assert "iterations must be >= 1" in capsys.readouterr().err
