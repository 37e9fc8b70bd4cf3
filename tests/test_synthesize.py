"""Model loading, batched synthesis and the writer's round trip onto the reference grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ct2mr import cli
from ct2mr.errors import InputError
from ct2mr.inference.synthesize import synthesize_patient, write_synthesis
from ct2mr.models.apply import synthesize_slices, to_uint8, to_unit
from ct2mr.models.model_folder import load_generators, make_untrained_model
from ct2mr.preprocess.slices import load_slices, save_slices, volume_from_slices


def fake_slices(n: int = 5, with_mr: bool = True, seed: int = 0, crop_origin=(-20, -10), ref_shape=(12, 230, 240)):
    """A slice dict obeying the DEVELOPING.md contract (256 window partly outside a 230x240 grid)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    head = ((yy - 128) ** 2 / 100**2 + (xx - 128) ** 2 / 80**2) < 1
    brain = ((yy - 128) ** 2 / 80**2 + (xx - 128) ** 2 / 60**2) < 1
    ct = np.where(head, rng.integers(60, 200, (n, 256, 256)), 0).astype(np.uint8)
    d = {
        "ct": ct,
        "head_mask": np.broadcast_to(head, (n, 256, 256)).copy(),
        "brain_mask": np.broadcast_to(brain, (n, 256, 256)).copy(),
        "z_index": np.arange(3, 3 + n, dtype=np.int64),
        "crop_origin": np.array(crop_origin, np.int64),
        "crop_size": np.array(256, np.int64),
        "ref_shape": np.array(ref_shape, np.int64),
        "ref_spacing": np.array([1.0, 1.0, 1.0]),
        "ref_origin": np.array([-100.0, -120.0, -30.0]),
        "ref_direction": np.eye(3).ravel(),
        "patient": "P05",
        "role": "paired_test",
        "source": "volume",
    }
    if with_mr:
        d["mr"] = np.where(head, 255 - ct, 0).astype(np.uint8)
    return d


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "mrgan": make_untrained_model(root / "mrgan", "mrgan", image_size=32, ngf=4, n_blocks=1, seed=1),
        "paired": make_untrained_model(root / "paired", "paired", image_size=256, ngf=4, n_blocks=1, seed=2),
    }


def test_unit_scale_round_trip() -> None:
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    t = to_unit(x)
    assert t.shape == (1, 1, 16, 16)
    assert float(t.min()) == -1.0 and float(t.max()) == 1.0
    np.testing.assert_array_equal(to_uint8(t), x)


def test_load_generators(tiny_models: dict[str, Path]) -> None:
    m = load_generators(tiny_models["mrgan"], device="cpu")
    assert m.syn_ct is not None and m.image_size == 32 and m.variant == "mrgan"
    assert not m.syn_mr.training
    p = load_generators(tiny_models["paired"], device="cpu")
    assert p.syn_ct is None and p.image_size == 256


