"""Header sanity on read: broken voxel sizes / directions refused, qform-sform and slice-axis doubts warned.

The broken files are made by editing the header bytes of a valid NIfTI-1 written by
SimpleITK (offsets of the NIfTI-1 standard), so each test breaks exactly one field.
"""

from __future__ import annotations

import gzip
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.imageio import check_geometry, read_image

REPO = Path(__file__).resolve().parents[1]

#: NIfTI-1 field -> (byte offset, struct format) (little endian, as SimpleITK writes)
FIELDS = {
    "pixdim": (76, "<8f"), "qform_code": (252, "<h"), "sform_code": (254, "<h"), "quatern": (256, "<3f"),
    "qoffset": (268, "<3f"), "srow_x": (280, "<4f"), "srow_y": (296, "<4f"), "srow_z": (312, "<4f"),
}


def _head_ct(shape_zyx=(12, 40, 36), spacing=(1.0, 1.0, 2.5)) -> sitk.Image:
    """A small head-like CT (HU) with an air background and a bone shell, identity direction (LPS)."""
    z, y, x = np.mgrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    r = np.sqrt(((y - shape_zyx[1] / 2) / (shape_zyx[1] / 2.5)) ** 2 + ((x - shape_zyx[2] / 2) / (shape_zyx[2] / 2.5)) ** 2)
    arr = np.where(r < 1, 40, -1000) + np.where((r > 0.8) & (r < 1), 1000, 0)
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing(spacing)
    return img


def _nifti(tmp_path: Path, name: str = "ct.nii", img: sitk.Image | None = None, **patch: object) -> Path:
    """Write a valid NIfTI-1 and overwrite the given header fields; ``.gz`` names are gzipped after patching."""
    raw = tmp_path / "raw.nii"
    sitk.WriteImage(img if img is not None else _head_ct(), str(raw))
    data = bytearray(raw.read_bytes())
    raw.unlink()
    for field, value in patch.items():
        off, fmt = FIELDS[field]
        if field == "pixdim" and isinstance(value, dict):  # {index: value}
            pix = list(struct.unpack_from(fmt, data, off))
            for i, v in value.items():
                pix[i] = v
            value = pix
        values = value if isinstance(value, (list, tuple)) else [value]
        struct.pack_into(fmt, data, off, *values)
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(data)) if name.endswith(".gz") else bytes(data))
    return path


SHEAR = [-1.0, 0.5, 0.0, 0.0]  # SimpleITK writes srow_x = [-1, 0, 0, -origin_x] (RAS) for an LPS identity

BROKEN = [
    ("zero voxel size", {"pixdim": {2: 0.0}}, "pixdim[2]: voxel size must be a finite number > 0 mm, got 0"),
    ("negative voxel size", {"pixdim": {1: -1.0}}, "pixdim[1]: voxel size must be a finite number > 0 mm, got -1"),
    ("NaN voxel size", {"pixdim": {3: float("nan")}}, "pixdim[3]: voxel size must be a finite number > 0 mm, got nan"),
    ("infinite voxel size", {"pixdim": {3: float("inf")}}, "pixdim[3]: voxel size must be a finite number > 0 mm, got inf"),
    ("sheared sform, valid qform", {"srow_x": SHEAR}, "sform (srow_x/y/z): direction matrix is not orthonormal"),
    ("sheared sform, no qform", {"srow_x": SHEAR, "qform_code": 0}, "sform (srow_x/y/z): direction matrix is not orthonormal"),
    ("zero-length sform axis", {"srow_y": [0.0, 0.0, 0.0, 0.0]}, "sform (srow_x/y/z): an axis has zero length"),
    ("non-finite sform", {"srow_z": [0.0, 0.0, float("nan"), 0.0]}, "sform (srow_x/y/z): holds values that are not finite"),
    ("not a rotation", {"quatern": [0.9, 0.9, 0.0]}, "qform (quatern_b/c/d): not a rotation"),
]


