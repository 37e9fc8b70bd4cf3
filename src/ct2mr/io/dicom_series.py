"""DICOM as scanners export it: find the series in a folder, choose one, read it without shearing.

A scanner's export holds several series (scout views, axial series of
different thickness, reformats), often a ``DICOMDIR`` index, files without an
extension and preview images. This module

1. **finds** every DICOM image under a folder, recursively (:func:`find_series`):
   headers only (pydicom, ``stop_before_pixels``), with or without ``DICOMDIR``;
   files that are not DICOM (previews, notes) and the ``DICOMDIR`` index itself are
   ignored (and listed in the log). Images are grouped by SeriesInstanceUID; a
   series mixing slice orientations (a reformat with its reference image) keeps its
   largest group of one orientation as the volume.
2. **chooses** one series (:func:`choose_series`), by the user's selector
   (``--series`` / the patient table's ``series`` column: a SeriesInstanceUID, a
   SeriesNumber, or a SeriesDescription substring, tried in that order; no match or
   several -> one-line error listing the series found) or else by the rule
   (:data:`RULE`): never a localizer (scout), never a single image; then
   ORIGINAL\\PRIMARY over DERIVED/SECONDARY; axial over other planes; a
   soft-tissue reconstruction kernel over an unknown one over a bone/lung kernel
   (CT; :func:`kernel_class`); a regular grid (even slice positions, no gantry
   tilt) over an irregular one; the thinnest slices; then the most slices; then
   the lowest series number. The choice and every series passed over (with the
   reason) are logged. Refused, with one line, before any pixel is read
   (:func:`choose_series_from_headers` does only this, for start-up checks):

   * files of more than one patient (PatientID) in the folder, unless a series is
     chosen explicitly; a series whose own files carry several PatientIDs, always;
   * an MR export holding several contrasts (:func:`mr_contrast`: weighting from
     SeriesDescription / SequenceName / ScanningSequence, else from TR/TE/TI, and
     a contrast agent) when no series is chosen: the error lists the contrasts.
3. **reads** it (:func:`read_series`) on an even, untilted grid:

   * a regular stack (even positions along the slice normal, no shear): SimpleITK
     (GDCM; decodes JPEG-lossless) on the files sorted along the normal;
   * uneven positions or gantry tilt: dcm2niix (pinned PyPI wheel), which writes an
     equidistant (``_Eq``) and/or tilt-corrected (``_Tilt``) volume; a tilt-corrected
     volume (orthogonal but oblique, its slices in the tilted planes) is then
     resampled (linear) onto an axis-aligned grid, so ``array[k]`` is a true
     axial plane. Why dcm2niix there and SimpleITK elsewhere: measured in
     ``bench/bench_dicom.py`` (``bench/results/dicom.md``): on regular series both
     give identical voxels, while on the phantom's tilted and uneven series
     SimpleITK silently shears / misplaces slices;
   * refused with a one-line :class:`~ct2mr.errors.InputError`: several images at
     one slice position (several volumes in one series), no slice geometry, one
     image, a localizer, or an irregular series dcm2niix cannot correct.

Geometry terms: the slice normal is ``row x column`` of ImageOrientationPatient;
gaps are distances (mm) between consecutive ImagePositionPatient projected on
the normal; the shear is the stack's displacement perpendicular to the normal
(gantry tilt), in mm over the whole stack and as an angle.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError

log = logging.getLogger(__name__)

#: the automatic selection rule, in order (README "Inputs" quotes it)
RULE: tuple[str, ...] = (
    "never a LOCALIZER (scout) or a single image",
    "ORIGINAL\\PRIMARY over DERIVED or SECONDARY",
    "axial over other planes",
    "CT: a soft-tissue reconstruction kernel over an unknown one over a bone or lung kernel (ConvolutionKernel)",
    "a regular grid (even slice positions, no gantry tilt) over an irregular one",
    "the thinnest slices",
    "then the most slices, then the lowest series number",
)
#: gaps are even when each differs from the median gap by at most this fraction of it ...
EVEN_RELATIVE = 0.01
#: ... or by at most this many mm (DICOM decimal strings carry ~1e-3 mm rounding)
EVEN_ABSOLUTE_MM = 0.02
#: a stack is tilted when its slices drift sideways by more than this fraction of a pixel over the stack
TILT_PIXEL_FRACTION = 0.25
#: reconstruction kernel classes (:func:`kernel_class`), in the rule's order of preference
KERNEL_SOFT, KERNEL_UNKNOWN, KERNEL_SHARP = "soft-tissue", "unknown", "bone/lung"
#: ConvolutionKernel values by vendor naming (upper case; the first value of a multi-valued tag).
#: Siemens (``B``/``H``/``J``/``Q``/``U``... + resolution index, e.g. ``H30s``, ``Hr38``, ``B70f``):
#: index <= 45 soft, >= 50 sharp (Siemens: 10 smoothest .. 90 sharpest). Canon/Toshiba ``FCnn``: FC01..FC29
#: body and head soft-tissue kernels (FC21 brain), FC30 and above bone/lung/high resolution.
KERNEL_NAMES: dict[str, tuple[str, ...]] = {
    KERNEL_SOFT: ("SOFT", "STANDARD", "STND", "SMOOTH", "BRAIN", "SOFT_TISSUE", "MEDIASTINUM",  # GE, generic
                  "A", "B", "UA", "UB", "UC", "UD"),  # Philips: A/B standard, U* brain
    KERNEL_SHARP: ("BONE", "BONEPLUS", "BONE PLUS", "LUNG", "EDGE", "DETAIL", "SHARP", "SKELETON", "HD BONE",
                   "D", "E", "EB", "EC", "L", "LA", "LB", "YA", "YB", "YC", "YD", "YE", "YF"),  # Philips: D/E/Y sharp
}
#: ConvolutionKernelGroup (0018,9316) defined terms (enhanced CT)
KERNEL_GROUPS: dict[str, str] = {"BRAIN": KERNEL_SOFT, "SOFT_TISSUE": KERNEL_SOFT, "MEDIASTINUM": KERNEL_SOFT,
                                 "LUNG": KERNEL_SHARP, "SKELETON": KERNEL_SHARP}
#: SOP class of a DICOMDIR
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_PLANES = ("sagittal", "coronal", "axial")  # by the largest component (x, y, z) of the normal


@dataclass
class Series:
    """One DICOM series found in a folder (header information only, no pixels)."""

    uid: str
    number: int | None
    description: str
    modality: str
    image_type: tuple[str, ...]
    files: list[Path]  # the volume's slices, sorted along the normal
    left_out: list[Path] = field(default_factory=list)  # images of another orientation
    row_dir: np.ndarray = field(default_factory=lambda: np.zeros(3))
    col_dir: np.ndarray = field(default_factory=lambda: np.zeros(3))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # mm, sorted like files
    pixel_mm: tuple[float, float] = (0.0, 0.0)
    thickness_mm: float | None = None  # SliceThickness tag
    gantry_tilt_deg: float = 0.0  # GantryDetectorTilt tag
    has_geometry: bool = True
    frames: int = 1  # NumberOfFrames of a series stored as one multi-frame file (enhanced CT/MR)
    kernel: str = ""  # ConvolutionKernel (CT), first value, as written
    kernel_group: str = ""  # ConvolutionKernelGroup (enhanced CT), e.g. BRAIN / SKELETON
    patients: dict[str, Path] = field(default_factory=dict)  # PatientID ('' = none) -> its first file
    rescale_missing: bool = False  # some image file has no RescaleSlope / RescaleIntercept (single-frame only)
    contrast: dict[str, Any] = field(default_factory=dict)  # MR: the header fields of :func:`mr_contrast`

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def n_files(self) -> int:
        """Every image file of the series (the volume's slices and those left out)."""
        return len(self.files) + len(self.left_out)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @property
    def plane(self) -> str:
        """``axial``, ``coronal`` or ``sagittal``: the LPS axis closest to the slice normal."""
        if not self.has_geometry:
            return "unknown"
        return _PLANES[int(np.argmax(np.abs(self.normal)))]

    @property
    def kernel_class(self) -> str:
        """:data:`KERNEL_SOFT`, :data:`KERNEL_UNKNOWN` or :data:`KERNEL_SHARP` (see :func:`kernel_class`)."""
        return kernel_class(self.kernel, self.kernel_group)

    @property
    def kernel_text(self) -> str:
        return self.kernel or self.kernel_group or "?"

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    @property
    def is_original_primary(self) -> bool:
        return self.image_type[:2] == ("ORIGINAL", "PRIMARY")

    @property
    def gaps_mm(self) -> np.ndarray:
        """Distances (mm) between consecutive slices along the normal."""
        return np.diff(self.positions @ self.normal) if self.n > 1 else np.zeros(0)

    @property
    def spacing_mm(self) -> float:
        """Median gap between slices (mm); 0 for a single image."""
        g = self.gaps_mm
        return float(np.median(g)) if g.size else 0.0

    @property
    def duplicates(self) -> int:
        """Images sharing a slice position with the previous one (several volumes in one series)."""
        return int(np.count_nonzero(np.abs(self.gaps_mm) < EVEN_ABSOLUTE_MM))

    @property
    def even(self) -> bool:
        g = self.gaps_mm
        if g.size == 0:
            return True
        med = float(np.median(g))
        return bool(np.max(np.abs(g - med)) <= max(EVEN_RELATIVE * med, EVEN_ABSOLUTE_MM))

    @property
    def shear_mm(self) -> float:
        """Sideways drift (mm) of the last slice relative to the first, perpendicular to the normal."""
        if self.n < 2:
            return 0.0
        v = self.positions[-1] - self.positions[0]
        return float(np.linalg.norm(v - (v @ self.normal) * self.normal))

    @property
    def tilt_deg(self) -> float:
        """Angle (degrees) between the stacking direction and the slice normal (gantry tilt)."""
        if self.n < 2:
            return 0.0
        along = float((self.positions[-1] - self.positions[0]) @ self.normal)
        return float(np.degrees(np.arctan2(self.shear_mm, abs(along))))

    @property
    def tilted(self) -> bool:
        return self.shear_mm > TILT_PIXEL_FRACTION * min(self.pixel_mm)

    @property
    def regular(self) -> bool:
        return self.even and not self.tilted

    @property
    def slice_mm(self) -> float:
        """Slice thickness for ranking: the SliceThickness tag, else the median gap."""
        return self.thickness_mm if self.thickness_mm else self.spacing_mm

    def irregularities(self) -> list[str]:
        """What keeps this series from being a regular grid (empty when it is one)."""
        out = []
        if not self.even:
            g = self.gaps_mm
            out.append(f"uneven slice positions (gaps {g.min():.3g}..{g.max():.3g} mm)")
        if self.tilted:
            out.append(f"gantry tilt {self.tilt_deg:.1f} deg (slices drift {self.shear_mm:.1f} mm sideways)")
        return out

    def unusable(self) -> str | None:
        """Why this series cannot be a volume at all, or ``None``."""
        if self.is_localizer:
            return f"a localizer (ImageType {self.image_type_text})"
        if not self.has_geometry:
            return "no slice geometry (ImagePositionPatient / ImageOrientationPatient missing)"
        if self.n < 2 and self.frames < 2:
            return "a single image"
        if self.n > 1 and self.frames > 1:
            return f"{self.n} multi-frame files in one series"
        if self.duplicates:
            return f"{self.duplicates} images share a slice position (several volumes in one series)"
        return None

    @property
    def image_type_text(self) -> str:
        return "\\".join(self.image_type) or "?"

    def label(self) -> str:
        """One-line description, e.g. ``series 3 'Head' (67 files, ORIGINAL\\PRIMARY\\AXIAL, axial, 2.5 mm)``."""
        desc = f" {self.description!r}" if self.description else ""
        geo = f", {self.plane}, {self.slice_mm:.3g} mm" if self.has_geometry and self.n > 1 else ""
        return f"series {self.number if self.number is not None else '?'}{desc} ({self.n_files} files, " \
               f"{self.image_type_text}{geo})"


def kernel_class(kernel: str | None, group: str | None = None) -> str:
    """Reconstruction kernel of a CT series: :data:`KERNEL_SOFT`, :data:`KERNEL_SHARP` or :data:`KERNEL_UNKNOWN`.

    ``kernel``: ConvolutionKernel (0018,1210), first value; ``group``:
    ConvolutionKernelGroup (0018,9316; DICOM defined terms BRAIN, SOFT_TISSUE,
    MEDIASTINUM, LUNG, SKELETON), used first when known. Names: :data:`KERNEL_NAMES`
    (GE STANDARD/SOFT vs BONE/BONEPLUS/LUNG/EDGE/DETAIL; Philips A/B/UA-UD vs
    D/E/L/YA-YF), Siemens letters + index (``H30s``, ``Hr38`` soft; ``H60s``,
    ``H70h``, ``Br64`` sharp), Canon/Toshiba ``FC21`` soft, ``FC30`` and above sharp;
    else a name containing BONE / LUNG / SHARP / EDGE is sharp, one containing
    SOFT / STANDARD / BRAIN / SMOOTH soft.
    """
    import re

    g = (group or "").strip().upper()
    if g in KERNEL_GROUPS:
        return KERNEL_GROUPS[g]
    k = (kernel or "").strip().upper()
    if not k:
        return KERNEL_UNKNOWN
    for cls, names in KERNEL_NAMES.items():
        if k in names:
            return cls
    m = re.fullmatch(r"FC(\d{2})", k)  # Canon / Toshiba
    if m:
        return KERNEL_SOFT if int(m.group(1)) < 30 else KERNEL_SHARP
    m = re.fullmatch(r"[A-Z][A-Z]?(\d{2})[A-Z]?", k)  # Siemens: H30S, HR38, B70F, BR64, UR77 (upper-cased)
    if m and not k.startswith("FC"):
        index = int(m.group(1))
        return KERNEL_SOFT if index <= 45 else KERNEL_SHARP if index >= 50 else KERNEL_UNKNOWN
    if any(w in k for w in ("BONE", "LUNG", "SHARP", "EDGE")):
        return KERNEL_SHARP
    if any(w in k for w in ("SOFT", "STANDARD", "BRAIN", "SMOOTH")):
        return KERNEL_SOFT
    return KERNEL_UNKNOWN


#: MR weighting words in SeriesDescription / ProtocolName / SequenceName, first match wins
_WEIGHTINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("FLAIR", ("FLAIR", "DARK FLUID", "DARK-FLUID", "TIRM")),
    ("DWI", ("DWI", "DIFFUSION", "TRACE", "ADC", "EP2D_DIFF")),
    ("SWI", ("SWI", "SWAN", "SUSCEPT")),
    ("T2*", ("T2*", "T2STAR", "T2 STAR", "HEMO", "GRE T2")),
    ("PD", ("PD", "PROTON")),
    ("T2", ("T2",)),
    ("T1", ("T1", "MPRAGE", "MP-RAGE", "MP_RAGE", "SPGR", "BRAVO", "TFE3D", "FLASH")),
)


