"""Config validation: defaults, unknown keys, wrong types, one clear message."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ct2mr.cli import main
from ct2mr.config import load_config, validate_config
from ct2mr.errors import InputError


def test_default_config_is_valid_and_complete(repo_root: Path) -> None:
    config = load_config(repo_root / "config" / "config.yaml")
    assert config["window"]["ct_width_hu"] == 80.0
    assert config["window"]["ct_level_hu"] == 40.0
    assert config["resample"]["spacing_mm"] == [1.0, 1.0, 1.0]
    assert config["registration"]["backend"] in {"simpleitk", "antspy", "elastix", "afni"}


def test_defaults_fill_missing_sections() -> None:
    config = validate_config({"patients": "x.tsv"})
    assert config["skull_mask"]["ct_skull_threshold_hu"] == 300
    assert config["slices"]["size"] == 256
    assert config["training"]["variants"] == ["paired", "unpaired", "mrgan", "regression"]
    assert config["training"]["seeds"] == [0]
    assert config["synthesis"]["tta"] is False
    assert config["phantom"]["ct_spacing_mm"] == [0.8, 0.8, 2.5]


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"bogus": 1}, "(top level)", "unknown key(s) 'bogus'"),
        ({"registration": {"backnd": "simpleitk"}}, "registration", "unknown key(s) 'backnd'"),
        ({"registration": {"backend": "fsl"}}, "registration.backend", "'fsl' is not one of"),
        ({"window": {"ct_width_hu": "wide"}}, "window.ct_width_hu", "'wide' is not of type 'number'"),
        ({"slices": {"min_slices": 2.5}}, "slices.min_slices", "is not of type 'integer'"),
        ({"resample": {"spacing_mm": [1, 1]}}, "resample.spacing_mm", "too short"),
        ({"training": {"variants": ["mrgan", "pix2pix"]}}, "training.variants.1", "'pix2pix' is not one of"),
        ({"training": {"seed": 1}}, "training", "'seed' was replaced by 'seeds', a list"),
        ({"training": {"seeds": [0, 0]}}, "training.seeds", "non-unique"),
        ({"training": {"seeds": []}}, "training.seeds", "should be non-empty"),
        ({"training": {"seeds": [-1]}}, "training.seeds.0", "minimum"),
        ({"synthesis": {"tta": "yes"}}, "synthesis.tta", "is not of type 'boolean'"),
    ],
)
def test_bad_config_names_file_key_and_problem(patch: dict, key: str, words: str) -> None:
    config: dict = {"patients": "config/patients.tsv"}
    for section, value in patch.items():
        config[section] = copy.deepcopy(value)
    with pytest.raises(InputError) as info:
        validate_config(config, source="my.yaml")
    message = str(info.value)
    assert message.startswith(f"my.yaml: {key}: "), message
    assert words in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("window:\n  ct_width_hu: [80\n")
    with pytest.raises(InputError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_config(bad)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_check_config_cli(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_root)
    assert main(["check-config", "--config", "config/config.yaml"]) == 0
    assert "13 patients" in capsys.readouterr().out
    bad = tmp_path / "c.yaml"
    bad.write_text(yaml.safe_dump({"patients": "config/patients.tsv", "window": {"ct_level_hu": "x"}}))
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "window.ct_level_hu" in err and str(bad) in err
