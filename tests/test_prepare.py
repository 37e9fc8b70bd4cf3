"""The grouped stage commands: `ct2mr prepare` and `ct2mr normalise-slices`.

Property: each gives exactly the files of its stages run one command at a time
(`ingest` -> `resample` -> `skull-mask`; `window` -> `slices`), geometry and voxels,
for a DICOM CT (whose double-precision geometry a NIfTI file in between would round)
and a NIfTI MR; each stage writes its own log; bad input fails with the stage's
one-line error, in that stage's log, and leaves no output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.cli import main
from ct2mr.io.imageio import write_dicom_series, write_image
from ct2mr.phantom.patient import PhantomParams, make_patient

PARAMS = PhantomParams(fov_mm=(180.0, 200.0, 100.0))


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("raw")
    p = make_patient("Q01", 3, PARAMS)
    # an origin that float32 cannot hold: the DICOM series keeps it, a NIfTI would round it
    ct = p.ct
    ct.SetOrigin(tuple(o + 0.123456789 for o in ct.GetOrigin()))
    write_dicom_series(ct, d / "ct_dicom", modality="CT")
    write_image(p.mr, d / "mr.nii.gz")
    return {"ct": d / "ct_dicom", "mr": d / "mr.nii.gz"}


def _same(a: Path, b: Path) -> None:
    x, y = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert x.GetOrigin() == y.GetOrigin() and x.GetSpacing() == y.GetSpacing(), (a, b)
    assert x.GetDirection() == y.GetDirection() and x.GetPixelID() == y.GetPixelID(), (a, b)
    assert np.array_equal(sitk.GetArrayViewFromImage(x), sitk.GetArrayViewFromImage(y)), (a, b)


MASKS = {"ct": ["head", "brain", "stripped", "skull"], "mr": ["head", "brain", "stripped"]}


def _stagewise(mod: str, src: Path, d: Path) -> None:
    extra = ["--method", "morphology"] if mod == "mr" else ["--skull-mask", str(d / "skull.nii.gz")]
    assert main(["ingest", "--modality", mod, "--input", str(src), "--output", str(d / "in.nii.gz")]) == 0
    assert main(["resample", "--input", str(d / "in.nii.gz"), "--output", str(d / "img.nii.gz"),
                 "--default-value", "-1024" if mod == "ct" else "0"]) == 0
    assert main(["skull-mask", "--modality", mod, "--input", str(d / "img.nii.gz"),
                 "--head-mask", str(d / "head.nii.gz"), "--brain-mask", str(d / "brain.nii.gz"),
                 "--stripped", str(d / "stripped.nii.gz"), "--qa-png", str(d / "qa.png"), *extra]) == 0


def _prepare(mod: str, src: Path, d: Path, *more: str) -> int:
    extra = ["--method", "morphology"] if mod == "mr" else ["--skull-mask", str(d / "skull.nii.gz")]
    return main(["prepare", "--modality", mod, "--input", str(src), "--output", str(d / "img.nii.gz"),
                 "--head-mask", str(d / "head.nii.gz"), "--brain-mask", str(d / "brain.nii.gz"),
                 "--stripped", str(d / "stripped.nii.gz"), "--qa-png", str(d / "qa.png"), *extra,
                 "--log-ingest", str(d / "logs" / "ingest.log"), "--log-resample", str(d / "logs" / "resample.log"),
                 "--log-skull-mask", str(d / "logs" / "skull_mask.log"), *more])


# Slow for mr (~8 s): the MR brain extraction (deepbet CNN on the CPU) runs twice, once per
# stage command and once in the grouped job, since the test compares the two bit for bit.
@pytest.mark.parametrize("mod", ["ct", "mr"])
def test_prepare_equals_the_stage_commands(raw: dict[str, Path], tmp_path: Path, mod: str) -> None:
    a, b = tmp_path / "stages", tmp_path / "job"
    a.mkdir(), b.mkdir()
    _stagewise(mod, raw[mod], a)
    assert _prepare(mod, raw[mod], b) == 0
    for name in ["img", *MASKS[mod]]:
        _same(a / f"{name}.nii.gz", b / f"{name}.nii.gz")
    assert (a / "qa.png").read_bytes() == (b / "qa.png").read_bytes()
    logs = {p.stem: p.read_text() for p in (b / "logs").iterdir()}
    assert set(logs) == {"ingest", "resample", "skull_mask"}
    assert "ingested" in logs["ingest"] and "resampled" not in logs["ingest"]
    assert "resampled" in logs["resample"] and "masks of" in logs["skull_mask"]


def test_prepare_bad_input_fails_in_its_stage_log_and_writes_nothing(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    flat = tmp_path / "flat_ct.nii.gz"
    sitk.WriteImage(sitk.Image([40, 40, 40], sitk.sitkUInt8) + 100, str(flat))  # 0..255: not HU
    out = tmp_path / "job"
    out.mkdir()
    assert _prepare("ct", flat, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flat_ct.nii.gz" in err[0] and "Hounsfield" in err[0], err
    assert "stage ingest failed" in (out / "logs" / "ingest.log").read_text()
    assert not [p for p in out.iterdir() if p.name != "logs"], "outputs left by a failed job"


def test_normalise_slices_equals_window_then_slices(raw: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path
    assert _prepare("ct", raw["ct"], d) == 0
    mr = d / "mr_on_ct.nii.gz"  # an MR on the CT grid stands in for the registered one
    write_image(sitk.Cast(sitk.RescaleIntensity(sitk.ReadImage(str(d / "img.nii.gz")), 0, 800), sitk.sitkFloat32), mr)
    common = ["--head-mask", str(d / "head.nii.gz"), "--brain-mask", str(d / "brain.nii.gz"), "--size", "256"]
    assert main(["window", "--modality", "ct", "--input", str(d / "img.nii.gz"), "--output", str(d / "w1.nii.gz")]) == 0
    assert main(["window", "--modality", "mr", "--input", str(mr), "--mask", str(d / "head.nii.gz"),
                 "--output", str(d / "n1.nii.gz")]) == 0
    assert main(["slices", "--patient", "Q01", "--role", "paired_train", "--ct", str(d / "w1.nii.gz"),
                 "--mr", str(d / "n1.nii.gz"), "--output", str(d / "s1.npz"), *common]) == 0
    assert main(["normalise-slices", "--patient", "Q01", "--role", "paired_train",
                 "--ct", str(d / "img.nii.gz"), "--ct-window", str(d / "w2.nii.gz"),
                 "--mr", str(mr), "--mr-mask", str(d / "head.nii.gz"), "--mr-norm", str(d / "n2.nii.gz"),
                 "--output", str(d / "s2.npz"), "--log-window", str(d / "window.log"), *common]) == 0
    _same(d / "w1.nii.gz", d / "w2.nii.gz")
    _same(d / "n1.nii.gz", d / "n2.nii.gz")
    s1, s2 = np.load(d / "s1.npz"), np.load(d / "s2.npz")
    assert s1.files == s2.files and all(np.array_equal(s1[k], s2[k]) for k in s1.files)
    assert "W80/L40" in (d / "window.log").read_text()


def test_normalise_slices_needs_the_output_of_each_image(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["normalise-slices", "--patient", "Q", "--role", "ct_only", "--ct", str(tmp_path / "ct.nii.gz"),
                 "--head-mask", "h", "--brain-mask", "b", "--output", str(tmp_path / "s.npz")]) == 2
    assert "--ct-window" in capsys.readouterr().err