def _ms(ds: Any, name: str) -> float | None:
    """A time tag (ms) at the top level or in an enhanced object's functional groups, else ``None``."""
    value = ds.get(name)
    if value is None:
        for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            items = ds.get(group) or []
            for seq in ("MREchoSequence", "MRTimingAndRelatedParametersSequence", "MRModifierSequence"):
                for item in (items[0].get(seq) or []) if items else []:
                    alt = {"EchoTime": "EffectiveEchoTime"}.get(name, name)
                    if alt in item:
                        value = item.get(alt)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def mr_contrast(fields: dict[str, Any]) -> str:
    """The contrast of an MR series as a short label, e.g. ``"T2 (TR 4000 ms, TE 100 ms)"``.

    ``fields``: :attr:`Series.contrast` (SeriesDescription, ProtocolName, SequenceName,
    ScanningSequence, RepetitionTime, EchoTime, InversionTime in ms, ContrastBolusAgent).
    The weighting (FLAIR, DWI, SWI, T2*, PD, T2, T1) comes from the names when they
    say it, else from the times: TI >= 1500 ms with TE >= 60 ms FLAIR, TR < 1000 ms with
    TE < 30 ms T1, TR >= 1500 ms with TE >= 60 ms T2, TR >= 1500 ms with TE < 40 ms PD,
    else ``"?"``. A contrast agent adds ``" + contrast agent"``. Two series of one
    label are the same contrast for the rule.
    """
    import re

    names = " ".join(str(fields.get(k) or "") for k in ("SeriesDescription", "ProtocolName", "SequenceName")).upper()
    weighting = next((w for w, words in _WEIGHTINGS
                      if any(re.search(r"(?<![A-Z0-9])" + re.escape(word), names) for word in words)), None)
    tr, te, ti = (fields.get(k) for k in ("RepetitionTime", "EchoTime", "InversionTime"))
    if weighting is None and tr is not None and te is not None:
        if ti is not None and ti >= 1500 and te >= 60:
            weighting = "FLAIR"
        elif tr < 1000 and te < 30:
            weighting = "T1"
        elif tr >= 1500 and te >= 60:
            weighting = "T2"
        elif tr >= 1500 and te < 40:
            weighting = "PD"
    times = ", ".join(f"{k} {v:.4g} ms" for k, v in (("TR", tr), ("TE", te), ("TI", ti)) if v is not None)
    seq = str(fields.get("ScanningSequence") or "").strip()
    detail = ", ".join(x for x in (times, f"ScanningSequence {seq}" if seq else "") if x)
    agent = " + contrast agent" if str(fields.get("ContrastBolusAgent") or "").strip() else ""
    return f"{weighting or '?'}{agent}" + (f" ({detail})" if detail else "")


