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

The phantom cohort's scans are outputs of the workflow itself
(``workflow/rules/phantom.smk``): a row's own phantom paths
(:func:`phantom_paths`: ``results/phantom/{patient}/ct.nii.gz``, ``mr_dicom``, ``truth.json``, ...)
need not exist yet. Every other path must exist, under ``results/`` too (a typo there
would otherwise be generated as a phantom).

One scan may not be both trained on and held out (:func:`check_leakage`, run at workflow
start): the same file or the same content under a training role and a test role is refused.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from ct2mr.cohort.schema import PATIENTS_SCHEMA, validate
from ct2mr.errors import InputError
from ct2mr.training.folds import CV_ROLES
from ct2mr.training.roles import TRAIN_ROLES

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
#: roles whose scans are held out from training (scored, never trained on)
HELD_OUT_ROLES: tuple[str, ...] = ("paired_test", VAL_ROLE)
#: where the phantom rules write the phantom cohort's raw scans (workflow/rules/phantom.smk)
PHANTOM_DIR = "results/phantom"
#: the raw scan formats the phantom rules write: results/phantom/{patient}/{ct,mr}{format}
PHANTOM_FORMATS: tuple[str, ...] = (".nii.gz", ".nii", ".mha", ".nrrd", "_dicom")


def phantom_paths(patient: str, column: str) -> tuple[str, ...]:
    """The paths the phantom rules generate for ``patient``'s ``column`` (``"ct"``, ``"mr"`` or
    ``"truth"``): the only paths of a table that need not exist when the workflow starts."""
    base = f"{PHANTOM_DIR}/{patient}/"
    if column == "truth":
        return (base + "truth.json",)
    return tuple(f"{base}{column}{fmt}" for fmt in PHANTOM_FORMATS)


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
    line: int = field(default=0, compare=False)  # the row's line in the table file (1-based; 0 = unknown)

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
    def is_phantom(self) -> bool:
        """True when a cell names one of this row's own phantom paths (:func:`phantom_paths`):
        the phantom rules generate it."""
        return any(getattr(self, c) in phantom_paths(self.patient, c) for c in ("ct", "mr", "truth"))

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
    if table.is_dir():
        raise InputError(table, None, "is a folder; the patient table is a TSV file (e.g. config/patients.tsv)")
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
                if path and path not in phantom_paths(pid, col) and not _exists(path):
                    raise InputError(table, f"{where}, column {col}", f"file not found: {path}{_phantom_hint(path, pid, col)}")
            for scol, icol in SERIES_COLUMNS.items():
                path = row.get(icol)
                if scol in row and path and path not in phantom_paths(pid, icol) and not _is_dicom(path):
                    raise InputError(table, f"{where}, column {scol}",
                                     f"a series choice needs a DICOM folder in column {icol}, not {path}")
        patients.append(Patient(pid, role, row.get("ct"), row.get("mr"), row.get("truth"),
                                row.get("series"), row.get("mr_series"), line=i))
    return patients


def _phantom_hint(path: str, patient: str, column: str) -> str:
    """For a missing path under results/: which phantom paths the row could have meant."""
    if not path.startswith("results/"):
        return ""
    own = phantom_paths(patient, column)
    named = own[0] if len(own) == 1 else f"{own[0]}, or {', '.join(Path(p).name for p in own[1:])}"
    return (f" (under results/ only a phantom row's own scans are generated ({named}); "
            "every other path must exist)")


# --- leakage: one scan both trained on and held out


@dataclass(frozen=True)
class _Scan:
    """One unit of comparison: a scan file, a (DICOM) folder, or one image of a 2D source."""

    row: Patient
    column: str
    path: Path  # resolved
    folder: bool


def _scans(p: Patient) -> Iterator[_Scan]:
    """The existing scans of a row (phantom outputs not yet generated are skipped)."""
    for column in ("ct", "mr"):
        src = getattr(p, column)
        if src is None or not _exists(src):
            continue
        if is_png_source(src):
            if any(ch in src for ch in "*?["):
                files = [Path(f) for f in glob.glob(src)]
            elif Path(src).is_dir():
                files = [f for f in Path(src).iterdir() if f.suffix.lower() in IMAGE_2D_SUFFIXES]
            else:
                files = [Path(src)]
            for f in sorted(files):
                if f.is_file():
                    yield _Scan(p, column, f.resolve(), False)
        else:
            path = Path(src).resolve()
            yield _Scan(p, column, path, path.is_dir())


def _folder_files(folder: Path) -> list[Path]:
    """Regular files under ``folder`` (recursive, hidden names skipped), sorted."""
    files = []
    for sub, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(sub) / n for n in names if not n.startswith(".")]
    return sorted(f for f in files if f.is_file())


def _size_key(scan: _Scan) -> tuple[int, ...]:
    """Cheap content key: the byte size of a file, the sorted sizes of a folder's files (() when empty)."""
    if not scan.folder:
        size = scan.path.stat().st_size
        return (size,) if size else ()
    return tuple(sorted(s for s in (f.stat().st_size for f in _folder_files(scan.path)) if s))


