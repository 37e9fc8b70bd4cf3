"""A phantom head CT exported the way a scanner exports a study: several series in one folder.

For testing DICOM series discovery and selection (:mod:`ct2mr.io.dicom_series`)
with known truth. The anatomy is the analytic phantom head of :mod:`ct2mr.phantom.anatomy`
(a function of physical position, mm; the head :mod:`ct2mr.phantom.patient` samples),
so every series is sampled exactly on its own slice planes, tilted ones included,
and the noise-free truth can be sampled on any grid afterwards (:func:`truth_on_grid`).

Series written (LPS physical frame, head centred near the origin; pixel
grid :data:`MATRIX` x :data:`MATRIX` of :data:`PIXEL_MM` mm):

=======  =================================  ============================================
number   ImageType                          geometry
=======  =================================  ============================================
1        ORIGINAL\\PRIMARY\\LOCALIZER         2 scout images (coronal + sagittal plane)
2        ORIGINAL\\PRIMARY\\AXIAL             axial, 5 mm, even
3        ORIGINAL\\PRIMARY\\AXIAL             axial, 2.5 mm, even: **the automatic choice**
4        ORIGINAL\\PRIMARY\\AXIAL             axial 2 mm with gantry tilt :data:`TILT_DEG`
                                            (slice planes tilted about x, table steps along z)
5        ORIGINAL\\PRIMARY\\AXIAL             axial 1.25 mm, uneven (every 8th slice missing)
601      DERIVED\\SECONDARY\\REFORMATTED      coronal reformat, 2 mm with one 3 mm gap, the
                                            most files (the series a "largest series" rule takes)
=======  =================================  ============================================

plus ``preview_0.PNG`` and ``preview_1.jpg`` (non-DICOM files beside the DICOM, as
exports have them). Layouts: without DICOMDIR, files ``DICOM/I0`` .. ``DICOM/I<n>``
(no extension, series interleaved); with ``dicomdir=True``, a ``DICOMDIR`` index and
the nested folders pydicom's File-set writer makes (``PT000000/ST000000/...``).

Pixel data: uncompressed signed 16-bit, RescaleIntercept -1024, slope 1 (HU =
stored - 1024), Gaussian noise of the patient's CT noise level.

CLI: ``ct2mr phantom --patient P01 --export FOLDER [--dicomdir]``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.io.atomic import atomic_folder
from ct2mr.phantom.anatomy import Anatomy, mix, patient_anatomy, tissue_fractions

#: pixels per row and column of every image
MATRIX = 160
#: in-plane pixel size, mm (FOV = MATRIX * PIXEL_MM = 240 mm)
PIXEL_MM = 1.5
#: gantry tilt of series 4, degrees
TILT_DEG = 20.0
#: scanned z range of the axial series, mm (head centre near 0)
Z_RANGE_MM = (-60.0, 60.0)
#: the series number the selection rule must choose
EXPECTED_AUTO_SERIES = 3


@dataclass(frozen=True)
class ExportSeries:
    """Geometry and labels of one series (all positions in mm, LPS)."""

    number: int
    description: str
    image_type: tuple[str, ...]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    centres: tuple[tuple[float, float, float], ...]  # centre of each slice
    thickness_mm: float
    rows: int = MATRIX
    cols: int = MATRIX
    tilt_deg: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def positions(self) -> np.ndarray:
        """ImagePositionPatient (centre of the first pixel) of each slice, (n, 3)."""
        r, c = np.asarray(self.row_dir), np.asarray(self.col_dir)
        half = np.array([(self.cols - 1) / 2, (self.rows - 1) / 2]) * PIXEL_MM
        return np.asarray(self.centres) - half[0] * r - half[1] * c


def series_specs() -> list[ExportSeries]:
    """The series of the export (see the module docstring)."""
    z0, z1 = Z_RANGE_MM
    ax_r, ax_c = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)

    def axial(step: float) -> tuple[tuple[float, float, float], ...]:
        n = int(round((z1 - z0) / step))
        return tuple((0.0, 0.0, z0 + step / 2 + k * step) for k in range(n))

    t = np.deg2rad(TILT_DEG)
    tilted = tuple((0.0, 0.0, z0 + 1.0 + 2.0 * k) for k in range(60))
    uneven = tuple(c for k, c in enumerate(axial(1.25)) if k % 8 != 7)
    ys = [-110.0 + 2.0 * k for k in range(110)]
    ys = [y + (1.0 if k >= 55 else 0.0) for k, y in enumerate(ys)]  # one 3 mm gap
    return [
        ExportSeries(1, "Scout", ("ORIGINAL", "PRIMARY", "LOCALIZER"), (1.0, 0.0, 0.0), (0.0, 0.0, -1.0),
                     ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), 1.0),
        ExportSeries(2, "Head 5mm", ("ORIGINAL", "PRIMARY", "AXIAL"), ax_r, ax_c, axial(5.0), 5.0),
        ExportSeries(3, "Head 2.5mm", ("ORIGINAL", "PRIMARY", "AXIAL"), ax_r, ax_c, axial(2.5), 2.5),
        ExportSeries(4, "Head 2mm tilt", ("ORIGINAL", "PRIMARY", "AXIAL"), ax_r,
                     (0.0, float(np.cos(t)), float(-np.sin(t))), tilted, 2.0, tilt_deg=TILT_DEG),
        ExportSeries(5, "Head 1.25mm gaps", ("ORIGINAL", "PRIMARY", "AXIAL"), ax_r, ax_c, uneven, 1.25),
        ExportSeries(601, "Coronal reformat", ("DERIVED", "SECONDARY", "REFORMATTED"), (1.0, 0.0, 0.0),
                     (0.0, 0.0, -1.0), tuple((0.0, y, 0.0) for y in ys), 2.0, rows=80),
    ]


def sample_ct(anatomy: Anatomy, points: np.ndarray) -> np.ndarray:
    """Noise-free phantom CT (HU, float32) at physical points ``(n, 3)`` mm."""
    s, s_vent, _, diploe = tissue_fractions(anatomy, np.asarray(points, dtype=np.float32))
    return mix(s, s_vent, anatomy.ct_values, anatomy.ct_values["skull"] * diploe).astype(np.float32)


def truth_on_grid(patient: str, seed: int, ref: sitk.Image) -> sitk.Image:
    """The noise-free phantom CT (float32 HU) sampled at the voxel centres of ``ref``'s grid."""
    anatomy = patient_anatomy(patient, seed)
    nx, ny, nz = ref.GetSize()
    origin = np.asarray(ref.GetOrigin())
    m = np.asarray(ref.GetDirection()).reshape(3, 3) @ np.diag(ref.GetSpacing())
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    out = np.empty((nz, ny, nx), dtype=np.float32)
    for k in range(nz):
        idx = np.stack([ii.ravel(), jj.ravel(), np.full(ii.size, k)], axis=1).astype(float)
        out[k] = sample_ct(anatomy, origin + idx @ m.T).reshape(ny, nx)
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(ref)
    return img