def test_model_folder_errors(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="model folder not found"):
        load_generators(tmp_path / "nope")
    d = make_untrained_model(tmp_path / "m", "paired", image_size=32, ngf=4, n_blocks=1)
    (d / "syn_mr.pt").unlink()
    with pytest.raises(InputError, match=r"missing its weights syn_mr\.pt"):
        load_generators(d)
    # weights of another architecture: ngf 4 weights, model.json says ngf 8
    d2 = make_untrained_model(tmp_path / "m2", "paired", image_size=32, ngf=4, n_blocks=1)
    info = json.loads((d2 / "model.json").read_text())
    info["architecture"]["ngf"] = 8
    (d2 / "model.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"model\.json: architecture\.ngf: 8 does not fit the weights: syn_mr\.pt "
                                         r"holds a generator with ngf 4$"):
        load_generators(d2)
    info["architecture"]["ngf"] = 4
    info["architecture"]["n_blocks"] = 2
    (d2 / "model.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="model.json: architecture.n_blocks: 2 does not fit the weights"):
        load_generators(d2)
    (d2 / "model.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_generators(d2)
    (d2 / "model.json").unlink()
    with pytest.raises(InputError, match="missing its model.json"):
        load_generators(d2)


def test_batching_does_not_change_the_result(tiny_models: dict[str, Path]) -> None:
    m = load_generators(tiny_models["mrgan"], device="cpu")
    ct = fake_slices(5)["ct"]
    a = synthesize_slices(m, ct, batch_size=1)
    b = synthesize_slices(m, ct, batch_size=16)
    assert a["mr_slices"].dtype == np.uint8 and a["mr_slices"].shape == (5, 256, 256)
    assert a["recon_ct_slices"].shape == (5, 256, 256)
    # instance norm: every slice is independent of its batch (allow 1 grey level of float noise)
    assert np.abs(a["mr_slices"].astype(int) - b["mr_slices"].astype(int)).max() <= 1
    # the result is the generator applied by hand (256 -> 32 area as in training, -> 256 bilinear)
    x = torch.nn.functional.interpolate(torch.from_numpy(ct[:1]).float()[:, None], size=(32, 32), mode="area")
    x = x.round() / 127.5 - 1
    with torch.no_grad():
        y = m.syn_mr(x)
        y = torch.nn.functional.interpolate(y, size=(256, 256), mode="bilinear", align_corners=False)
    assert np.abs(to_uint8(y.clamp(-1, 1)).astype(int) - a["mr_slices"][:1].astype(int)).max() <= 1


def test_patient_without_ct_is_an_error(tiny_models: dict[str, Path]) -> None:
    m = load_generators(tiny_models["paired"], device="cpu")
    s = fake_slices(5)
    del s["ct"]
    with pytest.raises(InputError, match="P05 has no CT"):
        synthesize_patient(m, s, source="P05.npz")


def test_cli_round_trip_onto_reference_grid(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    s = fake_slices(5, with_mr=False)  # a test patient without an MR can be synthesized
    sf = tmp_path / "P05.npz"
    save_slices(sf, s)
    out = tmp_path / "synth" / "mrgan"
    rc = cli.main([
        "synthesize", "--model", str(tiny_models["mrgan"]), "--slices", str(sf),
        "--out-mr", str(out / "P05_mr.nii.gz"), "--out-slices", str(out / "P05_slices.npz"),
        "--out-recon-ct", str(out / "P05_recon_ct.nii.gz"), "--batch-size", "2", "--device", "cpu",
    ])
    assert rc == 0
    syn = np.load(out / "P05_slices.npz")
    assert syn["mr_syn"].shape == (5, 256, 256) and syn["mr_syn"].dtype == np.uint8
    assert str(syn["variant"]) == "mrgan" and str(syn["patient"]) == "P05"
    np.testing.assert_array_equal(syn["z_index"], s["z_index"])
    img = sitk.ReadImage(str(out / "P05_mr.nii.gz"))
    assert img.GetPixelID() == sitk.sitkUInt8
    assert img.GetSize() == (240, 230, 12)
    np.testing.assert_allclose(img.GetOrigin(), s["ref_origin"])
    np.testing.assert_allclose(img.GetSpacing(), s["ref_spacing"])
    np.testing.assert_allclose(img.GetDirection(), s["ref_direction"])
    vol = sitk.GetArrayFromImage(img)
    # exact round trip: volume -> slices again gives the synthesized slices on the kept voxels
    meta = load_slices(sf)
    np.testing.assert_array_equal(vol, volume_from_slices(syn["mr_syn"], meta, fill=0))
    # window at (-20, -10): volume rows 0..229 <- slice rows 20..249, cols 0..239 <- 10..249
    np.testing.assert_array_equal(vol[3:8], syn["mr_syn"][:, 20:250, 10:250])
    assert not vol[:3].any() and not vol[8:].any()
    rec = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "P05_recon_ct.nii.gz")))
    np.testing.assert_array_equal(rec[3:8], syn["ct_recon"][:, 20:250, 10:250])


