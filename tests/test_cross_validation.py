"""k-fold cross-validation as a DAG dimension (evaluation.folds), on a copy of the tiny run:
every paired patient tested once by models that never saw it, the fold in the tables, nothing
upstream of training rerun, and what a change of k reruns."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from ct2mr.training.folds import read_folds
from tests.workflow_helpers import snakemake, write_config


def _lists(out: str) -> dict[str, list[str]]:
    lists = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        m = re.search(r"wildcards: name=(\w+)", block)
        if block.startswith(("rule file_list:", "localrule file_list:")) and m:
            lists[m.group(1)] = re.search(r"^\s+input: (.*)$", block, re.M).group(1).split(", ")
    return lists


def test_three_folds_on_the_tiny_cohort(tiny_run: Path, tmp_path: Path) -> None:
    work = tmp_path / "run"
    shutil.copytree(tiny_run, work, symlinks=True)
    slices_before = {p: p.stat().st_mtime_ns for p in (work / "results" / "slices").glob("*.npz")}
    write_config(work, training={"variants": ["paired", "mrgan"]}, evaluation={"folds": 3, "fold_seed": 0})

    plan = snakemake(work, "-n", "-p", "results/metrics/comparisons.tsv").stdout
    folds_plan = re.findall(r"--out-dir results/models/(\w+)/fold(\d)/seed0 ", plan)
    assert sorted(folds_plan) == sorted((v, str(f)) for v in ("paired", "mrgan") for f in range(3))
    lists = _lists(plan)
    # the tiny table: T1, T2 paired_train, T3 paired_test, T4 ct_only, T5 mr_only
    for f in range(3):
        paired = lists[f"train_paired_fold{f}"]
        assert len(paired) == 2  # the other two folds' patients, whatever their table role
        mrgan = lists[f"train_mrgan_fold{f}"]
        assert {"results/slices/T4.npz", "results/slices/T5.npz"} <= set(mrgan)  # the pools in every fold
    assert sorted(lists["test_slices"]) == [f"results/slices/T{i}.npz" for i in (1, 2, 3)]

    snakemake(work, "--cores", "2", "results/metrics/comparisons.tsv")
    folds = read_folds(work / "results" / "metrics" / "folds.tsv")
    assert sorted(folds) == ["T1", "T2", "T3"] and sorted(folds.values()) == [0, 1, 2]
    for f in range(3):  # a fold's list never holds its own test patient
        listed = (work / "results" / "lists" / f"train_mrgan_fold{f}.txt").read_text().split()
        own = [p for p, g in folds.items() if g == f]
        assert not {f"results/slices/{p}.npz" for p in own} & set(listed)
    per = pd.read_csv(work / "results" / "metrics" / "per_patient.tsv", sep="\t")
    assert set(per["patient"]) == {"T1", "T2", "T3"}
    assert {(r.patient, r.fold) for r in per.itertuples()} == set(folds.items())
    synth_log = (work / "results" / "logs" / "synthesize" / "mrgan_seed0_T1.log")
    assert synth_log.is_file()
    comp = pd.read_csv(work / "results" / "metrics" / "comparisons.tsv", sep="\t")
    primary = comp[comp["role"] == "primary"].iloc[0]
    assert (primary["metric"], primary["variant"], primary["baseline"]) == ("mae_head", "mrgan", "paired")
    assert primary["n_patients"] == 3 and primary["min_attainable_p"] == 0.25
    assert primary["decision"].startswith("undecided: with 3 test patients the smallest attainable p is 0.25")
    # nothing upstream of training ran again
    assert {p: p.stat().st_mtime_ns for p in (work / "results" / "slices").glob("*.npz")} == slices_before

    # changing k: the split, the lists and every fold's training, nothing upstream
    write_config(work, evaluation={"folds": 2})
    out = snakemake(work, "results/metrics/comparisons.tsv", "-n", "--quiet", "rules").stdout
    planned = set(re.findall(r"^(\w+)\s+\d+$", out.split("Job stats:")[1].split("total")[0], re.M))
    assert {"folds", "file_list", "train"} <= planned
    assert not planned & {"prepare_ct", "prepare_mr", "register", "slices", "slices_ct", "slices_mr"}