def _uid(*parts: object) -> str:
    digest = int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:12], "big")
    return f"2.25.{digest}"


def _datasets(patient: str, seed: int) -> list[Any]:
    """Every DICOM image of the export as a pydicom Dataset (series interleaved)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    anatomy = patient_anatomy(patient, seed)
    study = _uid("study", patient, seed)
    frame = _uid("frame", patient, seed)
    out = []
    for spec in series_specs():
        rng = np.random.default_rng([seed & 0xFFFFFFFF, spec.number])
        r, c = np.asarray(spec.row_dir), np.asarray(spec.col_dir)
        normal = np.cross(r, c)
        jj, ii = np.meshgrid(np.arange(spec.rows), np.arange(spec.cols), indexing="ij")
        offs = (ii.ravel()[:, None] * r + jj.ravel()[:, None] * c) * PIXEL_MM
        series_uid = _uid("series", patient, seed, spec.number)
        for k, pos in enumerate(spec.positions()):
            if spec.number == 1:  # the scouts: one coronal and one sagittal plane
                r = np.array([1.0, 0.0, 0.0]) if k == 0 else np.array([0.0, 1.0, 0.0])
                offs = (ii.ravel()[:, None] * r + jj.ravel()[:, None] * c) * PIXEL_MM
                pos = -((spec.cols - 1) / 2) * PIXEL_MM * r - ((spec.rows - 1) / 2) * PIXEL_MM * c
            hu = sample_ct(anatomy, pos + offs).reshape(spec.rows, spec.cols)
            hu = hu + anatomy.ct_noise * rng.standard_normal(hu.shape)
            stored = np.clip(np.rint(hu) + 1024, 0, 4095).astype(np.int16)
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = _uid("sop", patient, seed, spec.number, k)
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
            ds.ImageType = list(spec.image_type)
            ds.Modality = "CT"
            ds.Manufacturer = "ct2mr phantom"
            ds.PatientName = patient
            ds.PatientID = patient
            ds.StudyInstanceUID = study
            ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
            ds.StudyDescription = "phantom head"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = spec.number
            ds.SeriesDescription = spec.description
            ds.FrameOfReferenceUID = frame
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
            ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*r, *c)]
            ds.SliceLocation = f"{float(np.dot(pos, normal)):.4f}"
            ds.SliceThickness = f"{spec.thickness_mm:g}"
            ds.GantryDetectorTilt = f"{spec.tilt_deg:g}"
            ds.PixelSpacing = [f"{PIXEL_MM:g}", f"{PIXEL_MM:g}"]
            ds.Rows, ds.Columns = spec.rows, spec.cols
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
            ds.PixelData = stored.tobytes()
            out.append(ds)
    order = np.random.default_rng(seed).permutation(len(out))  # exports interleave series
    return [out[i] for i in order]


def _previews(folder: Path, anatomy: Anatomy) -> None:
    """Two small preview images (non-DICOM) as exports put beside the DICOM files."""
    from PIL import Image

    pts = np.stack(np.meshgrid(np.linspace(-120, 120, 96), [0.0], np.linspace(60, -60, 48), indexing="xy"), -1)
    hu = sample_ct(anatomy, pts.reshape(-1, 3)).reshape(48, 96)
    img = Image.fromarray(np.clip((hu + 200) / 1200 * 255, 0, 255).astype(np.uint8))
    img.save(folder / "preview_0.PNG")
    img.convert("RGB").save(folder / "preview_1.jpg", quality=80)


def write_export(folder: str | os.PathLike[str], patient: str, seed: int, dicomdir: bool = False) -> dict[str, Any]:
    """Write the export folder (replaced atomically when it exists); returns a summary.

    Summary: ``{"series": {number: {"description", "files", "image_type"}},
    "expected_auto": 3, "layout": "DICOM/I<n>" or "DICOMDIR"}``.
    """
    from pydicom.fileset import FileSet

    dest = Path(folder)
    with atomic_folder(dest) as tmp:
        datasets = _datasets(patient, seed)
        if dicomdir:
            fs = FileSet()
            for ds in datasets:
                fs.add(ds)
            fs.write(tmp)
        else:
            (tmp / "DICOM").mkdir()
            for i, ds in enumerate(datasets):
                ds.save_as(tmp / "DICOM" / f"I{i}", enforce_file_format=True)
        _previews(tmp, patient_anatomy(patient, seed))
    series: dict[int, dict[str, Any]] = {}
    for ds in datasets:
        s = series.setdefault(int(ds.SeriesNumber), {"description": str(ds.SeriesDescription), "files": 0,
                                                      "image_type": "\\".join(ds.ImageType)})
        s["files"] += 1
    return {"series": dict(sorted(series.items())), "expected_auto": EXPECTED_AUTO_SERIES,
            "layout": "DICOMDIR" if dicomdir else "DICOM/I<n>"}
