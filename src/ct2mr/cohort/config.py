"""Configuration: load, fill defaults and validate against the JSON schema.

The schema (``workflow/schemas/config.schema.yaml``, read by
:mod:`ct2mr.cohort.schema`) is the single reference for every key, its type,
range and default. The Snakefile and the CLI both call :func:`validate_config`,
so a bad value gives the same one-line message, naming the key, wherever it is used.

:func:`validate_all` is everything the workflow checks at start (schema, patient
table, training settings, cross-field rules); ``workflow/rules/common.smk`` and
``ct2mr check-config [--config config/config.yaml]`` both call it, so "valid"
means the workflow starts and no job fails on a config value.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ct2mr.cohort.patients import check_leakage, load_patients
from ct2mr.cohort.schema import CONFIG_SCHEMA, load_yaml, validate
from ct2mr.errors import InputError
from ct2mr.training.folds import CV_ROLES, assign_folds
from ct2mr.training.roles import VARIANT_POOLS, pool_roles


def validate_config(config: dict[str, Any], source: str | Path | None = "config") -> dict[str, Any]:
    """Validate a config dict in place and fill its defaults; returns it."""
    if not isinstance(config, dict):
        raise InputError(source, None, "the config must be a mapping of keys to values")
    return validate(config, CONFIG_SCHEMA, source)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read, validate and default-fill a config file."""
    data = load_yaml(path)
    if data is None:
        data = {}
    return validate_config(data, path)


#: keys of the ``training:`` section that win over the same key in ``training.overrides``
#: (the schema gives them a default, so an override of them would be silently ignored)
SECTION_WINS: tuple[str, ...] = ("unpaired_includes_paired",)


@dataclass(frozen=True)
class ValidConfig:
    """What :func:`validate_all` returns: the default-filled config, its patients, the training settings."""

    config: dict[str, Any]
    patients: list[Any]  # list[ct2mr.cohort.patients.Patient]
    training: dict[str, Any]
    #: patient -> cross-validation fold (``evaluation.folds``; empty when it is 0)
    folds: dict[str, int]


def validate_all(config: dict[str, Any], source: str | Path | None = "config") -> ValidConfig:
    """Everything the workflow checks at start, in one place (``common.smk`` and ``ct2mr check-config``).

    1. the schema (:func:`validate_config`, defaults filled in place);
    2. the patient table (:func:`ct2mr.cohort.patients.load_patients`: columns, roles, files);
    3. the training settings (:func:`ct2mr.training.settings.resolve_training_settings`:
       unknown ``training.overrides`` keys, ranges such as ``lr > 0``);
    4. cross-field rules that would otherwise fail a job later (:func:`check_cross_fields`);
    5. the cross-validation split (:func:`cross_validation_folds`), made once here;
    6. no scan both trained on and held out (:func:`ct2mr.cohort.patients.check_leakage`; under
       ``evaluation.folds`` the paired rows are both).

    "Valid" therefore means the workflow starts and no job fails on a config value.
    Raises :class:`InputError` naming ``source`` (or the patient table), the key and the problem.
    """
    from ct2mr.training.settings import resolve_training_settings  # noqa: PLC0415

    validate_config(config, source)
    patients = load_patients(config["patients"])
    check_overrides(config, source)
    training = resolve_training_settings(config["training"], source=None if source is None else str(source))
    check_cross_fields(config, patients, training, source)
    folds = cross_validation_folds(config, patients, source)
    check_leakage(patients, config["patients"], cross_validated=bool(config["evaluation"]["folds"]))
    return ValidConfig(config, patients, training, folds)


def check_results_writable(results: str | Path) -> None:
    """The workflow's output folder ``results`` must be writable: tried by creating (and removing) a
    file in it, or, while it does not exist, in the folder that will hold it (a permission check
    alone would pass for root on a read-only mount). Run at workflow start (``onstart``), so a
    read-only ``results/`` gets one line instead of a failed first job. Raises :class:`InputError`."""
    import tempfile  # noqa: PLC0415

    results = Path(results)
    target = results if results.exists() else results.parent
    try:
        fd, name = tempfile.mkstemp(dir=target, prefix=".ct2mr-write-test-")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if results.exists():
            raise InputError(results, None, f"cannot write here ({why}); every output of the workflow goes under "
                             "results/: make it writable (chmod -R u+w results) or run from a project folder "
                             "you can write to") from None
        raise InputError(results, None, f"cannot create results/ in {target.resolve()} ({why}); run the workflow "
                         "from a project folder you can write to") from None
    import os  # noqa: PLC0415

    os.close(fd)
    os.unlink(name)


