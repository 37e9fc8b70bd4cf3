"""Config validation: defaults, unknown keys, wrong types, one clear message."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ct2mr.cli import main
from ct2mr.cohort.config import load_config, validate_config
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


# --- one validation path: `ct2mr check-config` refuses exactly what the workflow refuses at start

#: (name, config patch, words in the message); each would fail at workflow start or in a job
BAD_CONFIGS: list[tuple[str, dict, str]] = [
    ("unknown override", {"training": {"overrides": {"learning_rate": 0.1}}}, "training.overrides.learning_rate: unknown"),
    ("lr = 0", {"training": {"overrides": {"lr": 0}}}, "lr: must be > 0"),
    ("lr < 0", {"training": {"overrides": {"lr": -0.0002}}}, "lr: must be > 0"),
    ("override of the seed", {"training": {"overrides": {"seed": 3}}}, "training.overrides.seed: set the seeds with training.seeds"),
    ("override of a section key", {"training": {"overrides": {"unpaired_includes_paired": True}}},
     "training.overrides.unpaired_includes_paired: set training.unpaired_includes_paired"),
    ("percentiles reversed", {"window": {"mr_percentiles": [99, 1]}}, "window.mr_percentiles: need low < high"),
    ("percentiles equal", {"window": {"mr_percentiles": [50, 50]}}, "window.mr_percentiles: need low < high"),
    ("head threshold = skull threshold", {"skull_mask": {"ct_head_threshold_hu": 0, "ct_skull_threshold_hu": 0}},
     "skull_mask.ct_head_threshold_hu: must be below"),
    ("variant without its data", {"patients": "paired_only.tsv", "training": {"variants": ["unpaired"]}},
     "training.variants: variant unpaired trains on ct unpaired slices"),
    ("more folds than paired patients", {"evaluation": {"folds": 4}},
     "evaluation.folds: 4 folds need at least 4 paired patients (paired_train + paired_test), the patient table has 3"),
    ("one fold", {"evaluation": {"folds": 1}}, "evaluation.folds"),
    ("primary compares a variant with itself", {"evaluation": {"primary": {"variant": "paired"}}},
     "evaluation.primary.baseline: must differ from evaluation.primary.variant (paired)"),
    ("schema: unknown key", {"window": {"ct_widht_hu": 80}}, "window: unknown key(s) 'ct_widht_hu'"),
    ("patient table: ragged row", {"patients": "ragged.tsv"}, "line 2 (patient 'T1'): 6 cells"),
    # issue 22: a folder as the table; one scan as training and test data (leakage), also under k folds
    ("patient table: a folder", {"patients": "."}, ".: is a folder; the patient table is a TSV file"),
    ("train/test leakage", {"patients": "leak.tsv"},
     "line 8 (patient 'X2'), column ct: the same file as line 7 (patient 'X1'), column ct"),
    ("k-fold leakage", {"patients": "leak_cv.tsv", "evaluation": {"folds": 2}},
     "line 8 (patient 'X2'), column ct: the same content as line 7 (patient 'X1'), column ct"),
]


def _bad_workdir(tmp_path: Path, patch: dict) -> Path:
    """A tiny-cohort working directory whose config.yaml has ``patch`` applied."""
    from tests.workflow_helpers import make_tiny_workdir

    make_tiny_workdir(tmp_path)
    rows = (tmp_path / "patients.tsv").read_text().splitlines()
    (tmp_path / "paired_only.tsv").write_text("\n".join(r for r in rows if "_only" not in r) + "\n")
    (tmp_path / "ragged.tsv").write_text("\n".join([rows[0], rows[1] + "\textra", *rows[2:]]) + "\n")
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz", "a copy.nii.gz"):
        (tmp_path / name).write_text(name.replace(" copy", ""))
    leak = ["X1\tpaired_train\ta.nii.gz\tb.nii.gz\t", "X2\tpaired_test\ta.nii.gz\tc.nii.gz\t"]
    (tmp_path / "leak.tsv").write_text("\n".join([*rows, *leak]) + "\n")
    leak_cv = [leak[0], leak[1].replace("paired_test\ta.nii.gz", "paired_train\ta copy.nii.gz")]
    (tmp_path / "leak_cv.tsv").write_text("\n".join([*rows, *leak_cv]) + "\n")
    path = tmp_path / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for section, value in patch.items():
        if isinstance(value, dict):
            config.setdefault(section, {}).update(copy.deepcopy(value))
        else:
            config[section] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


@pytest.mark.parametrize(("name", "patch", "words"), BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_check_config_and_the_workflow_refuse_the_same_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, patch: dict,
    words: str,
) -> None:
    """Issue 8 item 6: check-config used to say "valid" for configs the workflow (or a job) then refused."""
    from tests.workflow_helpers import snakemake

    workdir = _bad_workdir(tmp_path, patch)
    monkeypatch.chdir(workdir)
    assert main(["check-config", "--config", "config.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ct2mr check-config: error: "), err
    assert words in err, err
    proc = snakemake(workdir, "-n", check=False, timeout=300)
    assert proc.returncode != 0
    assert words in proc.stdout + proc.stderr, proc.stderr[-3000:]


def test_the_tiny_config_is_valid_for_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The other side of the property: a config check-config accepts, the workflow plans."""
    from tests.workflow_helpers import snakemake

    workdir = _bad_workdir(tmp_path, {})
    monkeypatch.chdir(workdir)
    assert main(["check-config", "--config", "config.yaml"]) == 0
    assert ": valid;" in capsys.readouterr().out
    assert snakemake(workdir, "-n", check=False, timeout=300).returncode == 0