def _contrast_key(s: Series) -> str:
    """What makes two MR series the same contrast: the weighting (and agent), else the label with its times."""
    label = mr_contrast(s.contrast)
    head = label.split(" (")[0]
    return label if head.startswith("?") else head


# ------------------------------------------------------------------------------------------ discovery


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM Part-10 file (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def has_dicom(folder: Path, limit: int = 100000) -> bool:
    """True when ``folder`` or a sub-folder holds a DICOM Part-10 image file (not only a DICOMDIR)."""
    seen = 0
    for sub, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            if is_dicom_file(Path(sub) / name):
                return True
            seen += 1
            if seen >= limit:
                return False
    return False


def _files(folder: Path) -> Iterable[Path]:
    for sub, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(sub) / name


def _tag(ds: Any, name: str) -> Any:
    """A geometry attribute of a header: top level, else (enhanced / multi-frame objects, as GDCM
    writes MR) the shared functional groups, else the first frame's."""
    value = ds.get(name)
    if value is not None:
        return value
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(group) or []
        for seq in ("PlaneOrientationSequence", "PlanePositionSequence", "PixelMeasuresSequence"):
            for item in (items[0].get(seq) or []) if items else []:
                if name in item:
                    return item.get(name)
    return None


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def find_series(folder: str | os.PathLike[str]) -> tuple[list[Series], list[tuple[Path, str]]]:
    """Every DICOM image series under ``folder`` (recursively), and the files ignored (with why).

    Series are sorted by (SeriesNumber, UID). Raises :class:`InputError` when
    ``folder`` is not a folder.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, None, "not a folder")
    headers: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    ignored: list[tuple[Path, str]] = []
    for path in _files(root):
        if not is_dicom_file(path):
            ignored.append((path, "not DICOM"))
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, EOFError) as exc:
            ignored.append((path, f"unreadable DICOM ({type(exc).__name__})"))
            continue
        sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if sop == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
            ignored.append((path, "DICOMDIR index"))
            continue
        if "Rows" not in ds or "SeriesInstanceUID" not in ds:
            ignored.append((path, "not an image"))
            continue
        headers[str(ds.SeriesInstanceUID)].append((path, ds))
    series = [_make_series(uid, items) for uid, items in headers.items()]
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return series, ignored


def _make_series(uid: str, items: list[tuple[Path, Any]]) -> Series:
    """A :class:`Series` from its files' headers (largest group of one orientation = the volume)."""
    first = items[0][1]
    number = first.get("SeriesNumber")
    try:
        frames = max(int(ds.get("NumberOfFrames") or 1) for _, ds in items)
    except (TypeError, ValueError):
        frames = 1
    raw_type = first.get("ImageType") or []
    image_type = tuple(str(v).upper() for v in ([raw_type] if isinstance(raw_type, str) else raw_type))
    s = Series(uid=uid, number=int(number) if number not in (None, "") else None,
               description=str(first.get("SeriesDescription", "") or ""), modality=str(first.get("Modality", "")),
               image_type=image_type, files=[p for p, _ in items], frames=frames)
    kernel = first.get("ConvolutionKernel")
    if kernel is not None and not isinstance(kernel, str):  # multi-valued (Siemens: kernel, strength)
        kernel = kernel[0] if len(kernel) else ""
    s.kernel = str(kernel or "").strip()
    s.kernel_group = str(first.get("ConvolutionKernelGroup") or "").strip()
    for path, ds in items:
        s.patients.setdefault(str(ds.get("PatientID", "") or "").strip(), path)
    s.rescale_missing = frames < 2 and any("RescaleSlope" not in ds or "RescaleIntercept" not in ds
                                           for _, ds in items)
    if s.modality.upper() == "MR":
        s.contrast = {k: first.get(k) for k in ("SeriesDescription", "ProtocolName", "SequenceName",
                                                "ScanningSequence", "ContrastBolusAgent")}
        if s.contrast["ScanningSequence"] is not None and not isinstance(s.contrast["ScanningSequence"], str):
            s.contrast["ScanningSequence"] = "\\".join(str(v) for v in s.contrast["ScanningSequence"])
        s.contrast.update({k: _ms(first, k) for k in ("RepetitionTime", "EchoTime", "InversionTime")})
    geo = []
    for path, ds in items:
        iop, ipp = _floats(_tag(ds, "ImageOrientationPatient"), 6), _floats(_tag(ds, "ImagePositionPatient"), 3)
        if iop is None or ipp is None:
            s.has_geometry = False
            return s
        geo.append((path, ds, tuple(np.round(iop, 4)), ipp))
    groups = Counter(g[2] for g in geo)
    orient = max(groups, key=lambda o: (groups[o], o))
    keep = [g for g in geo if g[2] == orient]
    s.left_out = [g[0] for g in geo if g[2] != orient]
    iop = np.mean([_floats(_tag(g[1], "ImageOrientationPatient"), 6) for g in keep], axis=0)
    s.row_dir = iop[:3] / np.linalg.norm(iop[:3])
    s.col_dir = iop[3:] / np.linalg.norm(iop[3:])
    normal = s.normal
    keep.sort(key=lambda g: (float(g[3] @ normal), int(g[1].get("InstanceNumber") or 0)))
    s.files = [g[0] for g in keep]
    s.positions = np.array([g[3] for g in keep])
    ds0 = keep[0][1]
    ps = _floats(_tag(ds0, "PixelSpacing"), 2)
    s.pixel_mm = (float(ps[0]), float(ps[1])) if ps is not None else (1.0, 1.0)
    try:
        s.thickness_mm = float(_tag(ds0, "SliceThickness")) or None
    except (TypeError, ValueError):
        s.thickness_mm = None
    try:
        s.gantry_tilt_deg = float(ds0.get("GantryDetectorTilt") or 0.0)
    except (TypeError, ValueError):
        s.gantry_tilt_deg = 0.0
    return s


# ------------------------------------------------------------------------------------------ choice


_KERNEL_ORDER = {KERNEL_SOFT: 0, KERNEL_UNKNOWN: 1, KERNEL_SHARP: 2}


def _rank(s: Series) -> tuple[Any, ...]:
    return (not s.is_original_primary, s.plane != "axial", _KERNEL_ORDER[s.kernel_class], not s.regular,
            round(s.slice_mm, 3), -s.n, s.number if s.number is not None else 1 << 30, s.uid)


def _why_not(s: Series, chosen: Series, modality: str | None) -> str:
    """Why ``s`` was passed over in favour of ``chosen`` (the first rule it loses on)."""
    if modality and s.modality and s.modality.upper() != modality.upper():
        return f"modality {s.modality}, not {modality.upper()}"
    bad = s.unusable()
    if bad:
        return bad
    if s.is_original_primary != chosen.is_original_primary:
        return f"not ORIGINAL\\PRIMARY (ImageType {s.image_type_text})"
    if (s.plane == "axial") != (chosen.plane == "axial"):
        return f"{s.plane} plane, not axial"
    if s.kernel_class != chosen.kernel_class:
        return (f"{s.kernel_class} reconstruction kernel (ConvolutionKernel {s.kernel_text}; "
                f"series {chosen.number} has {chosen.kernel_class} kernel {chosen.kernel_text})")
    if s.regular != chosen.regular:
        return "; ".join(s.irregularities())
    if round(s.slice_mm, 3) != round(chosen.slice_mm, 3):
        return f"thicker slices ({s.slice_mm:.3g} mm vs {chosen.slice_mm:.3g} mm)"
    if s.n != chosen.n:
        return f"fewer slices ({s.n} vs {chosen.n})"
    return "higher series number"


def _listing(series: Sequence[Series]) -> str:
    return "; ".join(f"{s.number if s.number is not None else '?'} {s.description!r} ({s.n_files} files, "
                     f"{s.image_type_text}, uid {s.uid})" for s in series)


def _patients_text(owners: dict[str, tuple[Path, Series]], folder: str | os.PathLike[str]) -> str:
    """``'A' (e.g. DICOM/I3, series 2) and 'B' (e.g. DICOM/I9, series 3)`` for the PatientID error."""
    base = Path(folder).parent if Path(folder).is_file() else Path(folder)

    def rel(f: Path) -> str:
        try:
            return str(f.relative_to(base))
        except ValueError:
            return str(f)
    return " and ".join(f"{pid!r} (e.g. {rel(f)}, series {s.number if s.number is not None else '?'})"
                        for pid, (f, s) in sorted(owners.items()))


def check_one_patient(series: Sequence[Series], folder: str | os.PathLike[str], field_name: str = "PatientID",
                      advice: str = "") -> None:
    """Refuse (:class:`InputError`) files of more than one PatientID among ``series``, naming each with a file.

    A missing PatientID counts as the value ``''``.
    """
    owners: dict[str, tuple[Path, Series]] = {}
    for s in series:
        for pid, f in s.patients.items():
            owners.setdefault(pid, (f, s))
    if len(owners) > 1:
        where = "one series" if len(series) == 1 else "one DICOM folder"
        raise InputError(folder, field_name, f"{len(owners)} patients in {where}: {_patients_text(owners, folder)}"
                         + (f"; {advice}" if advice else ""))


def _series_column(modality: str | None) -> str:
    return "the patient table's mr_series column" if (modality or "").lower() == "mr" else \
        "the patient table's series column (mr_series for the MR)"


def match_series(series: Sequence[Series], selector: str) -> list[Series]:
    """Series matching ``selector``: SeriesInstanceUID, else SeriesNumber, else a SeriesDescription substring."""
    sel = selector.strip()
    by_uid = [s for s in series if s.uid == sel]
    if by_uid:
        return by_uid
    if sel.lstrip("+-").isdigit():
        by_number = [s for s in series if s.number == int(sel)]
        if by_number:
            return by_number
    return [s for s in series if sel and sel.lower() in s.description.lower()]


def choose_series(series: Sequence[Series], folder: str | os.PathLike[str], selector: str | None = None,
                  modality: str | None = None) -> Series:
    """The series to read (see the module docstring); logs the choice and every series passed over.

    ``selector``: the user's choice (``None`` / empty = the automatic rule);
    ``modality``: ``"ct"`` / ``"mr"`` (series of another Modality are passed over
    by the rule; a selector may still pick one). Raises :class:`InputError`
    naming ``folder`` when nothing matches or can be read.
    """
    if not series:
        raise InputError(folder, None, "no DICOM series found")
    if selector is not None and str(selector).strip():
        found = match_series(series, str(selector))
        if len(found) != 1:
            what = "matches no series" if not found else f"matches {len(found)} series"
            raise InputError(folder, "series", f"{selector!r} {what}; series found: {_listing(series)}")
        chosen = found[0]
        bad = chosen.unusable()
        if bad:
            raise InputError(folder, "series", f"{chosen.label()} cannot be read as a volume: {bad}")
        check_one_patient([chosen], folder, advice=f"the files of {chosen.label()} belong to different patients: "
                          "re-export it with one patient per series")
        log.info("%s: %d DICOM series; reading %s (chosen by the user: %r)", folder, len(series), chosen.label(),
                 selector)
        return chosen
    candidates = [s for s in series if s.unusable() is None
                  and not (modality and s.modality and s.modality.upper() != modality.upper())]
    if not candidates:
        reasons = "; ".join(f"{s.label()}: {_why_not(s, s, modality)}" for s in series)
        raise InputError(folder, None, f"no DICOM series usable as a volume ({reasons})")
    column = _series_column(modality)
    check_one_patient(series, folder, advice=f"choose the series to read with --series or {column}")
    if (modality or "").lower() == "mr" or all(c.modality.upper() == "MR" for c in candidates):
        contrasts: dict[str, list[Series]] = defaultdict(list)
        for c in candidates:
            contrasts[_contrast_key(c)].append(c)
        if len(contrasts) > 1:
            found_text = "; ".join(f"{mr_contrast(group[0].contrast)}: "
                                   + ", ".join(c.label() for c in group) for group in contrasts.values())
            raise InputError(folder, "mr_series", f"the MR export holds {len(contrasts)} contrasts, choose one with "
                             f"--series or {column}: {found_text}")
    chosen = min(candidates, key=_rank)
    log.info("%s holds %d DICOM series; reading %s, chosen by the rule: %s", folder, len(series), chosen.label(),
             "; ".join(RULE))
    for s in series:
        if s is not chosen:
            log.info("  passed over %s: %s", s.label(), _why_not(s, chosen, modality))
    return chosen


# ------------------------------------------------------------------------------------------ reading


def read_series(s: Series, where: str | os.PathLike[str]) -> sitk.Image:
    """The series as one 3D image on an even, untilted grid (see the module docstring).

    Raises :class:`InputError` naming ``where`` and the series when it cannot be
    read as a volume or its irregular geometry cannot be corrected.
    """
    bad = s.unusable()
    if bad:
        raise InputError(where, f"DICOM {s.label()}", f"cannot be read as a volume: {bad}")
    if s.left_out:
        log.info("%s: %d image(s) of another orientation left out of %s (e.g. a reference image): %s", where,
                 len(s.left_out), s.label(), ", ".join(p.name for p in s.left_out[:5]))
    if s.regular:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in s.files])
        shown = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's "non uniform sampling" note: the gaps were checked
        try:
            return reader.Execute()
        except RuntimeError as exc:
            raise InputError(where, f"DICOM {s.label()}", f"cannot read: {_short(exc)}") from None
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    problems = "; ".join(s.irregularities())
    img = read_with_dcm2niix(s, where, problems)
    if s.tilted:
        img = untilt(img)
    log.warning("%s: %s has %s: corrected by dcm2niix%s -> size %s, spacing %s mm", where, s.label(), problems,
                " and resampled onto an axis-aligned grid" if s.tilted else "", img.GetSize(),
                tuple(round(v, 4) for v in img.GetSpacing()))
    return img


