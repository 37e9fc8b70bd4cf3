"""Rerun scope as a tested property: every config key reruns exactly the rules the table says.

The table is ``ct2mr.pipeline.rerun_scope.RERUN_SCOPE``. Its keys are checked against the
leaf keys of ``workflow/schemas/config.schema.yaml`` (derived from the schema,
so a new key without an entry fails here). Then every leaf key is changed, one
at a time, to another valid value (derived from the schema: another enum member,
a number moved within its bounds, ...; the value is checked with the workflow's
own validation) on a copy of the finished tiny run, and Snakemake's dry run is
asked which rules it plans *first*: the rules listed in its "Reasons" summary
under any reason other than "input files updated by another job" (a changed
param, a changed set of input files, changed code). Those must equal the
table's rules (restricted to the rules the tiny DAG has: it has no PNG patient).

The dry runs are independent (a dry run writes nothing but a lock, and
``--nolock`` skips that), so two run at a time; each passes its config with
``--configfile`` after the targets.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from ct2mr.cohort.config import validate_config
from ct2mr.cohort.schema import CONFIG_SCHEMA
from ct2mr.errors import InputError
from ct2mr.pipeline.rerun_scope import RERUN_SCOPE, check_table, schema_leaf_keys
from ct2mr.pipeline.snakemake_patches import fix_list_changes_params
from tests.workflow_helpers import REPO, SNAKEFILE, SNAKEMAKE

#: reason headings of Snakemake's "Reasons:" summary that mean "only because upstream reran"
DOWNSTREAM_REASONS = {"input files updated by another job"}


# --------------------------------------------------------------------------- the table vs the schema


def test_schema_leaf_keys_known_answer() -> None:
    schema = {
        "properties": {
            "a": {"type": "string"},
            "b": {"type": "object", "properties": {"c": {"type": "integer"}, "d": {"type": "array"}}},
            "e": {"type": "object", "description": "free-form"},
        }
    }
    assert schema_leaf_keys(schema) == ["a", "b.c", "b.d", "e"]


def test_every_schema_key_has_a_rerun_scope_entry() -> None:
    problems = check_table()
    assert not problems, "\n".join(problems)
    assert len(schema_leaf_keys()) >= 30


def test_check_table_names_a_new_key_and_where_to_add_it() -> None:
    problems = check_table([*schema_leaf_keys(), "synthesis.new_key"])
    assert len(problems) == 1
    assert "'synthesis.new_key'" in problems[0] and "src/ct2mr/pipeline/rerun_scope.py" in problems[0]


def test_table_names_only_rules_the_workflow_has() -> None:
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), re.M))
    for key, scope in RERUN_SCOPE.items():
        assert scope.rules <= rules, f"{key}: unknown rules {sorted(scope.rules - rules)}"
        assert scope.how, key


# --------------------------------------------------------------------------- changed values from the schema


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        target = schema
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _schema_node(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = schema
    for part in key.split("."):
        node = _resolve(node["properties"][part], schema)
    return node


def _candidates(node: dict[str, Any], schema: dict[str, Any], current: Any) -> list[Any]:
    """Values of the node's type that differ from ``current`` (validated by the caller)."""
    if "enum" in node:
        return [v for v in node["enum"] if v != current]
    kind = node.get("type")
    if kind == "boolean":
        return [not current]
    if kind in ("integer", "number"):
        c = current if isinstance(current, (int, float)) else 0
        out = [c + 1, c - 1, c * 2, c / 2, node.get("maximum"), node.get("minimum")]
        return [int(v) if kind == "integer" else float(v) for v in out if v is not None and v != c]
    if kind == "string":
        return [v for v in ("cpu", "auto", "cuda", f"{current}_changed") if v != current]
    if kind == "array":
        items = _resolve(node.get("items", {}), schema)
        cur = list(current or [])
        if "enum" in items and len(cur) > node.get("minItems", 0):
            return [cur[1:]]  # drop the first (dropping the last could change the main variant)
        out = []
        for i, v in enumerate(cur):
            for alt in _candidates(items, schema, v):
                out.append(cur[:i] + [alt] + cur[i + 1:])
        return out
    if kind == "object":
        return [{"lr": 0.0001}, {"seed": 5}]
    raise AssertionError(f"no changed value known for schema node {node}: teach tests/test_rerun_scope.py _candidates")


