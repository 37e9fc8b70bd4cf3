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
table's rules (restricted to the rules the tiny DAG has).

A key that changes in several ways lists each way in the table (``Scope.changes``), and
each is probed: the patient table (a moved CT, MR, truth file, PNG pair or pool; a changed
role; an added pool row) on a tiny cohort extended by a PNG pair and a pool row, so that
every kind of row is in the DAG; ``training.variants`` and ``training.seeds`` added and
removed (the starting point of an added variant / a removed seed is made on its own copy:
the variant's files deleted, or a second seed's made from the first's, then ``--touch``).
The probed ways must be exactly the table's.

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

import numpy as np
import pytest
import yaml

from ct2mr.cohort.config import validate_config
from ct2mr.cohort.schema import CONFIG_SCHEMA
from ct2mr.errors import InputError
from ct2mr.pipeline.rerun_scope import RERUN_SCOPE, check_table, schema_leaf_keys
from ct2mr.pipeline.snakemake_patches import fix_list_changes_params
from tests.workflow_helpers import REPO, SNAKEFILE, SNAKEMAKE, snakemake

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


def _heads(folder: Path, names: list[str], shape: tuple[int, int], seed: int) -> None:
    """2D head-like images (an ellipse of random grey levels on black) as 8-bit PNG files."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    head = ((yy - h / 2) / (0.4 * h)) ** 2 + ((xx - w / 2) / (0.35 * w)) ** 2 <= 1
    for name in names:
        a = np.zeros(shape, np.uint8)
        a[head] = rng.integers(60, 250, int(head.sum()))
        Image.fromarray(a).save(folder / name)


#: rows the tiny cohort lacks, added so that every kind of row is probed: a registered 2D PNG pair
#: (rule slices_png) and an unpaired 2D pool (rule slices_pool)
EXTRA_ROWS = "PNG1\tpaired_train\tpng/PNG1/CT\tpng/PNG1/MR\t\nPOOL1\tmr_only\t\tpool/POOL1\t\n"


@pytest.fixture(scope="module")
def finished(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished tiny run whose cohort also has a PNG pair and a pool row, brought up to
    date: their slices made for real, every job downstream marked done (``--touch``, which records
    its metadata as a run would). Shared by the dry runs (they change nothing in it)."""
    dst = tmp_path_factory.mktemp("scope") / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    _heads(dst / "png/PNG1/CT", ["1.png", "2.png", "3.png"], (64, 64), 1)
    _heads(dst / "png/PNG1/MR", ["1.png", "2.png", "3.png"], (64, 64), 2)
    _heads(dst / "pool/POOL1", ["a.png", "b.png"], (80, 60), 3)
    with open(dst / "patients.tsv", "a", encoding="utf-8") as fh:
        fh.write(EXTRA_ROWS)
    snakemake(dst, "results/slices/PNG1.npz", "results/slices/POOL1.npz", "--cores", "2")
    snakemake(dst, "--touch", "--cores", "1")
    return dst


def _moved(workdir: Path, src: str, name: str) -> str:
    """A copy of ``src`` (file or folder, relative to ``workdir``) under moved/; its new relative path."""
    dst = workdir / "moved" / name
    dst.parent.mkdir(exist_ok=True)
    if not dst.exists():
        (shutil.copytree if (workdir / src).is_dir() else shutil.copy2)(workdir / src, dst)
    return f"moved/{name}"


def _replace(table: str, old: str, new: str) -> str:
    assert old in table, old
    return table.replace(old, new)


def _set_role(table: str, patient: str, role: str) -> str:
    rows = [r.split("\t") for r in table.splitlines()]
    for r in rows:
        if r[0] == patient:
            r[1] = role
    return "\n".join("\t".join(r) for r in rows) + "\n"


#: every way a patient-table change reaches the workflow -> the table it makes from the finished one
#: (the names are those of RERUN_SCOPE["patients"].changes)
PATIENT_CHANGES = {
    "a CT path": lambda wd, t: _replace(t, "results/phantom/T4/ct.nii.gz", _moved(wd, "results/phantom/T4/ct.nii.gz",
                                                                                 "T4_ct.nii.gz")),
    "an MR path": lambda wd, t: _replace(t, "results/phantom/T2/mr.nii.gz", _moved(wd, "results/phantom/T2/mr.nii.gz",
                                                                                  "T2_mr.nii.gz")),
    "a truth file": lambda wd, t: _replace(t, "results/phantom/T1/truth.json", _moved(wd, "results/phantom/T1/truth.json",
                                                                                     "T1_truth.json")),
    "a role": lambda wd, t: _set_role(t, "T1", "paired_val"),
    "a PNG pair's path": lambda wd, t: _replace(t, "png/PNG1/CT", _moved(wd, "png/PNG1/CT", "PNG1_CT")),
    "a pool's path": lambda wd, t: _replace(t, "pool/POOL1", _moved(wd, "pool/POOL1", "POOL1")),
    "an added pool row": lambda wd, t: t + f"POOL2\tct_only\t{_moved(wd, 'pool/POOL1', 'POOL2')}\t\t\n",
}


def _mutating_probe(finished: Path, base: dict[str, Any], key: str, change: str) -> str:
    """The dry run of a change whose starting point is not the finished run itself (a variant added,
    a seed removed), on its own copy: the copy is first brought to the starting point (files of the
    variant deleted / of a second seed made from the first's, then ``--touch`` under that config)."""
    work = finished.parent / f"mutating_{key}_{change}".replace(" ", "_")
    shutil.copytree(finished, work, symlinks=True)
    start, probe = copy.deepcopy(base), copy.deepcopy(base)
    if (key, change) == ("training.variants", "added"):
        gone = base["training"]["variants"][0]  # (the last could be the main variant)
        start["training"]["variants"] = base["training"]["variants"][1:]
        for f in sorted((work / "results").rglob("*"), reverse=True):
            if gone in f.relative_to(work / "results").parts[:-1] or gone in re.split(r"[_.]", f.name):
                if f.is_dir():
                    shutil.rmtree(f)
                elif f.exists():
                    f.unlink()
    elif (key, change) == ("training.seeds", "removed"):
        seeds = base["training"]["seeds"]
        new = max(seeds) + 1
        start["training"]["seeds"] = [*seeds, new]
        for f in sorted((work / "results").rglob(f"*seed{seeds[0]}*")):
            target = f.with_name(f.name.replace(f"seed{seeds[0]}", f"seed{new}"))
            if f.is_dir() and not target.exists():
                shutil.copytree(f, target)
            elif f.is_file() and not target.exists():
                shutil.copy2(f, target)
    else:
        raise AssertionError(f"no starting point known for {key}: {change}")
    (work / "config.yaml").write_text(yaml.safe_dump(start, sort_keys=False))  # the copy's own config
    (work / "probe.yaml").write_text(yaml.safe_dump(probe, sort_keys=False))
    snakemake(work, "--touch", "--cores", "1")
    return dry_run(work, work / "probe.yaml")


#: changes probed from another starting point than the finished run (see _mutating_probe)
MUTATING = {("training.variants", "added"), ("training.seeds", "removed")}


def _change_config(finished: Path, base: dict[str, Any], key: str, change: str,
                   schema: dict[str, Any]) -> dict[str, Any]:
    """The config of a probe on the finished run: one change of ``key`` (a named kind of change)."""
    if key == "patients":
        table = PATIENT_CHANGES[change](finished, (finished / base["patients"]).read_text())
        name = "patients_" + re.sub(r"\W+", "_", change) + ".tsv"
        (finished / name).write_text(table)
        return {**base, "patients": name}
    if (key, change) == ("training.variants", "removed"):
        cfg = copy.deepcopy(base)
        cfg["training"]["variants"] = base["training"]["variants"][1:]
        return cfg
    if (key, change) == ("training.seeds", "added"):
        return changed_config(base, key, schema)
    raise AssertionError(f"no probe for {key}: {change} (tests/test_rerun_scope.py)")


def test_every_change_of_the_table_is_probed() -> None:
    """The kinds of change the table lists for a key are exactly the ones this test probes."""
    listed = {(k, c.change) for k, s in RERUN_SCOPE.items() for c in s.changes}
    probed = {("patients", c) for c in PATIENT_CHANGES} | {
        ("training.variants", "removed"), ("training.variants", "added"),
        ("training.seeds", "added"), ("training.seeds", "removed")}
    assert listed == probed
    for key, scope in RERUN_SCOPE.items():
        if scope.changes:
            assert scope.rules == frozenset().union(*(c.rules for c in scope.changes)), key


# Slow (~50 s): one Snakemake dry run per config key of the schema, and per kind of change for the keys
# that change in several ways (every key and every way is the point of the test), two at a time on the
# finished tiny run; nothing is executed but the starting points of two changes (--touch).
@pytest.mark.slow
def test_each_config_key_reruns_exactly_its_rules(finished: Path) -> None:
    schema = yaml.safe_load(CONFIG_SCHEMA.read_text())
    base = validate_config(yaml.safe_load((finished / "config.yaml").read_text()), source="tiny config")
    assert not check_table(), "\n".join(check_table())
    probes: dict[tuple[str, str], Path] = {}
    for key in schema_leaf_keys(schema):
        for change in [c.change for c in RERUN_SCOPE[key].changes] or [""]:
            if (key, change) in MUTATING:
                continue
            cfg = _change_config(finished, base, key, change, schema) if change else changed_config(base, key, schema)
            path = finished / ("probe_" + re.sub(r"\W+", "_", f"{key}_{change}") + ".yaml")
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            probes[key, change] = path
    unchanged = finished / "probe_unchanged.yaml"
    unchanged.write_text(yaml.safe_dump(base, sort_keys=False))

    in_dag = set(re.findall(r"^(\w+)\s+\d+$", dry_run(finished, unchanged, "--forceall"), re.M)) - {"total"}
    assert {"train", "register", "slices", "slices_png", "slices_pool", "slices_ct", "slices_mr"} <= in_dag, in_dag
    with ThreadPoolExecutor(max_workers=2) as pool:
        mutating = {kc: pool.submit(_mutating_probe, finished, base, *kc) for kc in sorted(MUTATING)}
        texts = dict(zip([("", ""), *probes], pool.map(lambda p: dry_run(finished, p), [unchanged, *probes.values()])))
        texts.update({kc: f.result() for kc, f in mutating.items()})

    assert first_rules(parse_reasons(texts.pop(("", "")))) == set(), "the unchanged config plans jobs"
    wrong = []
    for (key, change), text in texts.items():
        planned = first_rules(parse_reasons(text))
        scope = next((c for c in RERUN_SCOPE[key].changes if c.change == change), RERUN_SCOPE[key])
        # the `folds` rule exists only under cross-validation, which the tiny run does not use
        expected = scope.rules & (in_dag | ({"folds"} if key == "evaluation.folds" else set()))
        if planned != expected:
            wrong.append(f"{key}{': ' + change if change else ''}: planned first {sorted(planned)}, "
                         f"table says {sorted(expected)}")
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
