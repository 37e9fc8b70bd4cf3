"""Rerun scope: for every config key, the workflow rules a change of it reruns first.

One table, :data:`RERUN_SCOPE`, keyed by the dotted leaf keys of
``workflow/schemas/config.schema.yaml`` (an object with ``properties`` is walked
into; anything else, arrays and free-form objects such as
``training.overrides`` included, is a leaf). For each key it names the rules whose
jobs Snakemake reruns *because of the change itself* (a changed ``params:`` value
or a changed set of input files); the jobs downstream of them rerun in turn
because their inputs were rewritten, and are not listed (nor is a rule whose own
param changes too but that is downstream of a listed one: Snakemake reports only
the upstream reason for it). An empty set means the
key changes no result (a device choice, a resource request), with the reason.

How a key reaches its rules: through a ``params:`` value computed from the config
alone (never from ``input``/``output``: Snakemake does not record derived params,
so a change of those would plan nothing), or through the input files it selects.
Keys that must not rerun anything reach the command through an untracked param
(``untracked()`` in workflow/rules/common.smk: a function of ``input``, which
Snakemake does not record) or through ``resources:``.

``tests/test_rerun_scope.py`` checks the table against the schema (every leaf key
has an entry, no entry without a key) and against Snakemake itself (each key
changed on a finished tiny run plans exactly its rules first; a key that changes in
several ways, :class:`Change`, is probed once per way, on a cohort with every kind of row). README.md's
"Rerunning only what changed" table is :func:`markdown_table` (checked by
``tests/test_docs.py``). A new config key needs an entry here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ct2mr.cohort.schema import CONFIG_SCHEMA

PHANTOM_RULES = frozenset({"phantom_volume", "phantom_dicom", "phantom_truth"})


@dataclass(frozen=True)
class Change:
    """One kind of change of a key that can change in several ways (a patient table: a moved CT, a
    changed role, ...; a list: an item added or removed) and the rules that change reruns first."""

    change: str
    rules: frozenset[str]
    how: str


@dataclass(frozen=True)
class Scope:
    """The rules a config key reruns first (empty: none) and how it reaches them / why not. A key
    that changes in several ways lists each in ``changes`` (each probed by the test); ``rules`` is
    then their union."""

    rules: frozenset[str]
    how: str
    changes: tuple[Change, ...] = ()


def _s(rules: set[str] | frozenset[str], how: str) -> Scope:
    return Scope(frozenset(rules), how)


def _by_change(how: str, *changes: tuple[str, set[str], str]) -> Scope:
    """The scope of a key that changes in several ways: (change, rules, how) per way."""
    cs = tuple(Change(c, frozenset(r), h) for c, r, h in changes)
    return Scope(frozenset().union(*(c.rules for c in cs)), how, cs)


#: dotted schema leaf key -> the rules it reruns first
RERUN_SCOPE: dict[str, Scope] = {
    "patients": _by_change(
        "the table's files are inputs of the jobs of that patient; its role is a param",
        ("a CT path", {"prepare_ct"}, "the raw CT is the input of `prepare_ct` of that scan"),
        ("an MR path", {"prepare_mr"}, "the raw MR is the input of `prepare_mr` of that scan"),
        ("a truth file", {"register"}, "the true affine (JSON) is an input of `register` (its TRE)"),
        ("a role", {"slices", "file_list"},
         "the `role` param of the patient's `slices` job (written into its slice file), and the patient moves "
         "between the file lists (`file_list`) that `train` and the evaluation read"),
        ("a PNG pair's path", {"slices_png"}, "the images are the inputs of `slices_png`"),
        ("a pool's path", {"slices_pool"}, "the images are the inputs of `slices_pool`"),
        ("an added pool row", {"slices_pool", "file_list"},
         "its new `slices_pool` job, and the training slice lists (`file_list`) of the variants that learn from "
         "unpaired images"),
    ),
    **{
        f"phantom.{k}": _s(PHANTOM_RULES, "param `args` of the phantom rules (each file depends on all of them)")
        for k in ("seed", "ct_spacing_mm", "mr_spacing_mm", "fov_mm", "max_rotation_deg", "max_translation_mm", "max_scale")
    },
    "resample.spacing_mm": _s({"prepare_ct", "prepare_mr"}, "param `spacing` (resampling is stage 2 of these jobs)"),
    "skull_mask.ct_skull_threshold_hu": _s({"prepare_ct"}, "param `skull` (skull masking is stage 3 of the job)"),
    "skull_mask.ct_head_threshold_hu": _s({"prepare_ct"}, "param `head`"),
    "skull_mask.mr_brain_erosion_mm": _s({"prepare_mr"}, "param `erosion`"),
    "skull_mask.mr_method": _s({"prepare_mr"}, "param `method` (auto | deepbet | morphology)"),
    **{
        f"registration.{k}": _s({"register"}, "param `args`")
        for k in ("backend", "mi_bins", "sampling_fraction", "iterations", "shrink_factors", "seed")
    },
    "window.ct_width_hu": _s({"slices", "slices_ct"}, "param `window` (the window is stage 1 of these jobs)"),
    "window.ct_level_hu": _s({"slices", "slices_ct"}, "param `window`"),
    "window.mr_percentiles": _s({"slices", "slices_mr"}, "param `window` (MR normalisation is stage 1 of these jobs)"),
    "slices.size": _s({"slices", "slices_ct", "slices_mr", "slices_png", "slices_pool"}, "param `size`"),
    "slices.min_brain_voxels": _s({"slices", "slices_ct", "slices_mr"}, "param `min_voxels`"),
    "slices.min_slices": _s({"slices", "slices_ct", "slices_mr"}, "param `min_slices`"),
    "training.preset": _s({"train"}, "param `settings` (the resolved training settings)"),
    "training.variants": _by_change(
        "which models exist",
        ("removed", {"evaluate", "fig_patient", "fig_losses", "fig_tissues"},
         "a removed variant changes the inputs of the evaluation and the figures (`fig_patient`: Figures 5-7 of a "
         "test patient; `fig_tissues`; and the `columns` param of `metric_tables`, downstream of `evaluate`)"),
        ("added", {"train", "synthesize", "evaluate_volume", "file_list", "evaluate", "fig_patient", "fig_losses",
                   "fig_tissues", "fig_difference"},
         "its new jobs: `train`, the synthesis of the test patients (`synthesize`, or `synthesize_cycle` for "
         "unpaired/mrgan), their 3D evaluation (`evaluate_volume`), its lists (`file_list`) and difference map "
         "(`fig_difference`); and the changed params or inputs of `evaluate`, `fig_patient`, `fig_losses` and "
         "`fig_tissues`"),
    ),
    "training.device": _s(
        set(),
        "a device choice: the weights' settings hash leaves it out (a run may resume on another "
        "device); reaches `train` through the untracked param `run_settings`",
    ),
    "training.gpus": _s(set(), "a scheduling resource (`gpu`) of `train`, not a setting"),
    "training.seeds": _by_change(
        "one model per seed (results/models/{variant}/seed{seed}/); a kept seed's models are untouched "
        "(Figures 5-7 show the lowest seed: changing it reruns them)",
        ("added", {"train", "synthesize", "synthesize_cycle", "file_list", "fig_losses", "evaluate_volume"},
         "an added seed adds its `train`, synthesis and 3D evaluation (`evaluate_volume`) jobs, the synthesized "
         "files of the lists (`file_list`) that the evaluation and the difference figures read, and the loss "
         "figure's inputs"),
        ("removed", {"file_list", "fig_losses"},
         "the lists of synthesized files (`file_list`) lose the seed's, so everything that reads them reruns "
         "(the evaluation, the difference maps), and the loss figure's inputs (`fig_losses`); no model is retrained"),
    ),
    "training.unpaired_includes_paired": _s(
        {"train", "file_list"}, "param `settings` of `train` and the files of its slice list (`file_list`)"
    ),
    "training.overrides": _s(
        {"train"},
        "param `settings` (any preset field; device, num_threads, compile, log_every and "
        "checkpoint_every are left out: they do not change the weights)",
    ),
    "synthesis.device": _s(set(), "a device choice; the untracked param `device` of the synthesis rules"),
    "synthesis.batch_size": _s(
        {"synthesize", "synthesize_cycle"},
        "param `batch`: the batch size changes float rounding in the convolutions (measured on "
        "the tiny model: batch 1 vs 8 differ by 1 grey level in 16 of 720896 voxels), so a "
        "change reruns synthesis to keep results exactly reproducible",
    ),
    "synthesis.tta": _s({"synthesize", "synthesize_cycle"}, "param `tta` (horizontal-flip test-time augmentation)"),
    "evaluation.data_range": _s(
        {"evaluate_volume"},
        "param `data_range` of `evaluate_volume` and of `evaluate`, which is downstream of it (its volume tables "
        "are rewritten)",
    ),
    "evaluation.segmentation.enabled": _s(
        {"evaluate_volume"}, "param `settings` of `evaluate_volume` (off: empty; `segment_real` is no longer planned)"
    ),
    **{
        f"evaluation.segmentation.{k}": _s(
            {"segment_real"},
            "param `settings` of `segment_real` and of `evaluate_volume`, which is downstream of it",
        )
        for k in ("contrast", "iterations", "mrf_smoothing", "mrf_radius", "downsample")
    },
    "evaluation.folds": _s(
        {"folds", "file_list", "train", "synthesize", "synthesize_cycle", "fig_patient", "fig_losses", "segment_real",
         "evaluate_volume", "fig_tissues"},
        "k-fold cross-validation (0: the table's split). Checked: 0 -> 3 on the tiny cohort plans the split "
        "(`folds`), one training list and model per fold (`file_list`, `train`: "
        "results/models/{variant}/fold{fold}/seed{seed}/), synthesis of every paired patient by its own fold's "
        "models (`synthesize`, `synthesize_cycle`: the former test patient's model changed, the others are new), "
        "Figures 5-7 and the 3D evaluation of the new test patients (`fig_patient`, `segment_real`, "
        "`evaluate_volume`; the tissue figure shows the first of them: `fig_tissues`) and the loss figure's "
        "inputs (`fig_losses`); "
        "preprocessing is untouched. Changing k rewrites the split and retrains every fold "
        "(tests/test_cross_validation.py)",
    ),
    "evaluation.fold_seed": _s(
        set(),
        "nothing while evaluation.folds is 0 (the default, which the test checks); under cross-validation it "
        "is the `folds` rule's param `seed`: a new split, so every fold retrains",
    ),
    "evaluation.primary.metric": _s({"compare"}, "param `primary` (the comparison tested at 0.05)"),
    "evaluation.primary.variant": _s(
        {"compare", "fig_difference"},
        "param `primary` of `compare` (and its `variant`); the difference maps are drawn for this variant",
    ),
    "evaluation.primary.baseline": _s({"compare"}, "param `primary`"),
}


def schema_leaf_keys(schema: Mapping[str, Any] | None = None) -> list[str]:
    """Dotted leaf keys of the config schema (default: ``workflow/schemas/config.schema.yaml``), in schema order."""
    if schema is None:
        schema = yaml.safe_load(CONFIG_SCHEMA.read_text(encoding="utf-8"))

    def walk(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
        for name, sub in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            if isinstance(sub, Mapping) and sub.get("properties"):
                yield from walk(sub, key + ".")
            else:
                yield key

    return list(walk(schema, ""))


def check_table(keys: list[str] | None = None) -> list[str]:
    """Problems of :data:`RERUN_SCOPE` against the schema's leaf keys ([] when they match)."""
    keys = schema_leaf_keys() if keys is None else keys
    problems = [
        f"config key {k!r} has no entry in RERUN_SCOPE (src/ct2mr/pipeline/rerun_scope.py): add the rules whose "
        f"params or inputs it changes, or an empty set with the reason it changes no result"
        for k in keys
        if k not in RERUN_SCOPE
    ]
    problems += [
        f"RERUN_SCOPE (src/ct2mr/pipeline/rerun_scope.py) has an entry {k!r} that is not a leaf key of the config schema"
        for k in RERUN_SCOPE
        if k not in keys
    ]
    return problems


def markdown_table() -> str:
    """The README's rerun table: key, rules rerun first, how (one row per leaf key, schema order;
    a key that changes in several ways: one row per way)."""
    lines = ["| config key | reruns first (then everything downstream) | how |", "|---|---|---|"]
    for key in schema_leaf_keys():
        scope = RERUN_SCOPE.get(key)
        if scope is None:
            continue
        for label, rules, how in [(f"`{key}`: {c.change}", c.rules, c.how) for c in scope.changes] or [
            (f"`{key}`", scope.rules, scope.how)
        ]:
            names = ", ".join(f"`{r}`" for r in sorted(rules)) or "nothing"
            lines.append(f"| {label} | {names} | {how} |")
    return "\n".join(lines)
