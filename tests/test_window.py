"""CT window W80/L40 and MR percentile normalisation: exact values."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.preprocess.window import mr_percentiles, normalise_mr, window_ct


def test_window_ct_exact_values() -> None:
    hu = np.array([-1000, -1, 0, 20, 40, 60, 79, 80, 81, 1000], dtype=np.int16)
    g = window_ct(hu)
    assert g.dtype == np.uint8
    # (HU - 0) / 80 * 255, rint half-to-even: 20 -> 63.75 -> 64; 40 -> 127.5 -> 128; 60 -> 191.25 -> 191
    # 79 -> 251.8125 -> 252
    assert g.tolist() == [0, 0, 0, 64, 128, 191, 252, 255, 255, 255]


def test_window_ct_other_window_and_image_geometry() -> None:
    arr = np.array([[[-160, 0, 240, 400]]], dtype=np.int16)  # W400/L40: lo = -160, hi = 240
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 2.0, 3.0))
    img.SetOrigin((1.0, 2.0, 3.0))
    out = window_ct(img, width_hu=400, level_hu=40)
    assert isinstance(out, sitk.Image)
    assert out.GetSpacing() == img.GetSpacing() and out.GetOrigin() == img.GetOrigin()
    # 0 -> 160/400*255 = 102.0
    assert sitk.GetArrayFromImage(out).ravel().tolist() == [0, 102, 255, 255]
    with pytest.raises(InputError, match="width"):
        window_ct(arr, width_hu=0)


def test_normalise_mr_exact() -> None:
    # inside the mask: values 0..100 (101 values) -> p1 = 1, p99 = 99
    mr = np.zeros((1, 11, 11), np.float32)
    mask = np.zeros_like(mr, dtype=np.uint8)
    mr.ravel()[:101] = np.arange(101)
    mask.ravel()[:101] = 1
    mr.ravel()[101:] = 500.0  # outside the mask: must become 0 and not affect the percentiles
    assert mr_percentiles(mr, mask) == pytest.approx((1.0, 99.0))
    g = normalise_mr(mr, mask)
    assert g.dtype == np.uint8
    flat = g.ravel()
    assert flat[0] == 0 and flat[1] == 0 and flat[99] == 255 and flat[100] == 255
    assert flat[50] == 128  # (50-1)/98*255 = 127.5 -> rint -> 128
    assert flat[25] == round((25 - 1) / 98 * 255)  # 62.45 -> 62
    assert (flat[101:] == 0).all()


def test_normalise_mr_bad_input() -> None:
    mr = np.ones((2, 3, 3), np.float32)
    with pytest.raises(InputError, match="empty"):
        normalise_mr(mr, np.zeros_like(mr))
    with pytest.raises(InputError, match="constant"):
        normalise_mr(mr, np.ones_like(mr))


def test_window_cli(tmp_path) -> None:  # noqa: ANN001
    arr = np.array([[[-1000, 0, 40, 80]]], dtype=np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "ct.nii.gz"))
    assert main(["window", "--modality", "ct", "--input", str(tmp_path / "ct.nii.gz"),
                 "--output", str(tmp_path / "w.nii.gz")]) == 0
    out = sitk.ReadImage(str(tmp_path / "w.nii.gz"))
    assert out.GetPixelID() == sitk.sitkUInt8
    assert sitk.GetArrayFromImage(out).ravel().tolist() == [0, 0, 128, 255]
    # MR without a mask: exit status 2 (InputError), no output
    assert main(["window", "--modality", "mr", "--input", str(tmp_path / "ct.nii.gz"),
                 "--output", str(tmp_path / "m.nii.gz")]) == 2
    assert not (tmp_path / "m.nii.gz").exists()


def test_window_cli_mr_mask_on_another_grid_is_refused(tmp_path, capsys) -> None:  # noqa: ANN001
    """A head mask with the MR's size but another origin or orientation gave percentiles of the
    wrong voxels without any message; now exit 2 naming the mask file and the property."""
    rng = np.random.default_rng(0)
    mr = sitk.GetImageFromArray(rng.uniform(0, 100, (4, 6, 8)).astype(np.float32))
    mask = sitk.GetImageFromArray(np.ones((4, 6, 8), np.uint8))
    sitk.WriteImage(mr, str(tmp_path / "mr.nii.gz"))
    for what, change in (("origin", lambda m: m.SetOrigin((5.0, 0.0, 0.0))),
                         ("direction", lambda m: m.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1)))):
        bad = sitk.Image(mask)
        change(bad)
        path = tmp_path / f"mask_{what}.nii.gz"
        sitk.WriteImage(bad, str(path))
        out = tmp_path / "m.nii.gz"
        assert main(["window", "--modality", "mr", "--input", str(tmp_path / "mr.nii.gz"), "--mask", str(path),
                     "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert path.name in err and what in err
        assert not out.exists()
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))  # same grid: fine
    assert main(["window", "--modality", "mr", "--input", str(tmp_path / "mr.nii.gz"),
                 "--mask", str(tmp_path / "mask.nii.gz"), "--output", str(tmp_path / "ok.nii.gz")]) == 0