def changed_config(base: dict[str, Any], key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``base`` (validated, defaults filled) with ``key`` set to another value that still validates."""
    *sections, leaf = key.split(".")

    def parent(cfg: dict[str, Any]) -> dict[str, Any]:
        for part in sections:
            cfg = cfg[part]
        return cfg

    current = parent(base)[leaf]
    candidates = _candidates(_schema_node(key, schema), schema, current)
    if key == "training.seeds":  # what a user does with seeds: add one (replacing one is add + remove)
        candidates = [[*current, max(current) + 1]]
    if key == "evaluation.folds":  # 0 -> 1 is invalid (k >= 2); the tiny table has 3 paired patients
        candidates = [3]
    if key.startswith("evaluation.primary."):  # a variant is never compared with itself
        primary = base["evaluation"]["primary"]
        candidates = [v for v in candidates if v not in (primary["variant"], primary["baseline"])]
    for value in candidates:
        cfg = copy.deepcopy(base)
        parent(cfg)[leaf] = value
        try:
            validate_config(copy.deepcopy(cfg), source="probe")
        except InputError:
            continue
        if key == "training.overrides":
            from ct2mr.training.settings import resolve_training_settings

            try:
                resolve_training_settings(cfg["training"], source="probe")
            except InputError:
                continue
        return cfg
    raise AssertionError(f"{key}: no other valid value found (current {current!r})")


# --------------------------------------------------------------------------- dry runs


def parse_reasons(text: str) -> dict[str, set[str]]:
    """The "Reasons:" summary of ``snakemake -n --quiet rules``: reason -> rules ({} if nothing to do)."""
    reasons: dict[str, set[str]] = {}
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Reasons:")
    except StopIteration:
        return reasons
    heading = None
    for line in lines[start + 1:]:
        if not line.startswith("    "):
            break
        if line.startswith("        ") and heading:
            reasons[heading] |= {r.strip() for r in line.split(",") if r.strip()}
        elif line.strip().endswith(":"):
            heading = line.strip()[:-1]
            reasons[heading] = set()
    return reasons


def first_rules(reasons: dict[str, set[str]]) -> set[str]:
    """Rules planned because of a change of their own (not only because upstream reran)."""
    return set().union(*(r for k, r in reasons.items() if k not in DOWNSTREAM_REASONS)) if reasons else set()


def test_parse_reasons_known_answer() -> None:
    text = (
        "Job stats:\njob count\n---- -----\nregister 3\ntotal 4\n\nReasons:\n"
        "    (check individual jobs above for details)\n"
        "    input files updated by another job:\n        all, slices, train\n"
        "    params have changed since last execution:\n        register, train\n"
        "Some jobs were triggered by provenance information\n"
    )
    reasons = parse_reasons(text)
    assert reasons == {
        "input files updated by another job": {"all", "slices", "train"},
        "params have changed since last execution": {"register", "train"},
    }
    assert first_rules(reasons) == {"register", "train"}
    assert parse_reasons("Nothing to be done (all requested files are present and up to date).") == {}


def dry_run(workdir: Path, configfile: Path, *args: str) -> str:
    cmd = [
        *SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "-n", "--nolock",
        "--quiet", "rules", *args, "--configfile", str(configfile),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the finished tiny run, shared by the dry runs (they change nothing in it)."""
    dst = tmp_path_factory.mktemp("scope") / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    return dst


def _probe_patients(workdir: Path, base: dict[str, Any]) -> dict[str, Any]:
    """A patient table with one scan path (T4's CT) and one truth file (T1's) moved to copies."""
    extra = workdir / "moved"
    extra.mkdir(exist_ok=True)
    table = (workdir / base["patients"]).read_text()
    shutil.copy2(workdir / "results/phantom/T4/ct.nii.gz", extra / "T4_ct.nii.gz")
    shutil.copy2(workdir / "results/phantom/T1/truth.json", extra / "T1_truth.json")
    table = table.replace("results/phantom/T4/ct.nii.gz", "moved/T4_ct.nii.gz")
    table = table.replace("results/phantom/T1/truth.json", "moved/T1_truth.json")
    (workdir / "patients_moved.tsv").write_text(table)
    return {**base, "patients": "patients_moved.tsv"}


# Slow (~20 s): one Snakemake dry run per config key of the schema (every key is the point of the
# test), two at a time on the finished tiny run; nothing is executed.
@pytest.mark.slow
def test_each_config_key_reruns_exactly_its_rules(finished: Path) -> None:
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    base = validate_config(yaml.safe_load((finished / "config.yaml").read_text()), source="tiny config")
    assert not check_table(), "\n".join(check_table())
    probes: dict[str, Path] = {}
    for key in schema_leaf_keys(schema):
        cfg = _probe_patients(finished, base) if key == "patients" else changed_config(base, key, schema)
        path = finished / f"probe_{key}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        probes[key] = path
    unchanged = finished / "probe_unchanged.yaml"
    unchanged.write_text(yaml.safe_dump(base, sort_keys=False))

    in_dag = set(re.findall(r"^(\w+)\s+\d+$", dry_run(finished, unchanged, "--forceall"), re.M)) - {"total"}
    assert {"train", "register", "slices"} <= in_dag, in_dag
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = dict(zip(["", *probes], pool.map(lambda p: dry_run(finished, p), [unchanged, *probes.values()])))

    assert first_rules(parse_reasons(texts.pop(""))) == set(), "the unchanged config plans jobs"
    wrong = []
    for key, text in texts.items():
        planned = first_rules(parse_reasons(text))
        # the `folds` rule exists only under cross-validation, which the tiny run does not use
        expected = RERUN_SCOPE[key].rules & (in_dag | ({"folds"} if key == "evaluation.folds" else set()))
        if planned != expected:
            wrong.append(f"{key}: planned first {sorted(planned)}, table says {sorted(expected)}")
    assert not wrong, "rerun scope differs from src/ct2mr/pipeline/rerun_scope.py:\n" + "\n".join(wrong)


# --------------------------------------------------------------------------- --list-changes params


def test_fix_list_changes_params_iterates_only_real_changes() -> None:
    from snakemake.persistence import NO_PARAMS_CHANGE, ParamsChange

    assert fix_list_changes_params()
    unchanged = NO_PARAMS_CHANGE | ParamsChange(files={"a.txt"}) | ParamsChange(files={"b.txt"})
    assert not unchanged and list(unchanged) == []  # Snakemake 9.27.1 alone yields ["b.txt"]
    changed = unchanged | ParamsChange(only_new={"'x'"}, files={"c.txt"})
    assert changed and list(changed) == ["c.txt"]


@pytest.mark.slow
def test_list_changes_params_lists_only_changed_outputs(finished: Path) -> None:
    def list_changes(configfile: Path) -> list[str]:
        cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(finished), "--nolock",
               "--list-changes", "params", "--configfile", str(configfile)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.split()

    base = yaml.safe_load((finished / "config.yaml").read_text())
    assert list_changes(finished / "config.yaml") == []
    cfg = copy.deepcopy(base)
    cfg.setdefault("registration", {})["mi_bins"] = 48
    path = finished / "lc_mi_bins.yaml"
    path.write_text(yaml.safe_dump(cfg))
    listed = list_changes(path)
    assert listed and all(re.fullmatch(r"results/preprocessed/T[123]/\S+", f) for f in listed), listed
    assert {f.split("/")[2] for f in listed} == {"T1", "T2", "T3"}
