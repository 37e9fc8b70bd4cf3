"""Training entry point: outputs, exact resume, learning on a fixed pair, bad input, settings, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ct2mr.cli import main as cli_main
from ct2mr.errors import InputError
from ct2mr.preprocess.slices import save_slices
from ct2mr.training.settings import (
    PRESETS,
    TrainSettings,
    load_settings_arg,
    preset_settings,
    resolve_training_settings,
    settings_from_dict,
    settings_hash,
)
from ct2mr.training.train import train


def make_slices(path: Path, role: str, n: int = 3, size: int = 64, seed: int = 0) -> Path:
    """A slice file of the DEVELOPING.md contract: an ellipse 'head' whose MR is a function of the CT."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    cts, mrs = [], []
    for _ in range(n):
        r = np.sqrt((xx / (0.35 + 0.05 * rng.random())) ** 2 + (yy / (0.4 + 0.05 * rng.random())) ** 2)
        skull = (r > 0.8) & (r < 1)
        blob = np.exp(-((xx - 0.1 * rng.standard_normal()) ** 2 + yy**2) / 0.01) * (r < 0.8)
        cts.append((np.where(r < 1, 90, 0) + 160 * skull + 60 * blob).clip(0, 255).astype(np.uint8))
        mrs.append((np.where(r < 0.8, 200, 0) - 80 * blob + 40 * skull).clip(0, 255).astype(np.uint8))
    d = {
        "head_mask": np.ones((n, size, size), bool),
        "brain_mask": np.ones((n, size, size), bool),
        "z_index": np.arange(n, dtype=np.int64),
        "crop_origin": np.zeros(2, np.int64),
        "crop_size": np.int64(size),
        "ref_shape": np.array([n, size, size], np.int64),
        "ref_spacing": np.ones(3),
        "ref_origin": np.zeros(3),
        "ref_direction": np.eye(3).ravel(),
        "patient": path.stem,
        "role": role,
        "source": "volume",
    }
    if role != "mr_only":
        d["ct"] = np.stack(cts)
    if role != "ct_only":
        d["mr"] = np.stack(mrs)
    save_slices(path, d)
    return path


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("slices")
    return {
        "paired": make_slices(d / "p1.npz", "paired_train", seed=1),
        "ct": make_slices(d / "c1.npz", "ct_only", seed=2),
        "mr": make_slices(d / "m1.npz", "mr_only", seed=3),
        "test": make_slices(d / "t1.npz", "paired_test", seed=4),
    }


def tiny(**kw) -> TrainSettings:
    return settings_from_dict({**PRESETS["tiny"], **kw})


