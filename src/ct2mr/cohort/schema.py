"""Config and patient-table schemas: read YAML, validate against a JSON schema, fill defaults.

The schemas (``workflow/schemas/config.schema.yaml``, ``patients.schema.yaml``) are
the single reference for every key, its type, range and default. A failed check
raises :class:`ct2mr.errors.InputError` naming the file, the key and the problem
in user words (one line). Used by :mod:`ct2mr.cohort.patients` (the patient
table) and :mod:`ct2mr.cohort.config` (the whole config).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import validators

from ct2mr.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
CONFIG_SCHEMA = SCHEMA_DIR / "config.schema.yaml"
PATIENTS_SCHEMA = SCHEMA_DIR / "patients.schema.yaml"


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a syntax error becomes an InputError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise InputError(path, where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type[jsonschema.protocols.Validator]:
    """A validator class that fills ``default`` values into the instance as it validates."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_DefaultFilling = _with_defaults(jsonschema.Draft202012Validator)


#: former keys -> what replaced them (a clearer message than "unknown key")
RENAMED_KEYS: dict[str, str] = {
    "training.seed": "'seed' was replaced by 'seeds', a list: one training run per seed (e.g. seeds: [0])",
}


def describe_error(err: jsonschema.ValidationError) -> tuple[str, str]:
    """(key path, problem) for a schema validation error, in user words."""
    key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        renamed = [RENAMED_KEYS[f"{key}.{k}"] for k in extra if f"{key}.{k}" in RENAMED_KEYS]
        if renamed:
            return key, "; ".join(renamed)
        return key, f"unknown key(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)}"
    if err.validator == "type":
        return key, f"{err.instance!r} is not of type {err.validator_value!r}"
    if err.validator == "enum":
        return key, f"{err.instance!r} is not one of {err.validator_value}"
    return key, err.message


@functools.lru_cache(maxsize=None)
def _validator(schema_path: Path) -> jsonschema.protocols.Validator:
    """The default-filling validator of a schema file (read once per process)."""
    return _DefaultFilling(load_yaml(schema_path))


def validate(instance: Any, schema_path: Path, source: str | Path | None) -> Any:
    """Validate ``instance`` in place (defaults filled) against the schema at ``schema_path``.

    Raises :class:`InputError` naming ``source``, the key and the problem of the
    first error (the one deepest in the tree, which is the most specific).
    """
    errors = list(_validator(Path(schema_path)).iter_errors(instance))
    if errors:
        err = max(errors, key=lambda e: len(e.absolute_path))
        key, problem = describe_error(err)
        raise InputError(source, key, problem)
    return instance
