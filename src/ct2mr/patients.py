"""The patient table: one row per patient, validated before any job is planned.

Columns (TSV, header required): ``patient``, ``role``, ``ct``, ``mr`` and the
optional ``truth``. Roles:

==============  ======================================  =================
role            used for                                 needs
==============  ======================================  =================
paired_train    paired training data (CT+MR pairs)       ct and mr
paired_test     synthesis + evaluation                   ct and mr
ct_only         unpaired CT training data                ct, no mr
mr_only         unpaired MR training data                mr, no ct
==============  ======================================  =================

Image paths are a DICOM series folder, a NIfTI/MHA/NRRD file, or -- for
already registered 2D slices -- a folder of PNG files or a glob pattern of PNG
files (e.g. ``../shared/data/harvard_ctmr/CT/16???.png``); a PNG patient skips
the 3D stages and joins the chain at slice extraction. Relative paths are
relative to the project root (the Snakemake working directory).

Files under ``results/`` are outputs of the workflow itself (the phantom
cohort): they need not exist yet. Every other path must exist.
"""

from __future__ import annotations

import glob
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ct2mr.config import PATIENTS_SCHEMA, validate
from ct2mr.errors import InputError

Role = Literal["paired_train", "paired_test", "ct_only", "mr_only"]
ROLES: tuple[str, ...] = ("paired_train", "paired_test", "ct_only", "mr_only")
COLUMNS: tuple[str, ...] = ("patient", "role", "ct", "mr", "truth")
#: which images each role needs (True) or must not have (False)
NEEDS: dict[str, dict[str, bool]] = {
    "paired_train": {"ct": True, "mr": True},
    "paired_test": {"ct": True, "mr": True},
    "ct_only": {"ct": True, "mr": False},
    "mr_only": {"ct": False, "mr": True},
}
#: roles whose slices train the networks (paired_test is held out); defined in ct2mr.roles
from ct2mr.roles import TRAIN_ROLES  # noqa: E402  (re-exported)
GENERATED_PREFIX = "results/"


@dataclass(frozen=True)
class Patient:
    """One validated row of the patient table."""

    patient: str
    role: str
    ct: str | None
    mr: str | None
    truth: str | None = None

    @property
    def is_png(self) -> bool:
        """True when this patient's images are 2D PNG slices (the 3D stages are skipped)."""
        return any(p is not None and is_png_source(p) for p in (self.ct, self.mr))

    @property
    def has_ct(self) -> bool:
        return self.ct is not None

    @property
    def has_mr(self) -> bool:
        return self.mr is not None


def is_png_source(path: str) -> bool:
    """A glob pattern, a ``.png`` file or a folder holding PNG files."""
    if any(ch in path for ch in "*?["):
        return True
    p = Path(path)
    if p.suffix.lower() == ".png":
        return True
    return p.is_dir() and any(p.glob("*.png"))


def _exists(path: str) -> bool:
    if any(ch in path for ch in "*?["):
        return bool(glob.glob(path))
    return Path(path).exists()


def _table_lines(table: Path) -> tuple[str, list[int]]:
    """The table's text without comment lines (first non-blank character ``#``) and blank
    lines, and the 1-based file line of each kept line (for error messages). A ``#``
    inside a cell (a path) is data, not a comment."""
    try:
        text = table.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(table, None, f"not a UTF-8 text table ({exc})") from None
    kept = [(i, line) for i, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join(line for _, line in kept) + "\n", [i for i, _ in kept]


def load_patients(table: str | Path, check_files: bool = True) -> list[Patient]:
    """Read and validate the patient table.

    Raises :class:`InputError` naming the table, the row/column and the problem:
    missing columns, unknown columns, bad ids (``/``, ``..``), duplicate ids,
    unknown roles, images missing for a role or present where the role has none,
    and files that do not exist (outside ``results/``).
    """
    table = Path(table)
    if not table.is_file():
        raise InputError(table, None, "patient table not found")
    text, file_lines = _table_lines(table)
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(table, None, f"not a readable TSV table ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("patient", "role", "ct", "mr") if c not in df.columns]
    if missing:
        raise InputError(table, "header", f"missing column(s) {missing}; expected {list(COLUMNS)}")
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise InputError(table, "header", f"unknown column(s) {unknown}; expected {list(COLUMNS)}")
    if df.empty:
        raise InputError(table, None, "no patients listed")

    patients: list[Patient] = []
    seen: dict[str, int] = {}
    for i, raw in zip(file_lines[1:], df.to_dict("records"), strict=True):
        row = {k: v.strip() for k, v in raw.items() if v.strip()}
        where = f"line {i}" + (f" (patient {row['patient']!r})" if "patient" in row else "")
        validate(row, PATIENTS_SCHEMA, f"{table}: {where}")
        pid = row["patient"]
        if pid in seen:
            raise InputError(table, where, f"duplicate patient id {pid!r} (first on line {seen[pid]})")
        seen[pid] = i
        role = row["role"]
        for col, needed in NEEDS[role].items():
            if needed and col not in row:
                raise InputError(table, f"{where}, column {col}", f"role {role} needs a {col.upper()} image")
            if not needed and col in row:
                raise InputError(
                    table, f"{where}, column {col}",
                    f"role {role} has no {col.upper()}; leave the cell empty (got {row[col]!r})",
                )
        if check_files:
            for col in ("ct", "mr", "truth"):
                path = row.get(col)
                if path and not path.startswith(GENERATED_PREFIX) and not _exists(path):
                    raise InputError(table, f"{where}, column {col}", f"file not found: {path}")
        patients.append(Patient(pid, role, row.get("ct"), row.get("mr"), row.get("truth")))
    return patients