def _short(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def dcm2niix_binary() -> str:
    """Path of the pinned dcm2niix executable (PyPI wheel ``dcm2niix``)."""
    try:
        import dcm2niix
    except ImportError:
        raise InputError(None, "dcm2niix", "the dcm2niix package is not installed (pip install dcm2niix)") from None
    return str(dcm2niix.bin)


def read_with_dcm2niix(s: Series, where: str | os.PathLike[str], problems: str) -> sitk.Image:
    """Convert the series' files with dcm2niix and read its corrected (``_Tilt`` / ``_Eq``) volume."""
    with tempfile.TemporaryDirectory(prefix="ct2mr_dcm2niix_") as tmpd:
        src, out = Path(tmpd) / "in", Path(tmpd) / "out"
        src.mkdir()
        out.mkdir()
        for i, f in enumerate(s.files):  # only this series' files (links: raw inputs are never touched)
            os.symlink(Path(f).resolve(), src / f"{i:05d}.dcm")
        cmd = [dcm2niix_binary(), "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(src)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InputError(where, f"DICOM {s.label()}", f"{problems}; dcm2niix failed ({exc})") from None
        log.debug("dcm2niix: %s", proc.stdout)
        names = sorted(p.name for p in out.glob("*.nii"))
        if s.tilted:  # the tilt-corrected volume (and equidistant too when the gaps are uneven)
            fixed = [n for n in names if "Tilt" in n and ("Eq" in n or s.even)]
        else:  # the equidistant volume; none when dcm2niix judged the gaps even (its tolerance)
            fixed = [n for n in names if "Eq" in n] or (names if names == ["vol.nii"] else [])
        if proc.returncode != 0 or len(fixed) != 1:
            tail = " ".join(proc.stdout.split()[-25:])
            raise InputError(where, f"DICOM {s.label()}",
                             f"{problems}, and dcm2niix could not correct it (outputs {names}; {tail}); "
                             "choose another series with --series")
        img = sitk.ReadImage(str(out / fixed[0]))
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = sitk.Extract(img, [*img.GetSize()[:3], 0], [0, 0, 0, 0])
    return img


def untilt(img: sitk.Image) -> sitk.Image:
    """Resample an orthogonal but oblique volume (linear) onto an axis-aligned LPS grid covering it.

    Spacing along each LPS axis is the spacing of the image axis closest to it;
    voxels outside the input are filled with the input's minimum (air / padding).
    """
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    if np.allclose(np.abs(d), np.round(np.abs(d)), atol=1e-6):
        return img
    size = np.asarray(img.GetSize())
    spacing_in = np.asarray(img.GetSpacing())
    axis_of = np.argmax(np.abs(d), axis=1)  # for each LPS axis, the closest image axis
    spacing = spacing_in[axis_of]
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    pts = np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in c]) for c in corners])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    new_size = [int(np.floor((hi[a] - lo[a]) / spacing[a] + 1e-6)) + 1 for a in range(3)]
    ref = sitk.Image(new_size, img.GetPixelID())
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin([float(v) for v in lo])
    fill = float(np.min(sitk.GetArrayViewFromImage(img)))
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, fill, sitk.sitkFloat32)


