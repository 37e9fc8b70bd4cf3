"""``ct2mr check-config --data``: open every input's header and report every problem at once.

The workflow's start (:func:`ct2mr.cohort.config.validate_all`) checks the config and the
patient table cheaply: columns, roles, that each file exists. Jobs hours later still fail on
what only an input's header tells. ``--data`` is the thorough, opt-in pass: after the start-up
checks it opens **headers only** (never pixels), in seconds per patient, and lists every
problem, one line each, then exits with status 2:

* **DICOM** folder or file (``ct`` / ``mr``): the series the job would read, chosen from the
  headers with the row's ``series`` / ``mr_series`` value or the automatic rule
  (:func:`ct2mr.io.dicom_series.choose_series_from_headers`: no match, several patients,
  several MR contrasts, an unusable series); a chosen series of the other modality (a CT
  column given an MR series) is a problem too. Series without rescale tags are noted.
* **NIfTI / MHA / NRRD**: SimpleITK's ``ReadImageInformation`` (plus the NIfTI header checks of
  :func:`ct2mr.io.imageio.check_nifti_header`): a 3D grey-level volume (a 4th axis of one),
  at least 2 voxels on each axis, voxel sizes finite and > 0, orthonormal direction cosines.
* **Pools** (2D images of a ``ct_only`` / ``mr_only`` row): each image's header
  (:func:`ct2mr.preprocess.image_pools.pool_image_info`: PNG/JPEG, 8-bit mode, at least 32 px,
  under the decompression-bomb limit); strips are noted (the job drops them), a pool whose
  every image is refused or dropped is a problem. Blank images and empty head masks need the
  pixels: the job drops those with a warning.
* **PNG slice pairs**: every file's header (8-bit grey or colour), one size per patient, CT and
  MR files paired by name.
* **truth** JSON: read whole (a few hundred bytes) by
  :func:`ct2mr.preprocess.registration.truth.truth_from_json`.
* **registration backend** (``registration.backend``), when some row is registered (a 3D CT+MR
  pair): its program or library (:func:`ct2mr.preprocess.registration.backend_available`,
  e.g. ``elastix`` on PATH).

Scans of the phantom cohort that the workflow has not generated yet are noted, not checked.
A problem line is ``<table>: line <n> (patient '<id>'), column <col>: <file>: <field>: <problem>``
(or ``<config>: registration.backend: ...``); at most :data:`MAX_LINES_PER_SOURCE` per
column of a row (then a count of the rest).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ct2mr.cohort.patients import Patient, phantom_paths
from ct2mr.errors import InputError

log = logging.getLogger(__name__)

#: at most this many problem lines per column of a row (a pool of 500 bad images is one problem, not 500)
MAX_LINES_PER_SOURCE = 5
#: PIL modes a PNG slice pair may have (:func:`ct2mr.preprocess.png_slices.read_png` converts the colour ones)
PNG_PAIR_MODES: tuple[str, ...] = ("L", "RGB", "RGBA", "P", "LA")
#: DICOM Modality each image column expects
COLUMN_MODALITY: dict[str, str] = {"ct": "CT", "mr": "MR"}


@dataclass
class DataReport:
    """What :func:`check_data` found: problem lines, notes, files opened, seconds per patient."""

    problems: list[str] = field(default_factory=list)  # one line each (at most MAX_LINES_PER_SOURCE per column)
    count: int = 0  # problems found (lines beyond the cap included)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # patient -> wall seconds

    def summary(self) -> str:
        """One line: patients, files opened, time (total, per patient, slowest) and the verdict."""
        total = sum(self.seconds.values())
        n = len(self.seconds)
        slowest = max(self.seconds, key=self.seconds.__getitem__) if self.seconds else None
        slow = f"; slowest {slowest}: {self.seconds[slowest]:.2f} s" if slowest else ""
        verdict = f"{self.count} problem(s)" if self.count else "no problem found"
        return (f"# data: {n} patients, {self.files} files opened in {total:.2f} s "
                f"({total / max(n, 1):.2f} s per patient{slow}); {verdict}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Raise the given loggers to WARNING (their INFO lines become this module's notes)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ------------------------------------------------------------------------------ one source


def check_volume_header(path: str | Path) -> str:
    """Header of a NIfTI / MHA / NRRD file (no voxel read); returns a short description.

    Raises :class:`InputError` naming the file and the field for what ingest would refuse.
    """
    import SimpleITK as sitk  # noqa: PLC0415

    from ct2mr.io.imageio import check_nifti_header, check_spacing_direction, detect_format  # noqa: PLC0415

    fmt = detect_format(path)
    if fmt == "nifti":
        check_nifti_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise InputError(path, None, f"cannot read the {fmt} header: {lines[-1] if lines else exc}") from None
    dim, size = reader.GetDimension(), list(reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise InputError(path, "pixel type", f"{reader.GetNumberOfComponents()} components per voxel; "
                                             "expected a grey-level scan")
    if dim == 4 and size[3] == 1:
        dim, size = 3, size[:3]
    if dim != 3:
        raise InputError(path, "dimension", f"{dim}D image of size {tuple(size)}; expected a 3D volume")
    if min(size) < 2:
        raise InputError(path, "size", f"{tuple(size)}: a single slice; expected a 3D volume")
    n = reader.GetDimension()  # a 4D file of one volume: its first three axes, as ingest reads it
    spacing = reader.GetSpacing()[:3]
    check_spacing_direction(spacing, np.asarray(reader.GetDirection(), dtype=float).reshape(n, n)[:3, :3], path)
    return f"{fmt} {'x'.join(str(s) for s in size)}, {'x'.join(f'{s:.3g}' for s in spacing)} mm"


def check_dicom(path: str | Path, selector: str | None, column: str) -> str:
    """The DICOM series the job would read (headers only); returns a note naming it and why.

    Raises :class:`InputError` for every refusal the headers tell (see the module docstring).
    """
    from ct2mr.io.dicom_series import choose_series_from_headers  # noqa: PLC0415

    with _quiet("ct2mr.io.dicom_series"):
        chosen = choose_series_from_headers(path, selector, column)
    expected = COLUMN_MODALITY[column]
    found = (chosen.modality or "").upper()
    if found in COLUMN_MODALITY.values() and found != expected:
        raise InputError(path, "Modality", f"{chosen.label()} is {found}, but column {column} takes the "
                                           f"{expected}; choose the {expected} series (series / mr_series column)")
    why = f"chosen by the table's {'series' if column == 'ct' else 'mr_series'} value {selector!r}" if selector \
        else "chosen by the automatic rule"
    extra = "; no RescaleSlope/RescaleIntercept: values read as stored" \
        if chosen.rescale_missing and found != "MR" else ""
    return f"DICOM {chosen.label()}, {why}{extra}"


def check_pool(spec: str) -> tuple[list[InputError], list[str], int]:
    """Headers of every image of a pool: (problems, notes, files opened)."""
    from ct2mr.preprocess.image_pools import list_pool_images, pool_image_info  # noqa: PLC0415

    files = list_pool_images(spec)
    problems: list[InputError] = []
    dropped: list[str] = []
    for f in files:
        try:
            info = pool_image_info(f)
        except InputError as exc:
            problems.append(exc)
            continue
        if info.drop_reason:
            dropped.append(f"{f.name} ({info.drop_reason})")
    notes = [f"{len(files)} images" + (f"; {len(dropped)} will be dropped by the job: " + "; ".join(dropped[:5])
                                       + (" ..." if len(dropped) > 5 else "") if dropped else "")]
    if files and len(problems) + len(dropped) == len(files):
        problems.append(InputError(spec, None, f"no image of the pool can be trained on ({len(problems)} refused, "
                                               f"{len(dropped)} dropped of {len(files)})"))
    return problems, notes, len(files)


def check_png_pair(p: Patient) -> tuple[list[tuple[str, InputError]], list[str], int]:
    """Headers of a PNG slice patient's files: ([(column, problem)], notes, files opened)."""
    from ct2mr.preprocess.image_pools import open_image_header  # noqa: PLC0415
    from ct2mr.preprocess.png_slices import list_pngs  # noqa: PLC0415

    problems: list[tuple[str, InputError]] = []
    names: dict[str, set[str]] = {}
    sizes: dict[tuple[int, int], tuple[str, Path]] = {}
    opened = 0
    for column in ("ct", "mr"):
        spec = getattr(p, column)
        if spec is None:
            continue
        try:
            files = list_pngs(spec)
        except InputError as exc:
            problems.append((column, exc))
            continue
        names[column] = {f.name for f in files}
        for f in files:
            opened += 1
            try:
                with open_image_header(f) as im:
                    mode, size = im.mode, tuple(im.size)
            except InputError as exc:
                problems.append((column, exc))
                continue
            if mode not in PNG_PAIR_MODES:
                problems.append((column, InputError(f, "mode", f"expected an 8-bit grey or colour PNG, got mode "
                                                               f"{mode!r}")))
            if sizes and size not in sizes:
                first_size, (first_col, first) = next(iter(sizes.items()))
                problems.append((column, InputError(f, "size", f"{size[0]}x{size[1]} differs from {first_col} "
                                                               f"{first.name}'s {first_size[0]}x{first_size[1]}")))
            sizes.setdefault(size, (column, f))
    if len(names) == 2:
        for column, other in (("ct", "mr"), ("mr", "ct")):
            for name in sorted(names[column] - names[other]):
                problems.append((column, InputError(name, None, f"{column.upper()} slice has no {other.upper()} "
                                                                f"partner of the same name in {getattr(p, other)}")))
    notes = [f"{len(n)} {c.upper()} slices" for c, n in names.items()]
    return problems, notes, opened


