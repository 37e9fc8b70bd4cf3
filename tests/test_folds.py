"""k-fold cross-validation over patients (ct2mr.training.folds): the split, its table, the roles a
fold's training job gives each patient, and the leak a test patient in a training job would be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ct2mr.errors import InputError
from ct2mr.training.data import build_pools
from ct2mr.training.folds import assign_folds, fold_roles, read_folds, write_folds

IDS = [f"P{i:02d}" for i in range(13)]


def test_every_patient_in_exactly_one_fold_of_near_equal_size() -> None:
    for k in (2, 3, 5, 13):
        a = assign_folds(IDS, k, seed=0)
        assert sorted(a) == IDS
        sizes = np.bincount(list(a.values()), minlength=k)
        assert sizes.max() - sizes.min() <= 1 and sizes.min() >= 1


def test_split_depends_on_ids_k_and_seed_only() -> None:
    a = assign_folds(IDS, 5, seed=3)
    assert a == assign_folds(list(reversed(IDS)), 5, seed=3)  # order of the table does not matter
    assert a != assign_folds(IDS, 5, seed=4)
    assert a != assign_folds(IDS, 4, seed=3)


@pytest.mark.parametrize(("ids", "k", "match"), [
    (IDS, 1, "k >= 2"),
    (IDS[:3], 4, "4 folds need at least 4 paired patients"),
    (["A", "A", "B"], 2, "more than once"),
])
def test_bad_splits_are_one_line_errors(ids: list[str], k: int, match: str) -> None:
    with pytest.raises(InputError, match=match) as exc:
        assign_folds(ids, k)
    assert "evaluation.folds" in str(exc.value) and "\n" not in str(exc.value)


def test_folds_table_round_trip_and_bad_tables(tmp_path: Path) -> None:
    path = tmp_path / "folds.tsv"
    a = write_folds(path, IDS, 4, seed=2)
    assert read_folds(path) == a
    lines = path.read_text().splitlines()
    assert lines[0] == "patient\tfold\tk\tseed" and len(lines) == 14
    assert [int(line.split("\t")[1]) for line in lines[1:]] == sorted(a.values())  # rows by fold
    for text, field in [("patient\tfold\n", "header"), ("patient\tfold\tk\tseed\nP1\t4\t4\t0\n", "line 2"),
                        ("patient\tfold\tk\tseed\nP1\tx\t4\t0\n", "line 2"),
                        ("patient\tfold\tk\tseed\nP1\t0\t2\t0\nP2\t1\t3\t0\n", "k")]:
        path.write_text(text)
        with pytest.raises(InputError, match=field):
            read_folds(path)


def test_fold_roles() -> None:
    a = assign_folds(IDS, 3, seed=0)
    roles = fold_roles(a, 1)
    assert {p for p, r in roles.items() if r == "paired_test"} == {p for p, f in a.items() if f == 1}
    assert {p for p, r in roles.items() if r == "paired_train"} == {p for p, f in a.items() if f != 1}
    with pytest.raises(InputError, match="fold 3 has no patient"):
        fold_roles(a, 3)


def test_training_job_uses_the_fold_roles_and_refuses_its_test_patients(tmp_path: Path) -> None:
    """A paired_test row of the table trains in the other folds' jobs; a fold's own patient given to
    its training job is a leak (the workflow never lists it), not a file to skip."""
    from tests.test_train import make_slices

    files = [make_slices(tmp_path / f"{p}.npz", r, size=32)
             for p, r in [("A", "paired_train"), ("B", "paired_test"), ("C", "paired_test")]]
    plain = build_pools(files, 32)
    assert plain.patients["paired"] == ["A"]  # without folds: the table's roles
    roles = {"A": "paired_train", "B": "paired_train", "C": "paired_test"}
    pools = build_pools(files[:2], 32, roles=roles)
    assert pools.patients["paired"] == ["A", "B"]
    with pytest.raises(InputError, match="patient C is a test patient of this fold"):
        build_pools(files, 32, roles=roles)
