"""The patient table: one row per patient, validated before any job is planned.

Columns (TSV, header required): ``patient``, ``role``, ``ct``, ``mr`` and the
optional ``truth``, ``series`` and ``mr_series``. ``series`` / ``mr_series`` choose
the series of a DICOM folder given as ``ct`` / ``mr`` (a SeriesInstanceUID, a
SeriesNumber or a SeriesDescription substring; empty = the automatic rule of
:mod:`ct2mr.io.dicom_series`). Roles:

==============  ======================================  =================
role            used for                                 needs
==============  ======================================  =================
paired_train    paired training data (CT+MR pairs)       ct and mr
paired_test     synthesis + evaluation                   ct and mr
paired_val      validation MAE during training only      ct and mr
ct_only         unpaired CT training data                ct, no mr
mr_only         unpaired MR training data                mr, no ct
==============  ======================================  =================

Image paths are a DICOM series folder, a NIfTI/MHA/NRRD file, or -- for
already registered 2D slices -- a folder of PNG files or a glob pattern of PNG
files (e.g. ``../shared/data/harvard_ctmr/CT/16???.png``); a PNG patient skips
the 3D stages and joins the chain at slice extraction. A ``ct_only`` /
``mr_only`` row naming 2D images (PNG or JPEG, a folder or a glob) is a
**pool**: images of any size, each its own slice (:mod:`ct2mr.preprocess.image_pools`).
Relative paths are relative to the project root (the Snakemake working directory).

Files under ``results/`` are outputs of the workflow itself (the phantom
cohort): they need not exist yet. Every other path must exist.
"""

from __future__ import annotations

import csv
import glob
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ct2mr.cohort.schema import PATIENTS_SCHEMA, validate
from ct2mr.errors import InputError

Role = Literal["paired_train", "paired_test", "paired_val", "ct_only", "mr_only"]
ROLES: tuple[str, ...] = ("paired_train", "paired_test", "paired_val", "ct_only", "mr_only")
COLUMNS: tuple[str, ...] = ("patient", "role", "ct", "mr", "truth", "series", "mr_series")
#: series-choice column -> the image column it applies to
SERIES_COLUMNS: dict[str, str] = {"series": "ct", "mr_series": "mr"}
#: which images each role needs (True) or must not have (False)
NEEDS: dict[str, dict[str, bool]] = {
    "paired_train": {"ct": True, "mr": True},
    "paired_test": {"ct": True, "mr": True},
    "paired_val": {"ct": True, "mr": True},
    "ct_only": {"ct": True, "mr": False},
    "mr_only": {"ct": False, "mr": True},
}

#: role whose slices are only scored during training (validation MAE in losses.tsv;
#: never used for training nor to pick a checkpoint), preprocessed like paired_test
VAL_ROLE = "paired_val"
GENERATED_PREFIX = "results/"


@dataclass(frozen=True)
class Patient:
    """One validated row of the patient table."""

    patient: str
    role: str
    ct: str | None
    mr: str | None
    truth: str | None = None
    series: str | None = None  # DICOM series of the CT (None = automatic rule)
    mr_series: str | None = None  # DICOM series of the MR

    def series_of(self, modality: str) -> str | None:
        """The user's series choice for ``modality`` (``"ct"`` / ``"mr"``), or ``None``."""
        return self.series if modality == "ct" else self.mr_series

    @property
    def is_png(self) -> bool:
        """True when this patient's images are 2D PNG slices (the 3D stages are skipped)."""
        return any(p is not None and is_png_source(p) for p in (self.ct, self.mr))

    @property
    def is_pool(self) -> bool:
        """True for a ``ct_only`` / ``mr_only`` row naming 2D images: an unpaired pool
        (:mod:`ct2mr.preprocess.image_pools`: images of any size, each its own slice)."""
        return self.role in ("ct_only", "mr_only") and self.is_png

    @property
    def has_ct(self) -> bool:
        return self.ct is not None

    @property
    def has_mr(self) -> bool:
        return self.mr is not None


#: file name endings of 2D image sources (PNG slice pairs and unpaired pools)
IMAGE_2D_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def is_png_source(path: str) -> bool:
    """A glob pattern, a ``.png`` / ``.jpg`` / ``.jpeg`` file or a folder holding such files."""
    if any(ch in path for ch in "*?["):
        return True
    p = Path(path)
    if p.suffix.lower() in IMAGE_2D_SUFFIXES:
        return True
    if not p.is_dir() or not any(f.suffix.lower() in IMAGE_2D_SUFFIXES for f in p.iterdir()):
        return False
    from ct2mr.io.dicom_series import has_dicom

    return not has_dicom(p)  # a DICOM export keeps preview PNG/JPEG images beside its DICOM files


def _exists(path: str) -> bool:
    if any(ch in path for ch in "*?["):
        return bool(glob.glob(path))
    return Path(path).exists()


def _is_dicom(path: str) -> bool:
    """True for a DICOM folder (searched recursively) or a DICOM file."""
    from ct2mr.io.dicom_series import has_dicom, is_dicom_file

    p = Path(path)
    return has_dicom(p) if p.is_dir() else is_dicom_file(p)


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


def _check_cell_counts(table: Path, text: str, file_lines: list[int]) -> None:
    """Every row must have exactly as many tab-separated cells as the header (a ragged row
    would shift its cells into the wrong columns). Raises :class:`InputError` naming the
    file line and the extra cell(s), or the column(s) left without a cell."""
    rows = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(rows, None)
    if not header:
        return
    names = [h.strip() for h in header]
    for cells in rows:
        if len(cells) == len(names):
            continue
        line = file_lines[min(rows.line_num, len(file_lines)) - 1]
        pid = cells[names.index("patient")].strip() if "patient" in names and names.index("patient") < len(cells) else ""
        where = f"line {line}" + (f" (patient {pid!r})" if pid else "")
        counts = f"{len(cells)} cells but the header has {len(names)} columns ({', '.join(names)})"
        if len(cells) > len(names):
            extra = ", ".join(repr(c) for c in cells[len(names):])
            raise InputError(table, where, f"{counts}; extra cell {extra} after column {names[-1]!r} "
                             "(a tab too many, or a column missing from the header?)")
        missing = ", ".join(names[len(cells):])
        raise InputError(table, where, f"{counts}; no cell for column {missing} "
                         "(an empty value is still a cell: keep its tab)")


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
    _check_cell_counts(table, text, file_lines)
    try:
        df = pd.read_csv(io.StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(table, None, f"not a readable TSV table ({' '.join(str(exc).split())})") from None
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
        for scol, icol in SERIES_COLUMNS.items():
            if scol in row and icol not in row:
                raise InputError(table, f"{where}, column {scol}",
                                 f"chooses a series of the {icol.upper()} but the row has no {icol.upper()} image")
        if check_files:
            for col in ("ct", "mr", "truth"):
                path = row.get(col)
                if path and not path.startswith(GENERATED_PREFIX) and not _exists(path):
                    raise InputError(table, f"{where}, column {col}", f"file not found: {path}")
            for scol, icol in SERIES_COLUMNS.items():
                path = row.get(icol)
                if scol in row and path and not path.startswith(GENERATED_PREFIX) and not _is_dicom(path):
                    raise InputError(table, f"{where}, column {scol}",
                                     f"a series choice needs a DICOM folder in column {icol}, not {path}")
        patients.append(Patient(pid, role, row.get("ct"), row.get("mr"), row.get("truth"),
                                row.get("series"), row.get("mr_series")))
    return patients