def choose_series_from_headers(path: str | os.PathLike[str], selector: str | None = None,
                               modality: str | None = None) -> Series:
    """The series :func:`read_dicom` would read, chosen and checked from the headers only (no pixels).

    A folder: :func:`find_series` + :func:`choose_series` (logging the ignored
    files); a single file: the series it belongs to (found in its folder), unless
    ``selector`` chooses another there. Raises :class:`InputError` (one line) for
    every refusal that headers can tell: no series, a selector matching none or
    several, an unusable series, several patients, several MR contrasts without a
    choice. For start-up checks (``check-config --data``): seconds per folder.
    """
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    series, ignored = find_series(folder)
    if ignored:
        shown = ", ".join(f"{f.relative_to(folder)} ({why})" for f, why in ignored[:8])
        log.info("%s: ignored %d file(s) that are not DICOM images: %s%s", folder, len(ignored), shown,
                 " ..." if len(ignored) > 8 else "")
    if p.is_file() and not (selector and str(selector).strip()):
        own = [s for s in series if any(p.resolve() == f.resolve() for f in [*s.files, *s.left_out])]
        if not own:
            raise InputError(p, None, "not a DICOM image file")
        chosen = own[0]
        bad = chosen.unusable()
        if bad:
            raise InputError(p, f"DICOM {chosen.label()}", f"cannot be read as a volume: {bad}")
        check_one_patient([chosen], p, advice=f"the files of {chosen.label()} belong to different patients: "
                          "re-export it with one patient per series")
        log.info("reading %s, the series of %s", chosen.label(), p)
    else:
        chosen = choose_series(series, path, selector, modality)
    return chosen


#: metadata key that :func:`read_dicom` sets on an image whose files lack RescaleSlope / RescaleIntercept
RESCALE_MISSING_KEY = "ct2mr:rescale_missing"


def read_dicom(path: str | os.PathLike[str], selector: str | None = None, modality: str | None = None) -> sitk.Image:
    """Read a DICOM folder (the chosen series) or the series of one DICOM file.

    :func:`choose_series_from_headers` + :func:`read_series`. When some file of the
    series (not MR) has no RescaleSlope / RescaleIntercept, the values are the stored
    ones (not HU for a CT): the image then carries the metadata key
    :data:`RESCALE_MISSING_KEY` (``"1"``) and a warning is logged; ingest's HU check
    names those tags when the values are not HU.
    """
    chosen = choose_series_from_headers(path, selector, modality)
    img = read_series(chosen, path)
    if chosen.rescale_missing and chosen.modality.upper() != "MR":  # MR images need no rescale tags
        log.warning("%s: %s has no RescaleSlope/RescaleIntercept: values are read as stored", path, chosen.label())
        img.SetMetaData(RESCALE_MISSING_KEY, "1")
    return img