def test_recon_ct_needs_syn_ct(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    s = fake_slices(5)
    m = load_generators(tiny_models["paired"], device="cpu")
    synth = synthesize_patient(m, s)
    assert synth["recon_ct_slices"] is None
    with pytest.raises(InputError, match="no Syn_CT"):
        write_synthesis(s, synth, "paired", None, None, tmp_path / "r.nii.gz")
    assert not (tmp_path / "r.nii.gz").exists()


def test_cli_reports_missing_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_untrained_model(tmp_path / "m", "paired", image_size=32, ngf=4, n_blocks=1)
    (d / "syn_mr.pt").unlink()
    sf = tmp_path / "P.npz"
    save_slices(sf, fake_slices(5))
    rc = cli.main(["synthesize", "--model", str(d), "--slices", str(sf), "--out-mr", str(tmp_path / "o.nii.gz"),
                   "--out-slices", str(tmp_path / "o.npz")])
    assert rc == 2
    assert "missing its weights syn_mr.pt" in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def test_model_folder_written_by_train(tmp_path: Path) -> None:
    """The real trainer's model folder (tiny preset, 2 iterations) loads and synthesizes; losses plot."""
    from ct2mr.evaluation.figures import figure_losses
    from ct2mr.training.settings import PRESETS, settings_from_dict
    from ct2mr.training.train import train

    files = []
    for k, role in enumerate(("paired_train", "ct_only", "mr_only")):
        s = fake_slices(3, with_mr=role != "ct_only", seed=k)
        s["role"], s["patient"] = role, f"T{k}"
        if role == "mr_only":
            del s["ct"]
        files.append(tmp_path / f"T{k}.npz")
        save_slices(files[-1], s)
    settings = settings_from_dict({**PRESETS["tiny"], "n_const": 1, "n_decay": 1, "log_every": 1})
    out = tmp_path / "models" / "mrgan"
    assert train(settings, files, out, "mrgan", device="cpu")["finished"]
    m = load_generators(out, device="cpu")
    assert m.variant == "mrgan" and m.syn_ct is not None and m.image_size == settings.image_size
    synth = synthesize_patient(m, fake_slices(4))
    assert synth["mr_slices"].shape == (4, 256, 256) and synth["recon_ct_slices"].shape == (4, 256, 256)
    figure_losses([out / "losses.tsv"], tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 1000


def test_auto_device_takes_the_gpu_with_most_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from ct2mr.models.model_folder import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    free = {0: 2e9, 1: 70e9, 2: 40e9}  # GPU 0 busy with another training job
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (free[i], 80e9))
    assert resolve_device("auto") == torch.device("cuda:1")
    assert resolve_device("cuda:2") == torch.device("cuda:2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda:0")


def test_flip_tta_averages_f_and_its_mirror(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """synthesis with TTA = round of (f(x) + flip(f(flip(x)))) / 2 on the unit scale; the CLI flag."""
    from ct2mr.models.apply import translate, translate_tta

    model = load_generators(tiny_models["mrgan"], device="cpu")
    x = to_unit(fake_slices(n=3)["ct"][:, ::8, ::8].copy())  # 32 x 32
    y, y_flip = translate(model.syn_mr, x, model.device), translate(model.syn_mr, torch.flip(x, (-1,)), model.device)
    expected = 0.5 * (y + torch.flip(y_flip, (-1,)))
    assert torch.allclose(translate_tta(model.syn_mr, x, model.device), expected)
    assert not torch.allclose(expected, y)  # an untrained net is not mirror-symmetric: TTA changes it
    # a mirror-symmetric input through a mirror-equivariant net: TTA changes nothing
    ident = translate_tta(torch.nn.Identity(), x, model.device)
    assert torch.allclose(ident, x.clamp(-1, 1))
    s = fake_slices(n=3)
    plain = synthesize_slices(model, s["ct"])["mr_slices"]
    tta = synthesize_slices(model, s["ct"], tta=True)["mr_slices"]
    assert plain.shape == tta.shape and not np.array_equal(plain, tta)
    sf = tmp_path / "P05.npz"
    save_slices(sf, s)
    out = tmp_path / "o"
    assert cli.main(["synthesize", "--model", str(tiny_models["mrgan"]), "--slices", str(sf),
                     "--out-mr", str(out / "mr.nii.gz"), "--out-slices", str(out / "s.npz"), "--device", "cpu",
                     "--tta"]) == 0
    assert np.array_equal(np.load(out / "s.npz")["mr_syn"], tta)


def test_ensemble_is_the_mean_of_its_models_before_rounding(tmp_path: Path) -> None:
    """Several model folders of one variant: the mean Syn_MR (float, then one rounding); the same
    folder twice or two variants are refused; one model gives exactly the single-model path."""
    import torch

    from ct2mr.errors import InputError
    from ct2mr.models.apply import _resize, to_uint8, to_unit, translate
    from ct2mr.models.model_folder import load_ensemble, make_untrained_model

    dirs = [make_untrained_model(tmp_path / f"m{s}", "paired", image_size=32, ngf=4, n_blocks=1, seed=s)
            for s in range(3)]
    models = load_ensemble(dirs, device="cpu")
    ct = np.random.default_rng(0).integers(0, 255, (5, 64, 64), dtype=np.uint8)
    out = synthesize_slices(models, ct, batch_size=2)["mr_slices"]
    x = to_unit(torch.nn.functional.interpolate(torch.from_numpy(ct).float()[:, None], size=(32, 32),
                                                mode="area")[:, 0].round().to(torch.uint8))
    mean = sum(_resize(translate(m.syn_mr, x, m.device), 64) for m in models) / 3
    assert np.array_equal(out, to_uint8(mean))
    singles = [synthesize_slices(m, ct)["mr_slices"].astype(float) for m in models]
    assert np.abs(out - np.mean(singles, axis=0)).max() <= 1.0  # rounding once vs three times
    assert np.array_equal(synthesize_slices(models[:1], ct)["mr_slices"], synthesize_slices(models[0], ct)["mr_slices"])
    with pytest.raises(InputError, match="given twice"):
        load_ensemble([dirs[0], dirs[0]])
    other = make_untrained_model(tmp_path / "u", "unpaired", image_size=32, ngf=4, n_blocks=1)
    with pytest.raises(InputError, match="one variant"):
        load_ensemble([dirs[0], other])


def test_a_folder_of_folds_names_them_and_the_ensemble(tmp_path: Path) -> None:
    from ct2mr.errors import InputError
    from ct2mr.models.model_folder import load_generators, make_untrained_model

    for f in range(2):
        make_untrained_model(tmp_path / "mrgan" / f"fold{f}" / "seed0", "mrgan", image_size=32, ngf=4, n_blocks=1)
    with pytest.raises(InputError, match=r"cross-validation folds \(fold0, fold1\).*fold\*/seed0"):
        load_generators(tmp_path / "mrgan")


def test_slices_that_are_not_a_slice_file_never_suggest_an_unsafe_load(
    tmp_path: Path, tiny_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`--slices` on a text file, a .npy and an .npz of Python objects: one line naming the file and saying it is
    not a ct2mr slices .npz; numpy's advice to load with allow_pickle never reaches the user (issue 22, item 10)."""
    text = tmp_path / "notes.npz"
    text.write_text("patient P05, slices to come\n")
    npy = tmp_path / "array.npz"
    with npy.open("wb") as f:
        np.save(f, np.zeros(3))
    objects = tmp_path / "objects.npz"
    np.savez(objects, ct=np.array([{"x": 1}], dtype=object))
    for path, why in ((text, "not a zip archive of arrays"), (npy, "not a zip archive of arrays"),
                      (objects, "it holds Python objects, which ct2mr never loads")):
        rc = cli.main(["synthesize", "--model", str(tiny_models["paired"]), "--slices", str(path), "--device", "cpu",
                       "--out-mr", str(tmp_path / "o.nii.gz"), "--out-slices", str(tmp_path / "o.npz")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"ct2mr synthesize: error: {path}: cannot read npz: {why}; not a ct2mr slices "
                                   f".npz (the file `ct2mr slices` writes)"], err
        assert "pickle" not in err[0]
