"""k-fold cross-validation over patients: which paired patients each fold's models never see.

With ``evaluation.folds: k`` (k >= 2; 0, the default, keeps the patient table's own
``paired_train`` / ``paired_test`` split), the paired patients (roles ``paired_train`` and
``paired_test`` together) are split into k folds, as nnU-Net does by default: fold f's
models train on the paired patients of every other fold (plus the unpaired pools:
``ct_only`` / ``mr_only`` rows, which are never test patients) and are tested on the
patients of fold f. Every paired patient is thus a test patient exactly once, and its
synthetic MR always comes from models that never saw it. ``paired_val`` patients stay
out of the folds (scored during training, never trained on nor tested).

The split (:func:`assign_folds`) is a seeded permutation of the sorted patient ids,
dealt round-robin into the folds, so fold sizes differ by at most one and the split
depends on nothing but the patient ids, k and the seed. It is recorded in
``results/metrics/folds.tsv`` (:func:`write_folds`; columns :data:`COLUMNS`), which the
training jobs read to know their test patients (:func:`fold_roles`) and the evaluation
reads to put each patient's fold in ``per_patient.tsv``.

Standard library + numpy only (the training modules run on a GPU machine without
pandas' optional readers or the cohort package).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_text

#: columns of folds.tsv
COLUMNS = ("patient", "fold", "k", "seed")
#: the role a fold's own paired patients get in its training job (never trained on)
TEST_ROLE = "paired_test"
#: the role the other folds' paired patients get (trained on)
TRAIN_ROLE = "paired_train"
#: the table roles whose patients are split into folds
CV_ROLES = ("paired_train", "paired_test")


def assign_folds(patients: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """Patient id -> fold (0 .. k-1): a seeded permutation of the sorted ids, dealt round-robin.

    Deterministic for the same set of ids (their order does not matter), ``k`` and ``seed``.
    Raises :class:`InputError` when ``k`` < 2, when there are fewer patients than folds
    (a fold would have no test patient) or when an id repeats.
    """
    ids = sorted(patients)
    if len(set(ids)) != len(ids):
        dup = sorted({p for p in ids if ids.count(p) > 1})
        raise InputError(None, "evaluation.folds", f"patient id(s) {dup} appear more than once")
    if k < 2:
        raise InputError(None, "evaluation.folds", f"k-fold cross-validation needs k >= 2 (0 turns it off), got {k}")
    if len(ids) < k:
        raise InputError(None, "evaluation.folds",
                         f"{k} folds need at least {k} paired patients (paired_train + paired_test), "
                         f"the patient table has {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[j]: i % k for i, j in enumerate(order)}


def folds_tsv(assignment: Mapping[str, int], k: int, seed: int) -> str:
    """The text of folds.tsv: header, then one row per patient sorted by fold, then patient."""
    rows = sorted(assignment.items(), key=lambda kv: (kv[1], kv[0]))
    return "\t".join(COLUMNS) + "\n" + "".join(f"{p}\t{f}\t{k}\t{seed}\n" for p, f in rows)


def write_folds(dest: str | os.PathLike[str], patients: Sequence[str], k: int, seed: int = 0,
                log: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Assign the folds (:func:`assign_folds`) and write them to ``dest`` atomically; returns the assignment.

    ``log``: also write one line saying how many patients went into how many folds (the rule's log).
    """
    assignment = assign_folds(patients, k, seed)
    write_text(dest, folds_tsv(assignment, k, seed))
    if log is not None:
        sizes = [sum(1 for f in assignment.values() if f == i) for i in range(k)]
        write_text(log, f"{len(assignment)} paired patients in {k} folds of {sizes} patients (seed {seed})\n")
    return assignment


def read_folds(path: str | os.PathLike[str]) -> dict[str, int]:
    """Patient id -> fold from a folds.tsv; :class:`InputError` naming the file, row and problem."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"cannot read the folds table: {exc}") from exc
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise InputError(path, "header", f"expected the columns {' '.join(COLUMNS)} (tab separated)")
    out: dict[str, int] = {}
    ks = set()
    for i, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(COLUMNS) or not all(c.strip() for c in cells):
            raise InputError(path, f"line {i}", f"expected {len(COLUMNS)} non-empty tab-separated cells")
        patient, fold, k, _ = cells
        try:
            f, kk = int(fold), int(k)
        except ValueError as exc:
            raise InputError(path, f"line {i}", f"fold and k must be integers, got {fold!r}, {k!r}") from exc
        if not 0 <= f < kk:
            raise InputError(path, f"line {i}", f"fold {f} outside 0..{kk - 1}")
        if patient in out:
            raise InputError(path, f"line {i}", f"patient {patient} appears more than once")
        out[patient] = f
        ks.add(kk)
    if len(ks) > 1:
        raise InputError(path, "k", f"rows disagree on the number of folds: {sorted(ks)}")
    return out


def fold_roles(assignment: Mapping[str, int], fold: int) -> dict[str, str]:
    """Role of each cross-validated patient in fold ``fold``'s training job: its own patients
    are :data:`TEST_ROLE` (never trained on), every other fold's :data:`TRAIN_ROLE`."""
    if fold not in set(assignment.values()):
        raise InputError(None, "--fold", f"fold {fold} has no patient (folds: {sorted(set(assignment.values()))})")
    return {p: TEST_ROLE if f == fold else TRAIN_ROLE for p, f in assignment.items()}
