"""``ct2mr predict`` on a phantom CT: output on the input's own grid, geometry checked with an identity network."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ct2mr import cli
from ct2mr.cohort.config import validate_config
from ct2mr.errors import InputError
from ct2mr.inference.predict import PredictSettings, load_settings, model_settings, predict_image
from ct2mr.io.imageio import read_image
from ct2mr.models import model_folder
from ct2mr.models.model_folder import LoadedModel, load_ensemble, preprocessing_from_config
from ct2mr.phantom.patient import PhantomParams, make_patient
from ct2mr.preprocess.ingest import ingest
from ct2mr.preprocess.resample import resample_isotropic
from ct2mr.preprocess.window import window_ct

PARAMS = PhantomParams(ct_spacing_mm=(1.6, 1.6, 3.0), fov_mm=(200.0, 230.0, 100.0))
#: the preprocessing record of the default config (what `ct2mr train` records for it)
DEFAULT_PREPROCESSING = preprocessing_from_config(validate_config({}))


def make_untrained_model(model_dir: Path, variant: str, preprocessing: dict | None = None, **kw) -> Path:
    """A tiny untrained model folder that records ``preprocessing`` (default: the default config's)."""
    return model_folder.make_untrained_model(model_dir, variant, preprocessing=preprocessing or DEFAULT_PREPROCESSING,
                                             **kw)


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A phantom head CT (HU) stored in RAS orientation with a shifted origin: not the pipeline's LPS."""
    ct = make_patient("P01", 1, PARAMS).ct
    ras = sitk.DICOMOrient(ct, "RAS")
    ras.SetOrigin(tuple(o + d for o, d in zip(ras.GetOrigin(), (12.5, -7.0, 30.0), strict=True)))
    path = tmp_path_factory.mktemp("ct") / "new_patient_ct.nii.gz"
    sitk.WriteImage(ras, str(path))
    return path


def _same_grid(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_identity_network_returns_the_windowed_ct_on_the_input_grid(phantom_ct: Path) -> None:
    """With Syn_MR = identity the 'MR' is the windowed CT: any flip or shift in the chain would show."""
    stub = LoadedModel(syn_mr=torch.nn.Identity(), syn_ct=None, info={"variant": "identity"},
                       device=torch.device("cpu"), model_dir=Path("."), image_size=256)
    out = predict_image(stub, phantom_ct, dataclasses.replace(PredictSettings.default(), batch_size=8))
    original = read_image(phantom_ct)
    _same_grid(out, original)
    assert out.GetPixelID() == sitk.sitkUInt8
    got = sitk.GetArrayFromImage(out).astype(float)
    # the same chain without slicing: LPS -> 1 mm (linear) -> window -> back onto the input grid (linear)
    ct1 = resample_isotropic(ingest(phantom_ct, "ct"), (1.0, 1.0, 1.0), "linear")
    back = sitk.Resample(sitk.Cast(window_ct(ct1), sitk.sitkFloat32), original, sitk.Transform(), sitk.sitkLinear, 0.0)
    want = np.rint(sitk.GetArrayFromImage(back))
    inside = got > 0
    assert inside.mean() > 0.2  # the brain slices are filled
    diff = np.abs(got - want)[inside]
    # equal up to rounding, except next to the first/last kept slice (interpolated with the 0 background)
    assert np.mean(diff <= 1) > 0.999
    # the comparison is sensitive: a flip or a one-voxel shift disagrees badly
    flipped = np.abs(got[:, :, ::-1] - want)[inside[:, :, ::-1]]
    shifted = np.abs(np.roll(got, 1, axis=1) - want)[np.roll(inside, 1, axis=1)]
    assert np.mean(flipped <= 1) < 0.5 and np.mean(shifted <= 1) < 0.5


def test_cli_with_a_tiny_model(tmp_path: Path, phantom_ct: Path) -> None:
    model = make_untrained_model(tmp_path / "mrgan", "mrgan", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "out" / "synth_mr.nii.gz"
    assert cli.main(["predict", "--model", str(model), "--ct", str(phantom_ct), "--out", str(out),
                     "--device", "cpu"]) == 0
    img = read_image(out)
    _same_grid(img, read_image(phantom_ct))
    arr = sitk.GetArrayFromImage(img)
    assert arr.dtype == np.uint8 and arr.any()


def test_dicom_folder_input(tmp_path: Path, phantom_ct: Path) -> None:
    """A DICOM series folder: the output has the grid SimpleITK reads from the series."""
    from ct2mr.io.imageio import write_dicom_series

    folder = tmp_path / "dicom"
    write_dicom_series(read_image(phantom_ct), folder, "CT")
    model = make_untrained_model(tmp_path / "paired", "paired", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "synth_mr.mha"
    assert cli.main(["predict", "--model", str(model), "--ct", str(folder), "--out", str(out), "--device", "cpu"]) == 0
    _same_grid(read_image(out), read_image(folder))


def test_bad_inputs(tmp_path: Path, phantom_ct: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_untrained_model(tmp_path / "paired", "paired", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "o.nii.gz"

    def err(*args: str) -> str:
        assert cli.main(["predict", *args, "--out", str(out), "--device", "cpu"]) == 2
        return capsys.readouterr().err

    # a 2D image
    flat = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((20, 20), -1000, np.int16)), str(flat))
    assert "dimension" in err("--model", str(model), "--ct", str(flat))
    # a 4D image with two volumes
    four = tmp_path / "four.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.Cast(read_image(phantom_ct), sitk.sitkInt16)] * 2), str(four))
    assert "dimension" in err("--model", str(model), "--ct", str(four))
    # an 8-bit image, not HU
    u8 = tmp_path / "u8.nii.gz"
    sitk.WriteImage(window_ct(read_image(phantom_ct)), str(u8))
    assert "Hounsfield" in err("--model", str(model), "--ct", str(u8))
    # model folder without weights
    (model / "syn_mr.pt").unlink()
    assert "missing its weights syn_mr.pt" in err("--model", str(model), "--ct", str(phantom_ct))
    assert not out.exists()


def test_variant_folder_with_seed_folders_is_refused(tmp_path: Path, phantom_ct: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--model results/models/mrgan (one folder per seed inside): a one-line error listing the seeds."""
    variant = tmp_path / "models" / "mrgan"
    for seed in (2, 0, 10):
        make_untrained_model(variant / f"seed{seed}", "mrgan", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "o.nii.gz"
    assert cli.main(["predict", "--model", str(variant), "--ct", str(phantom_ct), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "one model per training seed (seed0, seed2, seed10)" in err and f"{variant}/seed0" in err
    assert not out.exists()


def test_flip_tta_in_predict(phantom_ct: Path) -> None:
    """--tta: (f(x) + flip(f(flip(x)))) / 2. Both a mirror-equivariant network (the identity) and
    a mirroring one (flip(f(flip(x))) = f(x)) are unchanged by it; a ramp added along the
    columns is averaged with its mirror (a constant), which only TTA gives."""
    settings = dataclasses.replace(PredictSettings.default(), batch_size=8)

    def run(net: torch.nn.Module, tta: bool) -> np.ndarray:
        stub = LoadedModel(syn_mr=net, syn_ct=None, info={"variant": "stub"}, device=torch.device("cpu"),
                           model_dir=Path("."), image_size=256)
        return sitk.GetArrayFromImage(predict_image(stub, phantom_ct, dataclasses.replace(settings, tta=tta)))

    plain = run(torch.nn.Identity(), False)
    assert np.array_equal(run(torch.nn.Identity(), True), plain)

    class Mirror(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.flip(x, dims=(-1,))

    mirrored = run(Mirror(), False)
    assert not np.array_equal(mirrored, plain)
    assert np.mean(np.abs(run(Mirror(), True).astype(int) - mirrored) <= 1) > 0.999

    class Ramp(torch.nn.Module):  # + 0.2 on the unit scale at the left edge, - 0.2 at the right
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.linspace(0.2, -0.2, x.shape[-1])

    ramp, ramp_tta = run(Ramp(), False).astype(int), run(Ramp(), True).astype(int)
    inside = (plain > 60) & (plain < 190)  # where +-25 grey levels are not clipped to 0..255
    assert np.mean(np.abs(ramp_tta - plain)[inside] <= 1) > 0.95  # the ramp averaged away
    assert np.mean(np.abs(ramp - plain)[inside] > 3) > 0.5  # without TTA it is there


def test_settings_from_config(tmp_path: Path, repo_root: Path) -> None:
    s = load_settings(repo_root / "config" / "config.yaml")
    assert s == PredictSettings.default()  # the shipped config uses the schema's defaults
    assert (s.spacing_mm, s.window_width_hu, s.window_level_hu, s.skull_threshold_hu, s.slice_size) == (
        (1.0, 1.0, 1.0), 80.0, 40.0, 300.0, 256)
    cfg = tmp_path / "c.yaml"
    cfg.write_text((repo_root / "config" / "config.yaml").read_text().replace("ct_width_hu: 80.0", "ct_width_hu: 100.0"))
    assert load_settings(cfg).window_width_hu == 100.0


@pytest.mark.realdata
def test_real_head_ct(tmp_path: Path, shared_data: Path) -> None:
    """A real head CT (InVesalius sample, anisotropic 0.957 x 0.957 x 1.5 mm) keeps its own grid."""
    src = shared_data / "volumes" / "ct_head_invesalius.nii.gz"
    model = make_untrained_model(tmp_path / "m", "paired", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "synth_mr.nii.gz"
    assert cli.main(["predict", "--model", str(model), "--ct", str(src), "--out", str(out), "--device", "cpu"]) == 0
    img = read_image(out)
    _same_grid(img, read_image(src))
    assert sitk.GetArrayViewFromImage(img).any()


def test_dicom_export_series_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--series` picks the series of a scanner-like export (not the rule's series 3); the output is on
    that series' grid. An unknown value is a one-line error."""
    from ct2mr.phantom.export import MATRIX, write_export

    export = tmp_path / "export"
    write_export(export, "P02", 3)
    model = make_untrained_model(tmp_path / "paired", "paired", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "synth.nii.gz"
    assert cli.main(["predict", "--model", str(model), "--ct", str(export), "--out", str(out), "--device", "cpu",
                     "--series", "Head 5mm"]) == 0
    img = read_image(out)
    assert img.GetSize() == (MATRIX, MATRIX, 24)  # series 2: 24 axial slices of 5 mm
    _same_grid(img, read_image(export, "2"))
    assert cli.main(["predict", "--model", str(model), "--ct", str(export), "--out", str(tmp_path / "x.nii.gz"),
                     "--device", "cpu", "--series", "77"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'77' matches no series; series found: 1 'Scout'" in err[0]


# --------------------------------------------------------------------------- the model's own preprocessing


def _coarse_preprocessing() -> dict:
    """A model trained at 2 mm on 32 px slices with a W100/L30 window (not the default config's 1 mm / 256 px)."""
    prep = copy.deepcopy(DEFAULT_PREPROCESSING)
    prep["resample"]["spacing_mm"] = [2.0, 2.0, 2.0]
    prep["slices"].update(size=32, min_brain_voxels=100)
    prep["window"].update(ct_width_hu=100.0, ct_level_hu=30.0)
    return prep


@pytest.fixture(scope="module")
def real_ct(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The real head CT (InVesalius, 256 x 256 x 108 at 0.957 x 0.957 x 1.5 mm, HU), every second voxel in plane:
    128 x 128 x 108 at 1.91 x 1.91 x 1.5 mm, to keep a run to a second or two."""
    img = read_image(shared_data / "volumes" / "ct_head_invesalius.nii.gz")
    path = tmp_path_factory.mktemp("real") / "ct_head_small.nii.gz"
    sitk.WriteImage(sitk.Shrink(img, [2, 2, 1]), str(path))
    return path


def _slice_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ct2mr.preprocess.slices"]


@pytest.mark.realdata
def test_predict_applies_the_preprocessing_the_model_was_trained_with(
    tmp_path: Path, real_ct: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model trained at 2 mm / 32 px is run at 2 mm / 32 px, not at the default 1 mm / 256 px (issue 22, item 5)."""
    monkeypatch.chdir(tmp_path)  # no config/config.yaml here: the model alone decides
    model = make_untrained_model(tmp_path / "m", "paired", _coarse_preprocessing(), image_size=32, ngf=4, n_blocks=1)
    loaded = load_ensemble([model], device="cpu")
    s = model_settings(loaded, None)
    assert (s.spacing_mm, s.slice_size, s.window_width_hu, s.window_level_hu, s.min_brain_voxels) == (
        (2.0, 2.0, 2.0), 32, 100.0, 30.0, 100)
    out = tmp_path / "synth_mr.nii.gz"
    caplog.set_level("INFO")
    assert cli.main(["predict", "--model", str(model), "--ct", str(real_ct), "--out", str(out), "--device", "cpu"]) == 0
    (line,) = _slice_logs(caplog)
    # the 2 mm grid of a 162 mm tall head has 81 axial slices (the default 1 mm grid: 162), cut to 32 px
    z_last = int(line.split("z ")[1].split("..")[1].split(")")[0])
    assert z_last < 81 and line.endswith("-> 32"), line
    img = read_image(out)
    _same_grid(img, read_image(real_ct))
    assert sitk.GetArrayViewFromImage(img).any()


def test_a_contradicting_config_is_refused_in_one_line(
    tmp_path: Path, phantom_ct: Path, repo_root: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """--config setting a preprocessing key otherwise: one line naming the key, the config's and the model's value,
    before any work; the default config/config.yaml only warns and the model's value is used."""
    model = make_untrained_model(tmp_path / "m", "paired", _coarse_preprocessing(), image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "o.nii.gz"
    cfg = repo_root / "config" / "config.yaml"
    assert cli.main(["predict", "--model", str(model), "--ct", str(phantom_ct), "--out", str(out),
                     "--device", "cpu", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"ct2mr predict: error: {cfg}: resample.spacing_mm: [1.0, 1.0, 1.0] here, but model "
                             f"{model} was trained with [2.0, 2.0, 2.0]"), err
    assert "(its model.json preprocessing; 4 more keys differ)" in err[0] and "leave out --config" in err[0]
    assert not out.exists()
    # the same config as the default config/config.yaml of the working folder: a warning per key, the model's values
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(cfg.read_text())
    monkeypatch.chdir(tmp_path)
    caplog.set_level("WARNING")
    s = model_settings(load_ensemble([model], device="cpu"), None)
    assert s.spacing_mm == (2.0, 2.0, 2.0) and s.slice_size == 32
    records = [r.getMessage() for r in caplog.records if r.name == "ct2mr.inference.predict"]
    assert len(records) == 5, records
    assert "resample.spacing_mm: [1.0, 1.0, 1.0] here, but model" in records[0] and "using the model's" in records[0]


def test_a_model_folder_without_preprocessing(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """A folder from before the record: the config it names (or the default config file) with a warning; no config
    at all is refused, never the built-in defaults. An ensemble mixing both is refused."""
    old = model_folder.make_untrained_model(tmp_path / "old", "paired", image_size=32, ngf=4, n_blocks=1)
    monkeypatch.chdir(tmp_path)
    loaded = load_ensemble([old], device="cpu")
    assert loaded[0].preprocessing is None
    with pytest.raises(InputError, match=r"old/model\.json: preprocessing: missing \(a model trained before ct2mr "
                                         r"recorded its preprocessing\) and no config to take it from: give the config "
                                         r"it was trained with, --config FILE$"):
        model_settings(loaded, None)
    caplog.set_level("WARNING")
    assert model_settings(loaded, repo_root / "config" / "config.yaml") == PredictSettings.default()
    assert "records no preprocessing" in caplog.text
    new = make_untrained_model(tmp_path / "new", "paired", image_size=32, ngf=4, n_blocks=1)
    with pytest.raises(InputError, match=r"old/model\.json: preprocessing: missing, but .*new records it"):
        load_ensemble([new, old], device="cpu")
    other = make_untrained_model(tmp_path / "other", "paired", _coarse_preprocessing(), image_size=32, ngf=4,
                                 n_blocks=1)
    with pytest.raises(InputError, match=r"other/model\.json: preprocessing\.resample\.spacing_mm: \[2\.0, 2\.0, "
                                         r"2\.0\], but .*new was trained with \[1\.0, 1\.0, 1\.0\]"):
        load_ensemble([new, other], device="cpu")


def test_out_under_a_file_is_refused_before_the_work(tmp_path: Path, phantom_ct: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--out below a path whose parent is a file: one line, before the models are even loaded (issue 22, item 10)."""
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")

    def no_work(*a: object, **k: object) -> None:
        raise AssertionError("the models were loaded before the output was checked")

    monkeypatch.setattr(model_folder, "load_ensemble", no_work)
    for out in (blocker / "sMR.nii.gz", blocker / "deeper" / "sMR.nii.gz"):
        assert cli.main(["predict", "--model", str(tmp_path / "m"), "--ct", str(phantom_ct), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"ct2mr predict: error: {out}: cannot be written: {blocker} is a file, not a folder"], err
    (tmp_path / "dir.nii.gz").mkdir()
    assert cli.main(["predict", "--model", str(tmp_path / "m"), "--ct", str(phantom_ct), "--out",
                     str(tmp_path / "dir.nii.gz")]) == 2
    assert "is a folder" in capsys.readouterr().err