#: bytes read from the middle and from the end of each file for the cheap content sample
SAMPLE_BYTES = 4096


def _file_sample(path: Path) -> str:
    """A few bytes from the middle and the end of a file: within a head scan's voxels, so two
    scans of the same size (uncompressed NIfTI or DICOM of one matrix) differ here."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size // 2 - SAMPLE_BYTES // 2))
        middle = fh.read(SAMPLE_BYTES)
        fh.seek(max(0, size - SAMPLE_BYTES))
        return hashlib.sha256(middle + fh.read(SAMPLE_BYTES)).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content(scan: _Scan, of_file: Callable[[Path], str]) -> str:
    """``of_file`` (a sample or the SHA-256 of the bytes, not decoded: header and pixel data as stored)
    of a file; of a folder, over its files' values in sorted order (a copied DICOM series matches
    under other file names)."""
    if not scan.folder:
        return of_file(scan.path)
    return hashlib.sha256("".join(sorted(of_file(f) for f in _folder_files(scan.path))).encode()).hexdigest()


def check_leakage(patients: Sequence[Patient], table: str | Path, cross_validated: bool) -> None:
    """Refuse one scan both trained on and held out: the same file (resolved path; a folder inside
    another row's folder) or the same content (size first, then a SHA-256 of the bytes; a DICOM
    folder by its files) under a training role (:data:`ct2mr.training.roles.TRAIN_ROLES`) in one
    row and a held-out role (:data:`HELD_OUT_ROLES`) in another. Under cross-validation
    (``cross_validated``: ``evaluation.folds``) the pooled roles (:data:`ct2mr.training.folds.CV_ROLES`)
    are both, so two paired rows may not share a scan either. 2D sources (PNG/JPEG folders and
    globs) compare image by image. Empty files and phantom scans not yet generated are not compared.

    Raises :class:`InputError` naming ``table``, the later row (line, patient, column), the earlier
    row and the two files, in one line.
    """
    def uses(p: Patient) -> tuple[bool, bool]:
        pooled = cross_validated and p.role in CV_ROLES
        return p.role in TRAIN_ROLES or pooled, p.role in HELD_OUT_ROLES or pooled

    def conflict(a: Patient, b: Patient) -> bool:
        (a_train, a_held), (b_train, b_held) = uses(a), uses(b)
        return a.patient != b.patient and ((a_train and b_held) or (a_held and b_train))

    def refuse(a: _Scan, b: _Scan, same: str, detail: str) -> None:
        a, b = sorted((a, b), key=lambda s: s.row.line)
        pooled = cross_validated and a.row.role in CV_ROLES and b.row.role in CV_ROLES
        why = ("both rows are cross-validated (evaluation.folds), so each trains the folds that test the other"
               if pooled else "a scan both trained on and held out leaks test data into training")
        raise InputError(
            table, f"line {b.row.line} (patient {b.row.patient!r}), column {b.column}",
            f"the same {same} as line {a.row.line} (patient {a.row.patient!r}), column {a.column} ({detail}): "
            f"roles {b.row.role} and {a.row.role}; {why}; give each row its own scan",
        )

    scans = [s for p in patients if any(uses(p)) for s in _scans(p)]
    by_path: dict[Path, list[_Scan]] = {}
    folders: dict[Path, list[_Scan]] = {}
    for s in scans:
        by_path.setdefault(s.path, []).append(s)
        if s.folder:
            folders.setdefault(s.path, []).append(s)
    for s in scans:  # the same file, or a file/folder inside another row's folder
        for other in by_path[s.path]:
            if conflict(s.row, other.row):
                refuse(s, other, "file", str(s.path))
        for parent in s.path.parents:
            for other in folders.get(parent, ()):
                if conflict(s.row, other.row):
                    refuse(s, other, "file", f"{s.path} is inside {other.path}")
    # the same content: equal sizes, then equal samples, then equal SHA-256 (each file read whole
    # only when its size and sample match a conflicting row's)
    by_size: dict[tuple[int, ...], list[_Scan]] = {}
    for s in scans:
        key = _size_key(s)
        if key:
            by_size.setdefault((int(s.folder), *key), []).append(s)
    digests: dict[Path, str] = {}
    for group in by_size.values():
        if len({s.row.patient for s in group}) < 2:
            continue
        by_sample: dict[str, list[_Scan]] = {}
        for s in group:
            by_sample.setdefault(_content(s, _file_sample), []).append(s)
        for same in by_sample.values():
            for i, a in enumerate(same):
                for b in same[i + 1:]:
                    if not conflict(a.row, b.row):
                        continue
                    for s in (a, b):
                        if s.path not in digests:
                            digests[s.path] = _content(s, _file_digest)
                    if digests[a.path] == digests[b.path]:
                        first, second = sorted((a, b), key=lambda s: s.row.line)
                        refuse(a, b, "content", f"{second.path} and {first.path} hold the same bytes")
