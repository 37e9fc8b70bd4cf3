"""PNG slice pairs -> npz: pairing by file name, masks, geometry, CLI, Harvard case 16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ct2mr.cli import main
from ct2mr.errors import InputError
from ct2mr.preprocess.png_slices import slices_from_png
from ct2mr.preprocess.slices import load_slices, volume_from_slices


def _write(folder: Path, names: list[str], shape=(64, 64), seed=0) -> dict[str, np.ndarray]:  # noqa: ANN001
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 / (0.4 * h) ** 2 + (xx - w / 2) ** 2 / (0.35 * w) ** 2 <= 1
    for name in names:
        a = np.zeros(shape, np.uint8)
        a[disc] = rng.integers(60, 250, int(disc.sum()))
        a[h // 2, w // 2] = 0  # a dark pixel inside the head: filled in the mask
        Image.fromarray(a).save(folder / name)
        out[name] = a
    return out


def test_paired_folder(tmp_path) -> None:  # noqa: ANN001
    names = ["7002.png", "7001.png", "7003.png"]
    ct = _write(tmp_path / "CT", names, seed=1)
    mr = _write(tmp_path / "MR", names, seed=2)
    d = slices_from_png(tmp_path / "CT", tmp_path / "MR", patient="H7", role="paired_train", size=64)
    assert d["source"] == "png" and d["z_index"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(d["ct"][0], ct["7001.png"])  # sorted by name
    np.testing.assert_array_equal(d["mr"][2], mr["7003.png"])
    assert d["ct"].dtype == np.uint8 and d["head_mask"].dtype == np.bool_
    np.testing.assert_array_equal(d["head_mask"], d["brain_mask"])
    expected = ct["7002.png"] > 0
    expected[32, 32] = True  # the dark pixel inside the head is filled
    np.testing.assert_array_equal(d["head_mask"][1], expected)
    assert d["ref_shape"].tolist() == [3, 64, 64] and int(d["crop_size"]) == 64
    assert d["crop_origin"].tolist() == [0, 0]
    np.testing.assert_array_equal(d["ref_direction"], np.eye(3).ravel())
    np.testing.assert_array_equal(volume_from_slices(d["ct"], d)[1], ct["7002.png"])


def test_glob_and_non_square_padding(tmp_path) -> None:  # noqa: ANN001
    ct = _write(tmp_path / "CT", ["a01.png", "a02.png", "b01.png"], shape=(40, 60))
    d = slices_from_png(str(tmp_path / "CT" / "a??.png"), None, patient="A", role="ct_only", size=64)
    assert d["ct"].shape == (2, 64, 64) and "mr" not in d
    assert d["crop_origin"].tolist() == [-12, -2]  # centred: (20 - 32, 30 - 32)
    np.testing.assert_array_equal(d["ct"][1, 12:52, 2:62], ct["a02.png"])
    assert (d["ct"][:, :12] == 0).all()
    # bigger than size: the 60-wide slice is padded to 60 x 60 and resized to 30 x 30, aspect kept
    d = slices_from_png(str(tmp_path / "CT" / "a??.png"), None, patient="A", role="ct_only", size=30)
    assert int(d["crop_size"]) == 60 and d["ct"].shape == (2, 30, 30)
    rows = np.nonzero(d["head_mask"][0].any(axis=1))[0]
    cols = np.nonzero(d["head_mask"][0].any(axis=0))[0]
    assert rows.size / cols.size == pytest.approx(0.8 * 40 / (0.7 * 60), abs=0.15)


def test_pairing_errors(tmp_path) -> None:  # noqa: ANN001
    _write(tmp_path / "CT", ["1001.png", "1002.png"])
    _write(tmp_path / "MR", ["1001.png"])
    with pytest.raises(InputError, match=r"1002\.png.*no MR partner"):
        slices_from_png(tmp_path / "CT", tmp_path / "MR", patient="P", role="paired_test")
    with pytest.raises(InputError, match="needs both"):
        slices_from_png(tmp_path / "CT", None, patient="P", role="paired_train")
    with pytest.raises(InputError, match="no PNG files"):
        slices_from_png(tmp_path / "nothing", None, patient="P", role="ct_only")
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(tmp_path / "MR" / "1002.png")
    with pytest.raises(InputError, match="size|mode"):
        slices_from_png(tmp_path / "CT", tmp_path / "MR", patient="P", role="paired_test")


def test_cli(tmp_path) -> None:  # noqa: ANN001
    _write(tmp_path / "CT", ["1001.png", "1002.png"])
    _write(tmp_path / "MR", ["1001.png", "1002.png"])
    out = tmp_path / "slices" / "P.npz"
    assert main(["slices-png", "--patient", "P", "--role", "paired_train", "--ct", str(tmp_path / "CT"),
                 "--mr", str(tmp_path / "MR"), "--output", str(out), "--size", "64"]) == 0
    d = load_slices(out)
    assert d["source"] == "png" and d["mr"].shape == (2, 64, 64)
    assert main(["slices-png", "--patient", "P", "--role", "paired_train", "--ct", str(tmp_path / "CT"),
                 "--output", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.realdata
def test_harvard_case_16(shared_data, tmp_path) -> None:  # noqa: ANN001
    root = shared_data / "harvard_ctmr"
    d = slices_from_png(str(root / "CT" / "16???.png"), str(root / "MR" / "16???.png"), patient="H16",
                        role="paired_train")
    assert d["ct"].shape == (18, 256, 256) and d["mr"].shape == (18, 256, 256)
    assert int(d["crop_size"]) == 256 and d["crop_origin"].tolist() == [0, 0]
    np.testing.assert_array_equal(d["ct"][7], np.asarray(Image.open(root / "CT" / "16010.png")))
    # head masks: a plausible head area (~ 100-200 cm^2 at ~1 mm) and most MR signal inside
    area = d["head_mask"].sum(axis=(1, 2))
    assert (area > 3000).all() and (area < 45000).all()
    mr = d["mr"].astype(float)
    assert mr[d["head_mask"]].sum() / mr.sum() > 0.95
    from ct2mr.preprocess.slices import save_slices

    save_slices(tmp_path / "H16.npz", d)
    assert load_slices(tmp_path / "H16.npz")["patient"] == "H16"


def test_non_positive_size_is_an_input_error(tmp_path) -> None:  # noqa: ANN001
    """size 0 used to end in a raw OverflowError from skimage's resize."""
    folder = tmp_path / "CT"
    folder.mkdir()
    Image.fromarray(np.full((40, 40), 100, np.uint8)).save(folder / "a001.png")
    with pytest.raises(InputError, match="size"):
        slices_from_png(folder, None, patient="P", role="ct_only", size=0)
