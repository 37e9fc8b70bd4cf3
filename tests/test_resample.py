"""Isotropic resampling: grid geometry, exact values on a linear ramp, pixel types, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.preprocess.resample import output_grid, resample_isotropic


def _ramp(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:  # noqa: ANN001
    # value = 2*x_mm + 3*y_mm + 5*z_mm in index space scaled by spacing (physical, origin 0)
    nz, ny, nx = 10, 12, 14
    sp = (0.5, 1.5, 3.0)
    z, y, x = np.meshgrid(np.arange(nz) * sp[2], np.arange(ny) * sp[1], np.arange(nx) * sp[0], indexing="ij")
    img = sitk.GetImageFromArray((2 * x + 3 * y + 5 * z).astype(np.float32))
    img.SetSpacing(sp)
    img.SetOrigin((10.0, -20.0, 5.0))
    img.SetDirection(direction)
    return img


def test_grid_geometry_and_ramp_values() -> None:
    img = _ramp()
    out = resample_isotropic(img, (1.0, 1.0, 1.0))
    # first to last voxel centre: 6.5 x 16.5 x 27 mm -> 7, 17, 28 voxels of 1 mm
    assert out.GetSize() == (7, 17, 28)
    assert out.GetSpacing() == (1.0, 1.0, 1.0)
    assert out.GetOrigin() == img.GetOrigin()
    assert out.GetDirection() == img.GetDirection()
    assert out.GetPixelID() == sitk.sitkFloat32
    a = sitk.GetArrayFromImage(out)
    z, y, x = np.meshgrid(np.arange(28.0), np.arange(17.0), np.arange(7.0), indexing="ij")
    # every output centre lies inside the input's centres: linear interpolation reproduces
    # the ramp exactly everywhere, and no voxel is extrapolated to the background
    np.testing.assert_allclose(a, 2 * x + 3 * y + 5 * z, atol=1e-3)


def test_direction_kept_for_rotated_grid() -> None:
    d = (0, -1, 0, 1, 0, 0, 0, 0, 1)
    img = _ramp(d)
    out = resample_isotropic(img, (1.0, 1.0, 1.0))
    assert out.GetDirection() == tuple(float(v) for v in d)
    assert out.GetOrigin() == img.GetOrigin()
    # a physical point maps to the same value
    p = img.TransformContinuousIndexToPhysicalPoint((4.0, 6.0, 3.0))
    idx = out.TransformPhysicalPointToIndex(p)
    assert out[idx] == pytest.approx(img[4, 6, 3], abs=1e-3)


def test_ct_int16_rounding_and_background() -> None:
    arr = np.full((4, 4, 4), 100, np.int16)
    arr[:, :, 2:] = 101
    arr[0, 0, 0] = -1024
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    out = resample_isotropic(img)
    assert out.GetPixelID() == sitk.sitkInt16
    assert out.GetSize() == (7, 7, 7)  # 3 x 2 mm between first and last centre -> 7 voxels of 1 mm
    a = sitk.GetArrayFromImage(out)
    assert a[0, 0, 0] == -1024 and a[-1, -1, -1] == 101  # the corner centres keep their values
    assert set(np.unique(a[2:6, 2:6, :])) <= {100, 101}  # linear between 100 and 101, rounded


def test_nearest_keeps_mask_values() -> None:
    m = np.zeros((5, 6, 7), np.uint8)
    m[1:4, 2:5, 2:6] = 1
    img = sitk.GetImageFromArray(m)
    img.SetSpacing((1.0, 1.0, 2.5))
    out = resample_isotropic(img, interpolator="nearest")
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSize() == (7, 6, 11)  # 4 x 2.5 = 10 mm between first and last centre -> 11
    a = sitk.GetArrayFromImage(out)
    assert set(np.unique(a)) == {0, 1}
    # volume preserved to within one slab
    assert abs(a.sum() * 1.0 - m.sum() * 2.5) <= 3 * 4 * 1 * 2.5


def test_output_grid_rounding() -> None:
    img = sitk.Image(256, 108, 256, sitk.sitkInt16)
    img.SetSpacing((0.9570311903953552, 1.5, 0.9570311903953552))
    size, _ = output_grid(img, (1, 1, 1))
    assert size == (245, 161, 245)  # 255 x 0.957 = 244.04 -> 245; 107 x 1.5 = 160.5 -> 161
    img.SetSpacing((0.800000011920929, 0.8, 2.0))  # a float32 spacing must not lose a voxel
    size, _ = output_grid(img, (1, 1, 1))
    assert size[0] == 205  # 255 x 0.8 = 204.0000030 -> 205


def test_phantom_anisotropic() -> None:
    phantom = pytest.importorskip("ct2mr.phantom.patient")
    p = phantom.make_patient("P001", 1, phantom.PhantomParams(ct_spacing_mm=(2.0, 2.0, 3.0)))
    ct = p.ct
    out = resample_isotropic(ct, (1.0, 1.0, 1.0))
    exp = tuple(int(np.floor((n - 1) * s + 1e-6)) + 1 for n, s in zip(ct.GetSize(), ct.GetSpacing(), strict=True))
    assert out.GetSize() == exp
    assert out.GetOrigin() == ct.GetOrigin() and out.GetDirection() == ct.GetDirection()
    assert out.GetPixelID() == ct.GetPixelID() == sitk.sitkInt16
    assert sitk.GetArrayViewFromImage(out).min() >= -1024
    lab = resample_isotropic(p.labels, (1.0, 1.0, 1.0), "nearest")
    assert set(np.unique(sitk.GetArrayViewFromImage(lab))) <= set(range(7))


def test_cli(tmp_path) -> None:  # noqa: ANN001
    img = _ramp()
    sitk.WriteImage(img, str(tmp_path / "in.nii.gz"))
    assert main(["resample", "--input", str(tmp_path / "in.nii.gz"), "--output", str(tmp_path / "o.nii.gz"),
                 "--spacing", "1", "1", "1", "--interpolator", "linear", "--default-value", "-7"]) == 0
    out = sitk.ReadImage(str(tmp_path / "o.nii.gz"))
    assert out.GetSize() == (7, 17, 28)
    assert sitk.GetArrayFromImage(out)[-1, -1, -1] == pytest.approx(2 * 6 + 3 * 16 + 5 * 27, abs=1e-3)
    assert main(["resample", "--input", str(tmp_path / "missing.nii.gz"), "--output",
                 str(tmp_path / "x.nii.gz")]) == 2


@pytest.mark.realdata
def test_real_ct(shared_data) -> None:  # noqa: ANN001
    ct = sitk.ReadImage(str(shared_data / "volumes" / "ct_head_invesalius.nii.gz"))
    assert ct.GetSize() == (256, 256, 108)  # axial slices along z (corrected copy of 2026-12-01)
    out = resample_isotropic(ct)
    # 256 x 0.957 mm -> 245 voxels of 1 mm in x and y; 108 x 1.5 mm -> 161 along z
    assert out.GetSize() == (245, 245, 161)
    assert out.GetSpacing() == (1.0, 1.0, 1.0)
    assert out.GetOrigin() == ct.GetOrigin() and out.GetDirection() == ct.GetDirection()
    assert out.GetPixelID() == sitk.sitkInt16
    a = sitk.GetArrayViewFromImage(out)
    assert a.min() >= -1024 and a.max() <= 2986