# ------------------------------------------------------------------------------ the whole table


def needs_registration(patients: Sequence[Patient]) -> bool:
    """True when some row is a 3D CT+MR pair (the workflow registers it)."""
    return any(p.has_ct and p.has_mr and not p.is_png for p in patients)


def check_data(config: Mapping[str, Any], patients: Sequence[Patient], source: str | Path | None = "config",
               clock: Callable[[], float] = time.perf_counter) -> DataReport:
    """Open every input's header (see the module docstring); never raises for a bad input.

    ``config``: the validated, default-filled config; ``patients``: its table's rows (both
    from :func:`ct2mr.cohort.config.validate_all`); ``source``: the config file (for messages).
    """
    table = config["patients"]
    report = DataReport()

    def where(p: Patient, column: str | None = None) -> str:
        return f"{table}: line {p.line} (patient {p.patient!r})" + (f", column {column}" if column else "")

    def add(p: Patient, column: str, errors: Sequence[InputError]) -> None:
        report.count += len(errors)
        for exc in errors[:MAX_LINES_PER_SOURCE]:
            report.problems.append(_one_line(f"{where(p, column)}: {exc}"))
        if len(errors) > MAX_LINES_PER_SOURCE:
            report.problems.append(f"{where(p, column)}: ... and {len(errors) - MAX_LINES_PER_SOURCE} more "
                                   "problem(s) like these")

    for p in patients:
        t0 = clock()
        waiting = [c for c in ("ct", "mr", "truth") if getattr(p, c) in phantom_paths(p.patient, c)
                   and not Path(getattr(p, c)).exists()]
        if waiting:
            report.notes.append(f"{where(p)}: {', '.join(waiting)} not generated yet (the workflow's phantom "
                                "rules make them); checked when a job reads them")
        png_pair = p.is_png and not p.is_pool
        if png_pair:
            pair_problems, notes, opened = check_png_pair(p)
            report.files += opened
            for column in ("ct", "mr"):
                add(p, column, [e for c, e in pair_problems if c == column])
            report.notes.append(f"{where(p)}: PNG slice pair, " + ", ".join(notes))
        for column in ("ct", "mr"):
            src = getattr(p, column)
            if src is None or column in waiting or png_pair:
                continue
            try:
                if p.is_pool:
                    errors, notes, opened = check_pool(src)
                    report.files += opened
                    add(p, column, errors)
                    report.notes.append(f"{where(p, column)}: pool of " + "; ".join(notes))
                    continue
                from ct2mr.io.imageio import detect_format  # noqa: PLC0415

                if detect_format(src) == "dicom":
                    report.files += _dicom_file_count(src)
                    note = check_dicom(src, p.series_of(column), column)
                else:
                    report.files += 1
                    note = check_volume_header(src)
                report.notes.append(f"{where(p, column)}: {note}")
            except InputError as exc:
                add(p, column, [exc])
            except (OSError, RuntimeError, ValueError) as exc:  # a reader's own error: still one line, no traceback
                add(p, column, [InputError(src, None, f"cannot read the header ({type(exc).__name__}: {exc})")])
        if p.truth and "truth" not in waiting:
            from ct2mr.preprocess.registration.truth import truth_from_json  # noqa: PLC0415

            report.files += 1
            try:
                truth_from_json(p.truth)
            except InputError as exc:
                add(p, "truth", [exc])
        report.seconds[p.patient] = clock() - t0
    backend = config["registration"]["backend"]
    if needs_registration(patients):
        from ct2mr.preprocess.registration import backend_available  # noqa: PLC0415

        ok, why = backend_available(backend)
        if not ok:
            report.problems.append(_one_line(f"{source}: registration.backend: {why}"))
            report.count += 1
    return report


def _dicom_file_count(src: str) -> int:
    """Files under a DICOM folder (each header was opened once), or 1 for a single file."""
    p = Path(src)
    return sum(1 for f in p.rglob("*") if f.is_file()) if p.is_dir() else 1


def run_data_check(config: Mapping[str, Any], patients: Sequence[Patient], source: str | Path | None) -> DataReport:
    """``check-config --data``: print the notes and the summary (stdout) and each problem (stderr, one line
    each); raise :class:`InputError` (exit status 2) when there is any problem."""
    import sys  # noqa: PLC0415

    report = check_data(config, patients, source)
    for note in report.notes:
        print(f"# {note}")
    print(report.summary())
    for line in report.problems:
        print(f"ct2mr check-config: error: {line}", file=sys.stderr)
    if report.count:
        raise InputError(source, "--data", f"{report.count} problem{'s' if report.count > 1 else ''} "
                                           f"in the inputs (listed above); {len(patients)} patients checked")
    return report