def states_equal(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("variant", ["paired", "unpaired", "mrgan", "regression"])
def test_outputs_of_a_run(variant, slice_files, tmp_path) -> None:
    files = list(slice_files.values())
    out = tmp_path / variant
    res = train(tiny(), files, out, variant)
    assert res["finished"] and res["iteration"] == 8
    state = torch.load(out / "syn_mr.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert (out / "syn_ct.pt").exists() == (variant in ("unpaired", "mrgan"))
    info = json.loads((out / "model.json").read_text())
    assert info["variant"] == variant
    assert info["architecture"] == {"image_size": 32, "ngf": 8, "ndf": 8, "n_blocks": 1, "norm": "instance",
                                    "in_channels": 1, "out_channels": 1}
    assert info["settings_hash"] == settings_hash(tiny())
    assert "t1" not in json.dumps(info["patients"])  # paired_test is never trained on
    rows = list(csv.DictReader((out / "losses.tsv").open(), delimiter="\t"))
    assert [int(r["iteration"]) for r in rows] == [2, 4, 6, 8]
    assert {"G_total", "lr", "seconds"} <= rows[0].keys()
    assert float(rows[-1]["lr"]) == pytest.approx(2e-4 * 1 / 4)  # last of 4 decay iterations
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "it/s" in (out / "train.log").read_text()
    # the generator can be rebuilt from the model folder alone (what synthesis does)
    from ct2mr.models.model_folder import load_generators

    g = load_generators(out, device="cpu").syn_mr
    assert g(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_kill_and_resume_is_bit_identical(slice_files, tmp_path) -> None:
    files = [slice_files["paired"], slice_files["ct"], slice_files["mr"]]
    s = tiny(n_const=3, n_decay=3, checkpoint_every=2, pool_size=2)
    train(s, files, tmp_path / "straight", "mrgan")
    with pytest.raises(RuntimeError, match="simulated"):
        train(s, files, tmp_path / "killed", "mrgan", _fail_after=3)  # checkpoint at 2, iteration 3 lost
    assert not (tmp_path / "killed" / "syn_mr.pt").exists()  # an interrupted run does not look finished
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    res = train(s, files, tmp_path / "killed", "mrgan")
    assert res["finished"]
    for name in ("syn_mr.pt", "syn_ct.pt"):
        assert states_equal(tmp_path / "straight" / name, tmp_path / "killed" / name), name
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["trainer"]
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["trainer"]
    for net in ("dis_mr", "dis_ct"):
        assert all(torch.equal(a["nets"][net][k], b["nets"][net][k]) for k in a["nets"][net])
    # chunked run (max_iterations_this_run) continues to the same weights too
    assert not train(s, files, tmp_path / "chunks", "mrgan", max_iterations_this_run=4)["finished"]
    train(s, files, tmp_path / "chunks", "mrgan")
    assert states_equal(tmp_path / "straight" / "syn_mr.pt", tmp_path / "chunks" / "syn_mr.pt")


def test_paired_training_drives_l1_down_on_one_pair(tmp_path) -> None:
    f = make_slices(tmp_path / "one.npz", "paired_train", n=1, size=32, seed=7)
    s = tiny(n_const=100, n_decay=0, augment=False, log_every=10, checkpoint_every=1000, ngf=8, n_blocks=1)
    train(s, [f], tmp_path / "m", "paired")
    rows = list(csv.DictReader((tmp_path / "m" / "losses.tsv").open(), delimiter="\t"))
    first, last = float(rows[0]["l1_mr_paired"]), float(rows[-1]["l1_mr_paired"])
    assert last < 0.5 * first, (first, last)


def test_variant_without_its_data(slice_files, tmp_path) -> None:
    with pytest.raises(InputError, match=r"variant paired.*paired_train.*c1\.npz, m1\.npz"):
        train(tiny(), [slice_files["ct"], slice_files["mr"]], tmp_path / "a", "paired")
    with pytest.raises(InputError, match=r"variant unpaired.*mr_only"):
        train(tiny(), [slice_files["paired"], slice_files["ct"]], tmp_path / "b", "unpaired")
    with pytest.raises(InputError, match=r"variant mrgan.*ct_only.*mr_only"):
        train(tiny(), [slice_files["paired"]], tmp_path / "c", "mrgan")
    # paired data only, used as unpaired too: fine
    s = tiny(unpaired_includes_paired=True, n_const=1, n_decay=0)
    assert train(s, [slice_files["paired"]], tmp_path / "d", "mrgan")["finished"]


def test_checkpoint_of_other_settings_is_moved_aside_and_training_starts_over(slice_files, tmp_path, caplog) -> None:
    from ct2mr.training.checkpoint import checkpoint_mismatch, data_hash, read_checkpoint
    from ct2mr.training.settings import settings_hash

    files = [slice_files["paired"]]
    out = tmp_path / "m"
    train(tiny(), files, out, "paired", max_iterations_this_run=2)
    ckpt = out / "checkpoint.pt"
    before = ckpt.read_bytes()
    old = torch.load(ckpt, weights_only=True)
    assert old["data_hash"] == data_hash(files)
    # what differs is named (read_checkpoint still refuses it outright)
    assert any("architecture.ngf 8 != 4" in d for d in checkpoint_mismatch(old, "paired", tiny(ngf=4)))
    assert any("gamma_l1" in d for d in checkpoint_mismatch(old, "paired", tiny(gamma_l1=1.0)))
    assert checkpoint_mismatch(old, "mrgan", tiny()) == ["variant 'paired' != 'mrgan'"]
    assert checkpoint_mismatch(old, "paired", tiny(), "0" * 16) == [f"training data {old['data_hash']!r} != {'0' * 16!r}"]
    with pytest.raises(InputError, match=r"checkpoint\.pt.*belongs to another run.*gamma_l1"):
        read_checkpoint(ckpt, "paired", tiny(gamma_l1=1.0))
    # a changed setting: the old checkpoint is moved aside intact (never trusted, never deleted)
    new_settings = tiny(gamma_l1=1.0, n_const=1, n_decay=1, log_every=1)
    with caplog.at_level("WARNING", logger="ct2mr.training.checkpoint"):
        res = train(new_settings, files, out, "paired")
    assert res["finished"] and res["iteration"] == 2
    aside = out / "superseded" / f"checkpoint.paired.{old['settings_hash']}.{old['data_hash']}.pt"
    assert aside.read_bytes() == before
    assert "from another run" in caplog.text and "gamma_l1" in caplog.text and str(aside) in caplog.text
    assert torch.load(ckpt, weights_only=True)["settings_hash"] == settings_hash(new_settings)
    rows = list(csv.DictReader((out / "losses.tsv").open(), delimiter="\t"))
    assert [int(r["iteration"]) for r in rows] == [1, 2]  # trained from scratch, not continued


def test_changed_training_data_does_not_resume_the_old_checkpoint(slice_files, tmp_path) -> None:
    # same settings, other slices (e.g. a changed preprocessing setting upstream): a
    # finished checkpoint of the old data must not pass for the new model
    out = tmp_path / "m"
    s = tiny(n_const=1, n_decay=1)
    train(s, [slice_files["paired"]], out, "paired")
    other = make_slices(tmp_path / "p2.npz", "paired_train", seed=11)
    train(s, [other], out, "paired")
    train(s, [other], tmp_path / "fresh", "paired")
    assert states_equal(out / "syn_mr.pt", tmp_path / "fresh" / "syn_mr.pt")
    assert len(list((out / "superseded").glob("checkpoint.paired.*.pt"))) == 1


def test_settings_changed_back_restore_the_finished_checkpoint(slice_files, tmp_path, caplog) -> None:
    files = [slice_files["paired"]]
    out = tmp_path / "m"
    a, b = tiny(n_const=2, n_decay=2), tiny(n_const=2, n_decay=2, lr=1e-4)
    train(a, files, out, "paired")
    (out / "syn_mr.pt").rename(tmp_path / "a_syn_mr.pt")
    train(b, files, out, "paired")  # moves a's checkpoint aside
    with caplog.at_level("WARNING", logger="ct2mr.training.checkpoint"):
        res = train(a, files, out, "paired", _fail_after=1)  # would raise if it trained at all
    assert res["finished"] and "moved back" in caplog.text
    assert states_equal(out / "syn_mr.pt", tmp_path / "a_syn_mr.pt")
    assert [p.name.split(".")[2] for p in (out / "superseded").iterdir()] == [settings_hash(b)]


def test_interrupted_run_with_same_settings_resumes_after_a_foreign_checkpoint(slice_files, tmp_path) -> None:
    files = [slice_files["paired"]]
    out = tmp_path / "m"
    train(tiny(), files, out, "paired", max_iterations_this_run=2)  # other settings' checkpoint
    s = tiny(gamma_l1=1.0, n_const=3, n_decay=3, checkpoint_every=2)
    with pytest.raises(RuntimeError, match="simulated"):
        train(s, files, out, "paired", _fail_after=3)  # moves the foreign one aside; checkpoint at 2
    assert len(list((out / "superseded").iterdir())) == 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2
    res = train(s, files, out, "paired")
    assert res["finished"] and len(list((out / "superseded").iterdir())) == 1  # resumed, nothing moved
    train(s, files, tmp_path / "straight", "paired")
    assert states_equal(tmp_path / "straight" / "syn_mr.pt", out / "syn_mr.pt")
    # device / log cadence are not part of the identity: resuming with others is fine
    train(tiny(), files, tmp_path / "n", "paired", max_iterations_this_run=2)
    assert train(tiny(log_every=4), files, tmp_path / "n", "paired")["finished"]
    assert not (tmp_path / "n" / "superseded").exists()


def test_corrupt_checkpoint_is_reported_and_left_in_place(slice_files, tmp_path) -> None:
    out = tmp_path / "m"
    train(tiny(), [slice_files["paired"]], out, "paired", max_iterations_this_run=2)
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"checkpoint\.pt.*unreadable"):
        train(tiny(), [slice_files["paired"]], out, "paired")
    assert ckpt.read_bytes() == data[: len(data) // 2]
    with pytest.raises(InputError, match="resume is off"):
        train(tiny(), [slice_files["paired"]], out, "paired", resume=False)


def test_settings_presets_and_validation(tmp_path) -> None:
    paper = preset_settings("paper")
    assert (paper.image_size, paper.ngf, paper.ndf, paper.n_blocks) == (256, 64, 64, 9)
    assert (paper.n_const, paper.n_decay, paper.lambda_cycle, paper.gamma_l1) == (100_000, 200_000, 10.0, 100.0)
    assert (paper.lr, paper.beta1, paper.beta2, paper.pool_size, paper.device) == (2e-4, 0.5, 0.999, 50, "auto")
    assert paper.effective_pad_to == 286
    resolved = resolve_training_settings({"preset": "demo", "seeds": [3, 4], "device": "auto", "gpus": 0,
                                          "variants": ["mrgan"], "overrides": {"n_const": 5}})
    assert resolved["seed"] == 3 and resolved["n_const"] == 5 and resolved["device"] == "cpu"
    # one run per seed: the workflow resolves the settings of each seed
    assert resolve_training_settings({"seeds": [3, 4]}, seed=4)["seed"] == 4
    with pytest.raises(InputError, match=r"training\.seeds: seed 5 is not one of \[3, 4\]"):
        resolve_training_settings({"seeds": [3, 4]}, seed=5)
    with pytest.raises(InputError, match=r"training\.seed: replaced by training\.seeds"):
        resolve_training_settings({"seed": 3})
    with pytest.raises(InputError, match=r"training\.overrides\.seed: set the seeds with training\.seeds"):
        resolve_training_settings({"overrides": {"seed": 3}})
    with pytest.raises(InputError, match=r"training\.seeds: seeds must be distinct"):
        resolve_training_settings({"seeds": [1, 1]})
    with pytest.raises(InputError, match=r"val_every: must be >= 1"):
        settings_from_dict({**PRESETS["tiny"], "val_every": 0})
    with pytest.raises(InputError, match=r"cfg\.yaml: training\.overrides\.learning_rate: unknown"):
        resolve_training_settings({"preset": "demo", "overrides": {"learning_rate": 1}}, "cfg.yaml")
    with pytest.raises(InputError, match=r"training\.colour"):
        resolve_training_settings({"colour": 1})
    with pytest.raises(InputError, match=r"training\.preset"):
        resolve_training_settings({"preset": "huge"})
    with pytest.raises(InputError, match="image_size.*multiple of 16"):
        settings_from_dict({"image_size": 40})
    with pytest.raises(InputError, match="ngf.*expected int"):
        settings_from_dict({"ngf": 8.5})
    with pytest.raises(InputError, match="augment.*expected bool"):
        settings_from_dict({"augment": "yes"})
    # --settings: JSON text, a JSON file, or a YAML config with a training: section
    s, _ = load_settings_arg(json.dumps(resolved))
    assert s.to_dict() == resolved
    (tmp_path / "c.yaml").write_text("training:\n  preset: tiny\n  seeds: [9, 2]\n")
    s2, src = load_settings_arg(str(tmp_path / "c.yaml"))
    assert s2.seed == 9 and s2.image_size == 32 and src.endswith("c.yaml")
    # the hash ignores run-only fields
    assert settings_hash(tiny(device="cpu", log_every=1, val_every=1)) == settings_hash(tiny(log_every=7, val_every=7))
    assert settings_hash(tiny(lr=1e-3)) != settings_hash(tiny())


def test_cli(slice_files, tmp_path, capsys) -> None:
    out = tmp_path / "m"
    args = ["train", "--variant", "paired", "--out-dir", str(out), "--settings",
            json.dumps({**PRESETS["tiny"], "n_const": 2, "n_decay": 0}), "--slices", str(slice_files["paired"])]
    assert cli_main(args) == 0
    assert (out / "syn_mr.pt").exists() and not (out / "syn_ct.pt").exists()
    bad = ["train", "--variant", "unpaired", "--out-dir", str(tmp_path / "u"), "--settings",
           json.dumps(PRESETS["tiny"]), "--slices", str(slice_files["paired"])]
    assert cli_main(bad) == 2
    assert "variant unpaired" in capsys.readouterr().err
    assert cli_main([*args[:6], '{"ngf": 8, "colour": 1}', *args[7:]]) == 2


def test_device_resolution_is_the_shared_helper() -> None:
    """train uses ct2mr.models.model_folder.resolve_device (no second copy): a bad device string is an
    InputError naming the field, not a raw RuntimeError from torch.device."""
    from ct2mr.errors import InputError
    from ct2mr.models import model_folder
    from ct2mr.training import train as train_mod

    assert train_mod.resolve_device is model_folder.resolve_device
    assert str(train_mod.resolve_device("cpu")) == "cpu"
    with pytest.raises(InputError, match="device"):
        train_mod.resolve_device("gpu0")


def test_regression_variant_is_syn_mr_with_l1_alone(slice_files, tmp_path) -> None:
    """regression: one generator, the voxel-wise L1 its only term, no discriminator, no Syn_CT."""
    from ct2mr.training.losses import VARIANT_TERMS, networks_for
    from ct2mr.training.train import Trainer

    assert VARIANT_TERMS["regression"] == ("l1_mr_paired",)
    assert networks_for("regression") == ("syn_mr",)
    trainer = Trainer(tiny(), "regression")
    assert trainer.opt_d is None and trainer.log_columns() == ["l1_mr_paired", "G_total", "lr"]
    # same generator (architecture and initialisation) as the paired variant's
    paired = Trainer(tiny(), "paired")
    a, b = trainer.nets["syn_mr"].state_dict(), paired.nets["syn_mr"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # it learns: L1 falls on one pair; exact resume works without a discriminator
    f = make_slices(tmp_path / "one.npz", "paired_train", n=1, size=32, seed=7)
    s = tiny(n_const=60, n_decay=0, augment=False, log_every=10, checkpoint_every=1000)
    train(s, [f], tmp_path / "m", "regression")
    rows = list(csv.DictReader((tmp_path / "m" / "losses.tsv").open(), delimiter="\t"))
    assert float(rows[-1]["l1_mr_paired"]) < 0.5 * float(rows[0]["l1_mr_paired"])
    s2 = tiny(n_const=3, n_decay=3, checkpoint_every=2)
    train(s2, [slice_files["paired"]], tmp_path / "straight", "regression")
    with pytest.raises(RuntimeError, match="simulated"):
        train(s2, [slice_files["paired"]], tmp_path / "killed", "regression", _fail_after=3)
    train(s2, [slice_files["paired"]], tmp_path / "killed", "regression")
    assert states_equal(tmp_path / "straight" / "syn_mr.pt", tmp_path / "killed" / "syn_mr.pt")


def test_validation_columns_and_held_out_patients(slice_files, tmp_path) -> None:
    """paired_val slices: val_mae / val_mae_head every val_every iterations, never trained on,
    and the weights equal those of a run without validation."""
    val = make_slices(tmp_path / "v1.npz", "paired_val", seed=5)
    files = [slice_files["paired"], slice_files["ct"], slice_files["mr"]]
    s = tiny(val_every=4)
    train(s, files, tmp_path / "plain", "mrgan")
    train(s, files, tmp_path / "val", "mrgan", val_files=[val])
    rows = list(csv.DictReader((tmp_path / "val" / "losses.tsv").open(), delimiter="\t"))
    assert {"val_mae", "val_mae_head"} <= rows[0].keys()
    scored = {int(r["iteration"]): r for r in rows if r["val_mae"]}
    assert sorted(scored) == [4, 8]  # multiples of val_every (and the last iteration)
    # val_every not a multiple of log_every: the first logged row at or after each multiple
    from ct2mr.training.train import _validation_due

    hist: list[dict[str, float]] = []
    for it in range(10, 101, 10):
        if _validation_due(hist, it, 100, 25):
            hist.append({"iteration": it, "val_mae": 1.0})
    assert [r["iteration"] for r in hist] == [30, 50, 80, 100]
    assert all(r["val_mae"] == "" for r in rows if int(r["iteration"]) not in scored)
    assert 0 <= float(scored[8]["val_mae"]) <= 255 and 0 <= float(scored[8]["val_mae_head"]) <= 255
    info = json.loads((tmp_path / "val" / "model.json").read_text())
    assert info["validation_patients"] == ["v1"]
    assert "v1" not in json.dumps(info["patients"])  # not in any training pool
    assert states_equal(tmp_path / "plain" / "syn_mr.pt", tmp_path / "val" / "syn_mr.pt")
    # a paired_val file given as training data is ignored by the pools
    from ct2mr.training.data import build_pools

    pools = build_pools([slice_files["paired"], val], 32)
    assert "v1" not in json.dumps(pools.patients)
    # a patient both trained on and validated is refused
    with pytest.raises(InputError, match="p1 are also training data"):
        train(s, files, tmp_path / "both", "mrgan", val_files=[slice_files["paired"]])


def test_validator_scores_a_known_error(tmp_path) -> None:
    """An identity 'generator' on CT = MR slices scores 0; a constant offset scores that offset."""
    from torch import nn

    from ct2mr.training.validation import Validator

    f = make_slices(tmp_path / "v.npz", "paired_val", n=2, size=32, seed=3)
    d = dict(np.load(f))
    d["mr"] = d["ct"].copy()
    d["head_mask"] = np.zeros_like(d["head_mask"])
    d["head_mask"][:, 8:24, 8:24] = True
    save_slices(f, d)
    v = Validator([f], image_size=32, device=torch.device("cpu"))
    assert v.score(nn.Identity()) == {"val_mae": pytest.approx(0.0, abs=0.01), "val_mae_head": pytest.approx(0.0, abs=0.01)}
    shift = 20 / 127.5  # +20 grey levels, where that stays inside 0..255
    d["mr"] = np.clip(d["ct"].astype(int) + 20, 0, 255).astype(np.uint8)
    save_slices(f, d)
    got = Validator([f], image_size=32, device=torch.device("cpu")).score(_Shift(shift))
    expected = np.abs(np.clip(d["ct"].astype(int) + 20, 0, 255) - d["mr"]).mean()
    assert got["val_mae"] == pytest.approx(expected, abs=0.05)


class _Shift(torch.nn.Module):
    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


def test_model_json_records_the_preprocessing(slice_files, tmp_path, capsys) -> None:
    """`train --preprocessing` (what the workflow passes: the config's preprocessing sections) lands in model.json,
    where `ct2mr predict` reads it; a bad record is refused before any training (issue 22, item 5)."""
    from ct2mr.cohort.config import validate_config
    from ct2mr.models.model_folder import PREPROCESSING_KEYS, load_generators

    config = validate_config({"resample": {"spacing_mm": [2.0, 2.0, 2.0]}, "slices": {"size": 64}})
    record = {s: config[s] for s in PREPROCESSING_KEYS}
    out = tmp_path / "m"
    args = ["train", "--variant", "paired", "--out-dir", str(out), "--settings",
            json.dumps({**PRESETS["tiny"], "n_const": 1, "n_decay": 0}), "--slices", str(slice_files["paired"])]
    assert cli_main([*args, "--preprocessing", json.dumps(record)]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["preprocessing"]["resample"]["spacing_mm"] == [2.0, 2.0, 2.0]
    assert info["preprocessing"]["slices"] == {"size": 64, "min_brain_voxels": 500, "min_slices": 5}
    assert load_generators(out, device="cpu").preprocessing == info["preprocessing"]
    # a record missing a key: one line naming it, nothing trained
    del record["window"]["ct_level_hu"]
    bad = tmp_path / "bad"
    assert cli_main([*args[:4], str(bad), *args[5:], "--preprocessing", json.dumps(record)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ct2mr train: error: --preprocessing.window.ct_level_hu: missing"]
    assert not bad.exists()
    # without it: a warning, and model.json records none
    bare = tmp_path / "bare"
    assert cli_main([*args[:4], str(bare), *args[5:]]) == 0
    assert "preprocessing" not in json.loads((bare / "model.json").read_text())


def test_the_workflow_passes_the_configs_preprocessing_to_train(tmp_path) -> None:
    """The `train` job's command carries the config's preprocessing sections, whole, as --preprocessing (a dry run
    of the tiny cohort, whose 2 mm / 128 px preprocessing is not the default)."""
    import shlex

    import yaml

    from ct2mr.cohort.config import validate_config
    from ct2mr.models.model_folder import check_preprocessing, preprocessing_from_config
    from tests.workflow_helpers import make_tiny_workdir, snakemake

    config_path = make_tiny_workdir(tmp_path, window={"ct_width_hu": 90.0})
    out = snakemake(tmp_path, "-n", "-p", "results/models/paired/seed0/model.json").stdout
    (line,) = [ln for ln in out.splitlines() if " train --variant paired " in ln]
    argv = shlex.split(line.split("Shell command:", 1)[-1])
    record = check_preprocessing(json.loads(argv[argv.index("--preprocessing") + 1]), None)
    want = preprocessing_from_config(validate_config(yaml.safe_load(config_path.read_text())))
    assert record == want
    assert record["resample"]["spacing_mm"] == [2.0, 2.0, 2.0] and record["slices"]["size"] == 128
    assert record["window"]["ct_width_hu"] == 90.0