@pytest.mark.parametrize(("name", "patch", "words"), BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_broken_nifti_header_is_refused_naming_file_and_field(tmp_path: Path, name: str, patch: dict, words: str,
                                                              suffix: str) -> None:
    """Issue 8 item 5: ITK read these with 1 mm made up, a flipped axis, or the qform instead of the sheared sform."""
    path = _nifti(tmp_path, "ct" + suffix, **patch)
    with pytest.raises(InputError) as err:
        read_image(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and words in msg, msg
    assert "\n" not in msg


def test_the_unbroken_file_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The same file without the edit reads with its true geometry and no warning (the tests above test the edit)."""
    with caplog.at_level(logging.WARNING):
        img = read_image(_nifti(tmp_path))
    assert img.GetSpacing() == pytest.approx((1.0, 1.0, 2.5))
    assert not caplog.records


def test_ingest_cli_refuses_a_zero_voxel_size_on_one_line(tmp_path: Path) -> None:
    path = _nifti(tmp_path, "ct.nii.gz", pixdim={2: 0.0})
    out = tmp_path / "out.nii.gz"
    res = subprocess.run([sys.executable, "-m", "ct2mr", "ingest", "--modality", "ct", "--input", str(path),
                          "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ct2mr ingest: error:")]
    assert errors == [f"ct2mr ingest: error: {path}: pixdim[2]: voxel size must be a finite number > 0 mm, got 0"]
    assert not out.exists()


def test_qform_sform_disagreement_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _nifti(tmp_path, qoffset=[10.0, 0.0, 0.0])  # the qform moved 10 mm; the sform kept
    with caplog.at_level(logging.WARNING, logger="ct2mr.io.imageio"):
        img = read_image(path)
    assert "qform and sform disagree (volume corners up to 10 mm apart); SimpleITK used the sform" in caplog.text
    assert str(path) in caplog.text
    assert img.GetOrigin() == pytest.approx((0.0, 0.0, 0.0))


def test_mislabelled_volume_warns_at_ingest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A volume whose thick axis is labelled y (its array[k] planes are coronal, like the old InVesalius copy)."""
    from ct2mr.preprocess.ingest import ingest

    axial = sitk.GetArrayFromImage(_head_ct(shape_zyx=(24, 40, 36), spacing=(1.0, 1.0, 1.0)))
    mislabelled = sitk.GetImageFromArray(np.ascontiguousarray(axial.transpose(1, 0, 2)))  # [y, z, x] stored as [z, y, x]
    mislabelled.SetSpacing((1.0, 2.5, 1.0))
    path = tmp_path / "mislabelled.nii.gz"
    sitk.WriteImage(mislabelled, str(path))
    with caplog.at_level(logging.WARNING, logger="ct2mr.io.imageio"):
        ingest(path, "ct")
    assert "thickest voxel axis is y (anterior-posterior)" in caplog.text and str(path) in caplog.text
    caplog.clear()
    good = tmp_path / "axial.nii.gz"
    sitk.WriteImage(_head_ct(), str(good))
    with caplog.at_level(logging.WARNING, logger="ct2mr.io.imageio"):
        ingest(good, "ct")
    assert "thickest" not in caplog.text


@pytest.mark.parametrize(("spacing", "direction", "words"), [
    ((1.0, 1.0, 1.0), (1, 0.5, 0, 0, 1, 0, 0, 0, 1), "direction: direction matrix is not orthonormal"),
    ((1.0, float("nan"), 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), "voxel size: must be a finite number > 0 mm"),
])
def test_geometry_check_for_any_format(spacing: tuple, direction: tuple, words: str) -> None:
    img = sitk.Image([4, 4, 4], sitk.sitkInt16)
    img.SetSpacing((1.0, 1.0, 1.0))
    # SimpleITK refuses to set a non-finite spacing or a singular direction: test the check on a stand-in
    fake = type("Img", (), {"GetSpacing": lambda self: spacing, "GetDirection": lambda self: direction,
                            "GetDimension": lambda self: 3})()
    with pytest.raises(InputError, match=words.replace("(", r"\(")):
        check_geometry(fake, "x.mha")
    check_geometry(img, "x.mha")


def test_sheared_mha_and_negative_element_spacing_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.mha"
    sitk.WriteImage(_head_ct(), str(src))
    data = src.read_bytes()
    sheared = tmp_path / "sheared.mha"
    sheared.write_bytes(data.replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 0.5 1 0 0 0 1"))
    with pytest.raises(InputError, match=r"sheared\.mha: direction: direction matrix is not orthonormal"):
        read_image(sheared)
    negative = tmp_path / "negative.mha"
    negative.write_bytes(data.replace(b"ElementSpacing = 1 1 2.5", b"ElementSpacing = 1 -1 2.5"))
    with pytest.raises(InputError, match=r"negative\.mha: ElementSpacing: voxel size must be a finite number > 0"):
        read_image(negative)


def test_real_volumes_read_cleanly(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every volume of ../shared/data reads with no refusal and no warning (the corrected InVesalius CT included)."""
    from ct2mr.io.imageio import check_slice_axis

    files = sorted((shared_data / "volumes").glob("*.nii.gz"))
    assert files
    with caplog.at_level(logging.WARNING):
        for f in files:
            img = read_image(f)
            assert check_slice_axis(sitk.DICOMOrient(img, "LPS"), f), f
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
