"""Unpaired 2D image pools: mixed sizes and modes, canvas placement, head masks, bad inputs, real pools."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ct2mr.cli import main
from ct2mr.cohort.patients import load_patients
from ct2mr.errors import InputError
from ct2mr.preprocess.image_pools import list_pool_images, place_on_canvas, pool_head_mask, slices_from_pool
from ct2mr.preprocess.slices import load_slices


def _head(h: int, w: int, value: int = 140) -> np.ndarray:
    """A bright skull ring (250) around tissue (``value``) in an ellipse filling ~80% of the image."""
    yy, xx = np.mgrid[:h, :w]
    r = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.4 * w)) ** 2
    a = np.zeros((h, w), np.uint8)
    a[r <= 1.0] = 250
    a[r <= 0.8] = value
    a[int(h * 0.45):int(h * 0.55), int(w * 0.45):int(w * 0.55)] = 10  # dark ventricle: a hole to fill
    return a


def _mixed_pool(folder: Path) -> dict[str, np.ndarray]:
    """Images of several sizes and PIL modes, PNG and JPEG; returns name -> grey truth."""
    folder.mkdir(parents=True, exist_ok=True)
    grey: dict[str, np.ndarray] = {}
    a = _head(300, 200)
    Image.fromarray(a).save(folder / "a_L_tall.png")
    grey["a_L_tall.png"] = a
    b = _head(120, 180)
    rgb = np.stack([b, b, b], -1)
    Image.fromarray(rgb).save(folder / "b_RGB_wide.png")
    grey["b_RGB_wide.png"] = b
    c = _head(256, 256)
    Image.fromarray(c).convert("LA").save(folder / "c_LA.png")
    grey["c_LA.png"] = c
    d = _head(64, 80)
    Image.fromarray(d).convert("P").save(folder / "d_P.png")
    grey["d_P.png"] = d
    e = _head(400, 380)
    Image.fromarray(np.stack([e, e, e], -1)).save(folder / "e_RGB.jpg", quality=95)
    grey["e_RGB.jpg"] = e
    f = _head(90, 70)
    Image.fromarray(f).save(folder / "f_L.JPEG", quality=95)
    grey["f_L.JPEG"] = f
    (folder / "labels.csv").write_text("id,label\n0,1\n")  # skipped: not an image ending
    return grey


def test_mixed_sizes_and_modes_load(tmp_path: Path) -> None:
    grey = _mixed_pool(tmp_path / "pool")
    d = slices_from_pool(tmp_path / "pool", patient="POOL", role="ct_only", size=128)
    assert d["ct"].shape == (6, 128, 128) and d["ct"].dtype == np.uint8 and "mr" not in d
    assert d["source"] == "pool" and d["role"] == "ct_only" and d["z_index"].tolist() == list(range(6))
    assert d["head_mask"].dtype == np.bool_ and d["head_mask"].any(axis=(1, 2)).all()
    names = [f.name for f in list_pool_images(tmp_path / "pool")]
    assert names == sorted(grey)  # labels.csv skipped, sorted by path
    for i, name in enumerate(names):
        a = grey[name]
        h, w = a.shape
        # aspect kept: the image's footprint on the canvas has the image's proportions
        bright = d["ct"][i] > 60  # the head, not resampling or JPEG noise
        cols = np.nonzero(bright.any(axis=0))[0]
        rows = np.nonzero(bright.any(axis=1))[0]
        assert max(np.ptp(rows), np.ptp(cols)) + 1 == pytest.approx(0.8 * 128, abs=4)  # the head fills 80%
        assert (np.ptp(rows) + 1) / (np.ptp(cols) + 1) == pytest.approx(h / w, rel=0.08)
        # the head mask covers the head (fraction of the ellipse area, holes filled)
        area = d["head_mask"][i].sum()
        scale = 128 / max(h, w)
        expected = np.pi * (0.4 * h * scale) * (0.4 * w * scale)
        assert area == pytest.approx(expected, rel=0.12), name
    # a 256-square L image on a 256 canvas is copied unchanged
    d256 = slices_from_pool(str(tmp_path / "pool" / "c_*.png"), patient="P", role="mr_only", size=256)
    np.testing.assert_array_equal(d256["mr"][0], grey["c_LA.png"])


def test_rgb_becomes_luminance(tmp_path: Path) -> None:
    a = _head(100, 100)
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[..., 0] = a  # red only: luminance 0.299 * a
    Image.fromarray(rgb).save(tmp_path / "red.png")
    d = slices_from_pool(tmp_path / "red.png", patient="P", role="ct_only", size=100)
    np.testing.assert_allclose(d["ct"][0], np.round(0.299 * a.astype(float)), atol=1)


def test_canvas_placement_keeps_aspect() -> None:
    canvas, foot, scale = place_on_canvas(np.full((50, 200), 100, np.uint8), 100)
    assert scale == 0.5 and canvas.shape == (100, 100)
    rows = np.nonzero(foot.any(axis=1))[0]
    assert rows.min() == 37 and rows.max() == 61 and foot.all(axis=0).sum() == 0 and foot.any(axis=0).all()
    assert (canvas[foot] == 100).all() and (canvas[~foot] == 0).all()


def test_head_mask_drops_letters_and_holder() -> None:
    img = _head(256, 256)
    img[5:25, 5:20] = 255  # a figure letter in the corner
    img[236:240, 30:226] = 200  # a thin head-holder line below the head
    m = pool_head_mask(img)
    assert not m[5:25, 5:20].any() and not m[236:240, 30:226].any()
    assert m[128, 128] and m[128, 128 - 90]  # the filled ventricle and the tissue near the skull


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: None, r"no images found"),
        (lambda d: (d / "notes.png").write_text("not an image"), r"notes\.png.*not an image"),
        (lambda d: Image.fromarray(np.zeros((64, 64), np.uint16) + 300).save(d / "deep.png"),
         r"deep\.png.*16-bit"),
        (lambda d: Image.fromarray(np.zeros((31, 100), np.uint8)).save(d / "tiny.png"),
         r"tiny\.png.*100x31 px.*at least 32"),
        (lambda d: Image.fromarray(np.zeros((64, 64), np.uint8)).save(d / "pic.gif"),
         r"pic\.gif.*not a PNG or JPEG image \(found GIF"),
    ],
    ids=["empty", "text-as-png", "16-bit", "under-32px", "gif-in-glob"],
)
def test_bad_pool_inputs_are_one_line_errors(tmp_path: Path, make, match: str) -> None:  # noqa: ANN001
    pool = tmp_path / "pool"
    pool.mkdir()
    make(pool)
    spec = str(pool / "*") if match.startswith(r"pic") else pool
    with pytest.raises(InputError, match=match) as err:
        slices_from_pool(spec, patient="P", role="ct_only", size=64)
    assert "\n" not in str(err.value)


def test_glob_matching_a_non_image_file(tmp_path: Path) -> None:
    Image.fromarray(_head(64, 64)).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("id\n0\n")
    with pytest.raises(InputError, match=r"labels\.csv.*not an image"):
        slices_from_pool(str(tmp_path / "*"), patient="P", role="ct_only", size=64)


def test_pool_roles_only(tmp_path: Path) -> None:
    Image.fromarray(_head(64, 64)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="ct_only or mr_only"):
        slices_from_pool(tmp_path, patient="P", role="paired_train", size=64)


def test_cli_and_patient_table(tmp_path: Path) -> None:
    _mixed_pool(tmp_path / "pool")
    out = tmp_path / "slices" / "POOL.npz"
    assert main(["slices-pool", "--patient", "POOL", "--role", "mr_only", "--images", str(tmp_path / "pool"),
                 "--output", str(out), "--size", "64"]) == 0
    d = load_slices(out)
    assert d["source"] == "pool" and d["mr"].shape == (6, 64, 64)
    assert main(["slices-pool", "--patient", "P", "--role", "mr_only", "--images", str(tmp_path / "none"),
                 "--output", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists()
    table = tmp_path / "patients.tsv"
    table.write_text("patient\trole\tct\tmr\n"
                     f"CTP\tct_only\t{tmp_path / 'pool'}\t\n"
                     f"MRP\tmr_only\t\t{tmp_path / 'pool' / '*.jpg'}\n")
    rows = {p.patient: p for p in load_patients(table)}
    assert rows["CTP"].is_pool and rows["MRP"].is_pool and rows["CTP"].is_png


@pytest.mark.realdata
def test_real_pools(shared_data: Path) -> None:
    ct = slices_from_pool(shared_data / "head_ct_2d", patient="HCT", role="ct_only")
    assert ct["ct"].shape == (200, 256, 256)  # labels.csv skipped
    frac = ct["head_mask"].mean(axis=(1, 2))
    assert frac.min() > 0.2 and frac.max() < 0.95  # a head in every image, never the whole canvas
    # letters sit in the corners: the corners are never head
    assert not ct["head_mask"][:, :12, :12].any() and not ct["head_mask"][:, :12, -12:].any()
    mr = slices_from_pool(str(shared_data / "harvard_mr_unpaired" / "case*" / "*.png"), patient="HMR",
                          role="mr_only")
    assert mr["mr"].shape == (324, 256, 256)
    np.testing.assert_array_equal(mr["mr"][0], np.asarray(Image.open(
        sorted((shared_data / "harvard_mr_unpaired").glob("case*/*.png"))[0])))  # 256 px: copied unchanged
    area = mr["head_mask"].sum(axis=(1, 2))
    assert (area > 1500).all() and (area < 0.75 * 256**2).all()
    m = mr["mr"].astype(float)
    assert m[mr["head_mask"]].sum() / m.sum() > 0.85  # most MR signal inside the head mask


def test_workflow_plans_a_pool_row(tmp_path: Path) -> None:
    """A pool row joins the DAG at slice extraction (rule slices_pool), with no 3D stage."""
    from tests.workflow_helpers import make_tiny_workdir, planned_jobs

    _mixed_pool(tmp_path / "pool")
    make_tiny_workdir(tmp_path / "wd")
    with open(tmp_path / "wd" / "patients.tsv", "a", encoding="utf-8") as fh:
        fh.write(f"POOL_CT\tct_only\t{tmp_path / 'pool'}\t\t\n")
        fh.write(f"POOL_MR\tmr_only\t\t{tmp_path / 'pool' / '*.jpg'}\t\n")
    jobs = planned_jobs(tmp_path / "wd")
    assert jobs["slices_pool"] == 2
    assert jobs["prepare_ct"] + jobs["prepare_mr"] == 8  # the tiny cohort's 8 scans; the pools have none
    import yaml

    from ct2mr.cohort.config import validate_config

    cfg = validate_config(yaml.safe_load((tmp_path / "wd" / "config.yaml").read_text()), source="tiny config")
    variants = cfg["training"]["variants"]
    baselines = [v for v in variants if v != "mrgan"]  # one difference map per baseline of mrgan
    assert jobs["compare"] == 1 and jobs["fig_difference"] == len(baselines) and jobs["comparison_table"] == 1


# --------------------------------------------------------------------------- images that are no head slice


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width x height`` 8-bit grey pixels (no pixel data: a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _bad_images(folder: Path) -> dict[str, str]:
    """An all-black image, a 2000x40 strip and an image of isolated dots (empty head mask) -> file -> why."""
    Image.fromarray(np.zeros((300, 240), np.uint8)).save(folder / "black.png")
    strip = np.zeros((40, 2000), np.uint8)
    strip[5:35, 100:1900] = 180
    Image.fromarray(strip).save(folder / "strip.png")
    dots = np.zeros((256, 256), np.uint8)
    dots[::8, ::8] = 255  # bright single pixels: no region survives the mask's opening
    Image.fromarray(dots).save(folder / "dots.png")
    return {"black.png": r"blank.*every pixel is 0", "strip.png": r"2000x40.*strip",
            "dots.png": r"no head found.*head mask is empty"}


def _check_dropped(caplog: pytest.LogCaptureFixture, why: dict[str, str], patient: str) -> None:
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for name, reason in why.items():
        hits = [w for w in warnings if name in w]
        assert len(hits) == 1, (name, warnings)
        assert re.search(reason, hits[0]) and "dropped" in hits[0] and patient in hits[0], hits[0]
        assert "\n" not in hits[0]


def test_non_head_images_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    good = _head(200, 160)
    Image.fromarray(good).save(pool / "a_head.png")
    Image.fromarray(_head(120, 120)).save(pool / "z_head.png")
    why = _bad_images(pool)
    caplog.set_level("INFO")
    d = slices_from_pool(pool, patient="POOL", role="ct_only", size=64)
    assert d["ct"].shape == (2, 64, 64) and d["z_index"].tolist() == [0, 1]  # only the two heads
    assert d["head_mask"].any(axis=(1, 2)).all()
    np.testing.assert_array_equal(d["ct"][0], place_on_canvas(good, 64)[0])  # the first kept image is a_head
    _check_dropped(caplog, why, "POOL")


@pytest.mark.realdata
def test_real_pool_with_non_head_images(shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    for name in ("000.png", "107.png", "150.png"):  # RGB / RGBA web images; 107 is the 274x408 one
        shutil.copy(shared_data / "head_ct_2d" / name, pool / name)
    why = _bad_images(pool)
    caplog.set_level("INFO")
    d = slices_from_pool(pool, patient="HCT", role="ct_only")
    assert d["ct"].shape == (3, 256, 256)
    assert (d["head_mask"].mean(axis=(1, 2)) > 0.2).all()
    _check_dropped(caplog, why, "HCT")


def test_every_image_dropped_is_one_line_error(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    _bad_images(pool)
    with pytest.raises(InputError, match=r"pool.*every image.*dropped \(3 of 3\).*black\.png.*blank") as err:
        slices_from_pool(pool, patient="P", role="ct_only", size=64)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (10000, 10000)], ids=["bomb-error", "bomb-warning"])
def test_decompression_bomb_is_refused(tmp_path: Path, width: int, height: int) -> None:
    """PIL raises over 2x its pixel limit and only warns between 1x and 2x: both are refused, naming the count."""
    import warnings

    pool = tmp_path / "pool"
    pool.mkdir()
    Image.fromarray(_head(64, 64)).save(pool / "a.png")
    _png_header_only(pool / "huge.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escapes would fail here
        with pytest.raises(InputError, match=rf"huge\.png.*{width * height} pixels.*decompression") as err:
            slices_from_pool(pool, patient="P", role="ct_only", size=64)
    assert "\n" not in str(err.value)


def test_pool_image_info_reads_the_header_only(tmp_path: Path) -> None:
    from ct2mr.preprocess.image_pools import pool_image_info

    Image.fromarray(np.stack([_head(40, 90)] * 3, -1)).save(tmp_path / "rgb.png")
    info = pool_image_info(tmp_path / "rgb.png")
    assert (info.width, info.height, info.mode, info.format) == (90, 40, "RGB", "PNG")
    assert info.drop_reason is None
    _png_header_only(tmp_path / "strip.png", 2000, 40)  # no pixel data: the header is enough
    assert "strip" in pool_image_info(tmp_path / "strip.png").drop_reason
    _png_header_only(tmp_path / "huge.png", 30000, 30000)
    with pytest.raises(InputError, match="900000000 pixels"):
        pool_image_info(tmp_path / "huge.png")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--size", "16"], r"--size: 16.*at least 32"),
        (["--patient", "../evil"], r"--patient: '\.\./evil'.*patient id"),
        (["--patient", "my pool"], r"--patient: 'my pool'.*patient id"),
        (["--patient", "_pool"], r"--patient: '_pool'.*patient id"),
    ],
    ids=["size-16", "dotdot", "space", "leading-underscore"],
)
def test_slices_pool_enforces_workflow_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                              match: str) -> None:
    Image.fromarray(_head(64, 64)).save(tmp_path / "a.png")
    base = {"--patient": "POOL", "--role": "ct_only", "--images": str(tmp_path), "--size": "64",
            "--output": str(tmp_path / "out.npz")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["slices-pool", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "out.npz").exists()


def test_limits_are_the_schemas() -> None:
    """The limits slices-pool enforces are the workflow's: config.schema slices.size and patients.schema patient."""
    import jsonschema

    from ct2mr.cohort.schema import CONFIG_SCHEMA, PATIENTS_SCHEMA, load_yaml
    from ct2mr.preprocess.image_pools import MIN_SLICE_SIZE, is_patient_id

    assert MIN_SLICE_SIZE == load_yaml(CONFIG_SCHEMA)["properties"]["slices"]["properties"]["size"]["minimum"]
    rule = jsonschema.Draft202012Validator(load_yaml(PATIENTS_SCHEMA)["properties"]["patient"])
    for pid in ["P01", "HCT_POOL", "a.b-c", "9", "../x", "a..b", "_x", "-x", ".x", "a b", "a/b", "", "é"]:
        assert is_patient_id(pid) == rule.is_valid(pid), pid