def check_config_files(paths: list[str | Path], workdir: str | Path = ".") -> None:
    """Refuse a config file that is a target read as one: ``--configfile`` takes every word after it
    up to the next option, so ``snakemake --configfile my.yaml results/x.json`` reads the target
    ``results/x.json`` as a second config file. Refused: a config file under ``workdir``'s
    ``results/``, or one with no key of the config schema at its top level. (A target that does not
    exist, or is not YAML/JSON, fails in Snakemake's own loader before the workflow starts: README.)"""
    results = (Path(workdir) / "results").resolve()
    top_keys = set(load_yaml(CONFIG_SCHEMA)["properties"]) if paths else set()
    for path in paths:
        resolved = Path(path).resolve()
        data = load_yaml(path) if resolved.is_file() else None
        known = isinstance(data, Mapping) and bool(set(data) & top_keys)
        if resolved.is_relative_to(results) or (isinstance(data, Mapping) and data and not known):
            raise InputError(path, "--configfile",
                             "read as a config file; --configfile takes every word after it: put the targets "
                             "before it (snakemake TARGET --configfile FILE) or end its list with --")


def cross_validation_folds(config: Mapping[str, Any], patients: list[Any], source: str | Path | None) -> dict[str, int]:
    """Patient -> fold of the ``paired_train`` and ``paired_test`` rows under ``evaluation.folds`` (k >= 2;
    {} when it is 0), by :func:`ct2mr.training.folds.assign_folds`; InputError naming ``source`` when
    there are fewer such patients than folds."""
    k = config["evaluation"]["folds"]
    if not k:
        return {}
    try:
        return assign_folds([p.patient for p in patients if p.role in CV_ROLES], k, config["evaluation"]["fold_seed"])
    except InputError as exc:
        raise InputError(source, exc.field, exc.problem) from None


def check_overrides(config: Mapping[str, Any], source: str | Path | None) -> None:
    """``training.overrides`` may not set a key the section sets itself (it would be ignored)."""
    overrides = config["training"].get("overrides") or {}
    for key in SECTION_WINS:
        if isinstance(overrides, Mapping) and key in overrides:
            raise InputError(source, f"training.overrides.{key}",
                             f"set training.{key} instead (the section's own key wins, so this override would be ignored)")


def check_cross_fields(
    config: Mapping[str, Any], patients: list[Any], training: Mapping[str, Any], source: str | Path | None
) -> None:
    """Rules between keys (and between the config and the patient table) that the schema cannot say.

    * ``window.mr_percentiles``: low < high (the window job needs it);
    * ``skull_mask.ct_head_threshold_hu`` < ``ct_skull_threshold_hu`` (else no brain between them);
    * ``evaluation.primary``: a variant compared with another one;
    * every variant in ``training.variants`` has slices for each pool it trains on
      (paired: ``paired_train`` patients; unpaired CT/MR: ``ct_only`` / ``mr_only``, or
      ``paired_train`` with ``unpaired_includes_paired``), else its train job fails.
    """
    low, high = config["window"]["mr_percentiles"]
    if not low < high:
        raise InputError(source, "window.mr_percentiles", f"need low < high (e.g. [1, 99]), got [{low}, {high}]")
    sk = config["skull_mask"]
    if not sk["ct_head_threshold_hu"] < sk["ct_skull_threshold_hu"]:
        raise InputError(source, "skull_mask.ct_head_threshold_hu",
                         f"must be below ct_skull_threshold_hu ({sk['ct_skull_threshold_hu']}), "
                         f"got {sk['ct_head_threshold_hu']}")
    primary = config["evaluation"]["primary"]
    if primary["variant"] == primary["baseline"]:
        raise InputError(source, "evaluation.primary.baseline",
                         f"must differ from evaluation.primary.variant ({primary['variant']})")
    roles = {p.role for p in patients}
    include = bool(training.get("unpaired_includes_paired"))
    needed = pool_roles(include)
    for variant in config["training"]["variants"]:
        for pool in VARIANT_POOLS.get(variant, ()):
            if not roles & set(needed[pool]):
                hint = "" if include or pool == "paired" else (
                    "; or set training.unpaired_includes_paired: true to use paired_train patients")
                raise InputError(
                    source, "training.variants",
                    f"variant {variant} trains on {pool.replace('_', ' ')} slices, but the patient table "
                    f"{config['patients']} has no patient of role {' or '.join(needed[pool])}{hint}",
                )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/config.yaml", help="config file (YAML)")
    parser.add_argument("--data", action="store_true",
                        help="also open every input's header (DICOM series choice, volume headers, pool images, "
                             "truth JSON, the registration program) and list every problem, one line each "
                             "(seconds per patient; ct2mr.cohort.data_check)")


def run(args: argparse.Namespace) -> None:
    """Run :func:`validate_all` (what the workflow runs at start) and print the resolved config."""
    data = load_yaml(args.config)
    valid = validate_all({} if data is None else data, args.config)
    print(yaml.safe_dump(valid.config, sort_keys=False), end="")
    roles: dict[str, int] = {}
    for p in valid.patients:
        roles[p.role] = roles.get(p.role, 0) + 1
    print(f"# {args.config}: valid; {len(valid.patients)} patients: "
          + ", ".join(f"{n} {r}" for r, n in sorted(roles.items())))
    if getattr(args, "data", False):
        from ct2mr.cohort.data_check import run_data_check  # noqa: PLC0415

        run_data_check(valid.config, valid.patients, args.config)