def test_variant_pools_agree_with_the_loss_table() -> None:
    """roles.VARIANT_POOLS is a torch-free copy of losses.data_for (workflow start must not import torch)."""
    from ct2mr.training.losses import VARIANT_TERMS, data_for
    from ct2mr.training.roles import VARIANT_POOLS

    assert {v: set(VARIANT_POOLS[v]) for v in VARIANT_TERMS} == {v: set(data_for(v)) for v in VARIANT_TERMS}


# --- issue 22 item 8: one line, not a traceback, for a results/ that cannot be written and for a
# target read as a config file


@pytest.fixture()
def read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot write in: chmod 555 for a user; for root (chmod does not stop
    root) a read-only system folder, else the test is skipped."""
    import tempfile

    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys/kernel"), Path("/proc/self")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            yield candidate
            return
        os.close(fd)
        os.unlink(name)
    pytest.skip("no read-only folder to test with")


def test_results_folder_not_writable_is_one_line(tmp_path: Path, read_only_dir: Path) -> None:
    from ct2mr.cohort.config import check_results_writable

    check_results_writable(tmp_path / "results")  # absent in a writable folder: made by the first job
    results = tmp_path / "project" / "results"
    results.parent.mkdir()
    results.symlink_to(read_only_dir)
    with pytest.raises(InputError, match=r"results: cannot write here \(.*\); every output of the workflow goes "
                                         r"under results/: make it writable"):
        check_results_writable(results)
    with pytest.raises(InputError, match=r"cannot create results/ in .* \(.*\)"):
        check_results_writable(read_only_dir / "results")


def test_workflow_start_explains_a_read_only_results(tmp_path: Path, read_only_dir: Path) -> None:
    """It ended with "WorkflowError: Failed to create output directory ... PermissionError" from the first job."""
    from tests.workflow_helpers import make_tiny_workdir, snakemake

    make_tiny_workdir(tmp_path)
    (tmp_path / "results").symlink_to(read_only_dir)
    proc = snakemake(tmp_path, "--cores", "1", "results/phantom/T1/truth.json", check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "ct2mr: results: cannot write here" in out and "Failed to create output directory" not in out, out[-3000:]


def test_a_target_read_as_a_config_file(tmp_path: Path) -> None:
    """`--configfile my.yaml TARGET` reads TARGET as a second config file; an existing JSON output there
    gave "unknown key(s)" for the run's own results."""
    from ct2mr.cohort.config import check_config_files
    from tests.workflow_helpers import SNAKEFILE, SNAKEMAKE, make_tiny_workdir

    config = make_tiny_workdir(tmp_path)
    target = tmp_path / "results" / "phantom" / "T1" / "truth.json"
    target.parent.mkdir(parents=True)
    target.write_text('{"matrix": [1, 0, 0]}')
    check_config_files([config], tmp_path)
    message = (r"results/phantom/T1/truth\.json: --configfile: read as a config file; --configfile takes every "
               r"word after it: put the targets before it \(snakemake TARGET --configfile FILE\) or end its list with --")
    with pytest.raises(InputError, match=message):
        check_config_files([config, target], tmp_path)
    # as a user types it in the project folder (the helper would add its own --configfile last)
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "-n", "--configfile", "config.yaml",
                           "results/phantom/T1/truth.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"})
    assert proc.returncode != 0
    assert "read as a config file" in proc.stdout + proc.stderr, proc.stderr[-3000:]
