"""Reading and writing 3D medical images (DICOM series, NIfTI, MHA, NRRD).

Every reader failure caused by the input (missing file, truncated or corrupt
file, empty DICOM folder, unknown format) raises
:class:`ct2mr.errors.InputError` naming the file; every writer goes through
:func:`ct2mr.io.atomic.atomic_path` so an interrupted write never leaves a
complete-looking file.

Images are SimpleITK images in physical space (mm); this module does not change
orientation or values (ingest does that). Supported formats:

============  ==========================================================
``dicom``     a folder holding DICOM files (recursively; series chosen by :mod:`ct2mr.io.dicom_series`)
``nifti``     ``.nii`` / ``.nii.gz``
``mha``       ``.mha`` (read also ``.mhd``; write only ``.mha``)
``nrrd``      ``.nrrd`` / ``.nhdr`` (read; write only ``.nrrd``)
``png``       a folder of ``*.png`` or a glob pattern of png files (2D slices;
              detected here, read by :mod:`ct2mr.preprocess.png_slices`)
============  ==========================================================
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import locale
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError, OutputError
from ct2mr.io.atomic import atomic_folder, atomic_path, fsync_dir, fsync_file, library_write

log = logging.getLogger(__name__)

ImageFormat = Literal["dicom", "nifti", "mha", "nrrd", "png"]

#: file-name endings of single-file formats -> format name
_SUFFIXES: dict[str, ImageFormat] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "mha",
    ".mhd": "mha",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
}
#: endings :func:`write_image` accepts (single self-contained files only)
WRITE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".mha", ".nrrd")

_GLOB_CHARS = set("*?[")


def require_write_suffix(path: str | os.PathLike[str], flag: str = "--output") -> None:
    """Fail early (before any work) when ``path`` has no ending :func:`write_image` can write."""
    if image_suffix(path) not in WRITE_SUFFIXES:
        raise InputError(path, flag, f"needs an image ending ({', '.join(WRITE_SUFFIXES)})")


def image_suffix(path: str | os.PathLike[str]) -> str | None:
    """The known image ending of ``path`` (e.g. ``".nii.gz"``), lower case, or ``None``."""
    name = Path(path).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def detect_format(path: str | os.PathLike[str]) -> ImageFormat:
    """Format of an input image path.

    * a folder: ``"dicom"`` when it or a sub-folder holds a DICOM file (the
      ``DICM`` magic; any name, with or without extension), even when preview
      images lie beside it; else ``"png"`` when it holds ``*.png`` files;
    * a glob pattern (``*``, ``?``, ``[``) matching png files: ``"png"``;
    * a file: by its ending (``.nii``, ``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``,
      ``.nhdr``; ``.png`` -> ``"png"``), else ``"dicom"`` when it has the ``DICM`` magic.

    Raises
    ------
    InputError
        The path does not exist, or its format is not recognised.
    """
    p = Path(path)
    text = str(path)
    if not p.exists() and _GLOB_CHARS & set(p.name):
        matches = sorted(glob.glob(text))
        if matches and all(m.lower().endswith(".png") for m in matches):
            return "png"
        if not matches:
            raise InputError(text, None, "glob pattern matches no file")
        raise InputError(text, None, "glob pattern must match only .png files")
    if not p.exists():
        raise InputError(text, None, "does not exist")
    if p.is_dir():
        from ct2mr.io.dicom_series import has_dicom

        if has_dicom(p):  # DICOM wins: an export keeps preview PNG/JPG files beside its DICOM files
            return "dicom"
        if any(f.is_file() and f.suffix.lower() == ".png" for f in p.iterdir()):
            return "png"
        raise InputError(text, None, "no DICOM series found (and no .png files)")
    suffix = image_suffix(p)
    if suffix is not None:
        return _SUFFIXES[suffix]
    if p.name.lower().endswith(".png"):
        return "png"
    from ct2mr.io.dicom_series import is_dicom_file

    if is_dicom_file(p):
        return "dicom"
    raise InputError(
        text, None, "unknown image format (expected a DICOM folder, .nii, .nii.gz, .mha, .mhd, .nrrd, or png slices)"
    )


def _short(exc: BaseException) -> str:
    """The informative last line of a (long, multi-line) ITK exception message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_gzip(path: Path) -> None:
    """Raise InputError when a gzip file is truncated or corrupt (ITK may not notice)."""
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, None, f"corrupt or truncated gzip file ({exc})") from None


def read_image(path: str | os.PathLike[str], series: str | None = None, modality: str | None = None) -> sitk.Image:
    """Read a 3D (or any-dimensional) image: a DICOM folder, NIfTI, MHA/MHD or NRRD.

    Values and geometry are returned as stored (DICOM rescale slope/intercept are
    applied, so CT comes back in HU). A DICOM folder (searched recursively; a
    scanner's export with several series, DICOMDIR and previews) gives one series,
    chosen by ``series`` (SeriesInstanceUID, SeriesNumber or a SeriesDescription
    substring) or else by the rule of :mod:`ct2mr.io.dicom_series` (``modality``
    ``"ct"``/``"mr"`` passes over series of another modality), on an even, untilted
    grid; a single DICOM file gives the whole series it belongs to.
    NIfTI caveat: ITK turns stored NaN / inf into 0; see :func:`nifti_nonfinite_count`.

    Raises
    ------
    InputError
        Missing path, unknown format, png slices (not a volume), no usable DICOM
        series, a ``series`` choice that matches none or several, or given for a
        file that is not DICOM, a DICOM folder of several patients (PatientID) without
        a ``series`` choice or a series of several, an MR export of several contrasts
        without a ``series`` choice, truncated/corrupt file; the message names the file.
        A DICOM series without RescaleSlope/RescaleIntercept is read as stored and
        marked (:data:`ct2mr.io.dicom_series.RESCALE_MISSING_KEY`) for ingest's HU check.
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "png":
        raise InputError(p, None, "png slices are 2D; use `ct2mr slices-png` for pre-registered png pairs")
    if fmt == "dicom":
        from ct2mr.io.dicom_series import read_dicom

        return read_dicom(p, series, modality)
    if series is not None and str(series).strip():
        raise InputError(p, "series", f"a series choice ({series!r}) applies only to a DICOM folder, not a {fmt} file")
    if p.name.lower().endswith(".gz"):
        _check_gzip(p)
    forms = check_nifti_header(p) if fmt == "nifti" else None  # before ITK, which hides bad voxel sizes / shears
    if fmt == "mha":
        _check_meta_spacing(p)  # ITK flips an axis with a negative ElementSpacing
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(p, None, f"cannot read {fmt} image: {_short(exc)}") from None
    if p.name.lower().endswith(".nii"):
        _check_nifti_size(p, img)
    check_geometry(img, p)
    if forms is not None:
        _warn_forms_disagree(img, p, *forms)
    return img


#: largest deviation of a direction matrix from orthonormal (|D^T D - I|, max element) that is accepted
ORTHONORMAL_TOLERANCE = 1e-4
#: qform and sform "agree" when they map every corner of the volume within this distance (mm)
QFORM_SFORM_TOLERANCE_MM = 0.1
#: a thickest in-plane axis at least this many times the slice (z) spacing is reported (after LPS)
SLICE_AXIS_RATIO = 1.2


def check_geometry(img: sitk.Image, path: str | os.PathLike[str]) -> None:
    """Refuse an image whose voxel size or direction cosines make no sense (any format).

    See :func:`check_spacing_direction`, which this applies to the image's own geometry.
    """
    check_spacing_direction(img.GetSpacing(), img.GetDirection(), path)


def check_spacing_direction(spacing: Sequence[float], direction: Sequence[float],
                            path: str | os.PathLike[str]) -> None:
    """Refuse a voxel size or direction cosines that make no sense (from an image or a header alone).

    Spacing (mm) must be finite and > 0 on every axis; the direction matrix (row-major,
    n x n for n spacing values) must be finite and orthonormal within
    :data:`ORTHONORMAL_TOLERANCE`. Raises :class:`InputError` naming the file and the field.
    """
    spacing = np.asarray(spacing, dtype=float)
    bad = [i for i, v in enumerate(spacing) if not (np.isfinite(v) and v > 0)]
    if bad:
        raise InputError(path, "voxel size", f"must be a finite number > 0 mm on every axis, got {tuple(spacing.tolist())}")
    n = len(spacing)
    direction = np.asarray(direction, dtype=float).reshape(n, n)
    if not np.all(np.isfinite(direction)):
        raise InputError(path, "direction", "direction cosines are not finite numbers")
    err = float(np.max(np.abs(direction.T @ direction - np.eye(n))))
    if err > ORTHONORMAL_TOLERANCE:
        raise InputError(path, "direction", f"direction matrix is not orthonormal (sheared or scaled axes; "
                         f"|D^T D - I| = {err:.3g}): {np.round(direction, 4).tolist()}")


def _check_meta_spacing(path: Path) -> None:
    """Refuse a MetaImage (.mha/.mhd) header whose ElementSpacing / ElementSize is not finite and > 0."""
    with open(path, "rb") as fh:
        head = fh.read(8192).decode("latin-1")
    for line in head.splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key in ("ElementSpacing", "ElementSize"):
            try:
                values = [float(v) for v in value.split()]
            except ValueError:
                raise InputError(path, key, f"not numbers: {value.strip()!r}") from None
            if not all(np.isfinite(v) and v > 0 for v in values):
                raise InputError(path, key, f"voxel size must be a finite number > 0 mm on every axis, got {value.strip()}")
        if key == "ElementDataFile":
            break


def nifti_header(path: str | os.PathLike[str]) -> dict[str, np.ndarray | int | float] | None:
    """The geometry fields of a NIfTI-1/-2 header (``.nii`` / ``.nii.gz``, either byte order), or ``None``.

    Keys: ``version`` (1 or 2), ``dim`` (8 ints), ``pixdim`` (8 floats; pixdim[0] = qfac),
    ``vox_offset``, ``qform_code``, ``sform_code``, ``quatern`` (b, c, d), ``qoffset`` (x, y, z, mm),
    ``srow`` (3x4, mm; RAS+ world as the standard says).
    """
    import gzip

    p = Path(path)
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rb") as fh:
        head = fh.read(540)
    if len(head) < 348:
        return None
    for order in ("<", ">"):
        sizeof_hdr = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
        if sizeof_hdr == 348:
            if head[344:347] not in (b"n+1", b"ni1"):  # Analyze 7.5: no qform / sform fields
                return None
            f4, i2 = np.dtype(f"{order}f4"), np.dtype(f"{order}i2")
            return {
                "version": 1,
                "dim": np.frombuffer(head[40:56], dtype=i2).astype(int),
                "pixdim": np.frombuffer(head[76:108], dtype=f4).astype(float),
                "vox_offset": float(np.frombuffer(head[108:112], dtype=f4)[0]),
                "qform_code": int(np.frombuffer(head[252:254], dtype=i2)[0]),
                "sform_code": int(np.frombuffer(head[254:256], dtype=i2)[0]),
                "quatern": np.frombuffer(head[256:268], dtype=f4).astype(float),
                "qoffset": np.frombuffer(head[268:280], dtype=f4).astype(float),
                "srow": np.frombuffer(head[280:328], dtype=f4).astype(float).reshape(3, 4),
            }
        if sizeof_hdr == 540 and len(head) == 540:
            f8, i8, i4 = np.dtype(f"{order}f8"), np.dtype(f"{order}i8"), np.dtype(f"{order}i4")
            return {
                "version": 2,
                "dim": np.frombuffer(head[16:80], dtype=i8).astype(int),
                "pixdim": np.frombuffer(head[104:168], dtype=f8).astype(float),
                "vox_offset": float(np.frombuffer(head[168:176], dtype=i8)[0]),
                "qform_code": int(np.frombuffer(head[344:348], dtype=i4)[0]),
                "sform_code": int(np.frombuffer(head[348:352], dtype=i4)[0]),
                "quatern": np.frombuffer(head[352:376], dtype=f8).astype(float),
                "qoffset": np.frombuffer(head[376:400], dtype=f8).astype(float),
                "srow": np.frombuffer(head[400:496], dtype=f8).astype(float).reshape(3, 4),
            }
    return None


def _qform_affine(h: dict) -> np.ndarray:
    """The 4x4 voxel -> world (RAS, mm) matrix of the qform (NIfTI standard, method 2)."""
    b, c, d = h["quatern"]
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rot = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])
    qfac = -1.0 if h["pixdim"][0] < 0 else 1.0
    scale = np.array([h["pixdim"][1], h["pixdim"][2], h["pixdim"][3] * qfac])
    aff = np.eye(4)
    aff[:3, :3] = rot * scale
    aff[:3, 3] = h["qoffset"]
    return aff


def check_nifti_header(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Refuse a NIfTI whose header geometry is broken; warn when qform and sform disagree.

    Refused (:class:`InputError` naming the file and the header field):

    * ``pixdim[i]`` (voxel size, mm) of a spatial axis zero, negative or not finite
      (ITK would substitute 1 mm, or flip the axis);
    * a used sform (``sform_code > 0``) with non-finite values, a zero-length axis
      or non-orthonormal direction cosines (sheared: ITK would silently fall back
      to the qform, or fail);
    * a used qform (``qform_code > 0``) with non-finite quaternion / offsets or
      ``b^2 + c^2 + d^2 > 1``.

    Returns ``(qform, sform, distance_mm)`` (4x4 RAS matrices) when both are set and
    map some corner of the volume more than :data:`QFORM_SFORM_TOLERANCE_MM` apart
    (:func:`read_image` then warns, naming the one ITK used), else ``None``.
    """
    h = nifti_header(path)
    if h is None:
        return
    ndim = int(h["dim"][0])
    n_spatial = min(max(ndim, 1), 3)
    for i in range(1, n_spatial + 1):
        if int(h["dim"][i]) <= 1:  # a single slice may leave its thickness unset
            continue
        v = float(h["pixdim"][i])
        if not (np.isfinite(v) and v > 0):
            raise InputError(path, f"pixdim[{i}]", f"voxel size must be a finite number > 0 mm, got {v:g}")
    sform = None
    if h["sform_code"] > 0:
        srow = h["srow"]
        if not np.all(np.isfinite(srow)):
            raise InputError(path, "sform (srow_x/y/z)", "holds values that are not finite")
        lengths = np.linalg.norm(srow[:, :3], axis=0)
        if np.any(lengths[:n_spatial] <= 0):
            raise InputError(path, "sform (srow_x/y/z)", f"an axis has zero length (voxel size {lengths.round(4).tolist()} mm)")
        cosines = srow[:, :3] / np.where(lengths > 0, lengths, 1.0)
        err = float(np.max(np.abs(cosines.T @ cosines - np.eye(3))))
        if err > ORTHONORMAL_TOLERANCE:
            raise InputError(path, "sform (srow_x/y/z)", f"direction matrix is not orthonormal (sheared axes; "
                             f"|D^T D - I| = {err:.3g}); resample the image to an unsheared grid first")
        sform = np.vstack([srow, [0, 0, 0, 1]])
    if h["qform_code"] > 0:
        quat = np.concatenate([h["quatern"], h["qoffset"]])
        if not np.all(np.isfinite(quat)):
            raise InputError(path, "qform (quatern/qoffset)", "holds values that are not finite")
        if float(np.sum(h["quatern"] ** 2)) > 1.0 + 1e-4:
            raise InputError(path, "qform (quatern_b/c/d)", "not a rotation (b^2 + c^2 + d^2 > 1)")
        if sform is not None:
            qform = _qform_affine(h)
            size = [max(int(d), 1) for d in h["dim"][1:4]]
            corners = np.array([[i, j, k, 1.0] for i in (0, size[0] - 1) for j in (0, size[1] - 1)
                                for k in (0, size[2] - 1)]).T
            dist = float(np.max(np.linalg.norm((qform @ corners - sform @ corners)[:3], axis=0)))
            if dist > QFORM_SFORM_TOLERANCE_MM:
                return qform, sform, dist
    return None


def _warn_forms_disagree(img: sitk.Image, path: Path, qform: np.ndarray, sform: np.ndarray, dist: float) -> None:
    """Log that a NIfTI's qform and sform disagree, and which one ITK used (by the image origin)."""
    origin_ras = np.asarray(img.GetOrigin()[:3], dtype=float) * np.array([-1.0, -1.0, 1.0])  # ITK is LPS
    used = "sform" if np.linalg.norm(origin_ras - sform[:3, 3]) <= np.linalg.norm(origin_ras - qform[:3, 3]) else "qform"
    log.warning("%s: the NIfTI qform and sform disagree (volume corners up to %.3g mm apart); SimpleITK used the %s: "
                "check which one the scanner/converter meant", path, dist, used)


def check_slice_axis(img: sitk.Image, path: str | os.PathLike[str]) -> bool:
    """Warn (and return False) when an LPS-oriented volume's thickest voxel axis is not z.

    After :func:`sitk.DICOMOrient` to LPS an axial acquisition has its slice
    spacing on z (``array[k]`` is an axial slice). An x or y spacing at least
    :data:`SLICE_AXIS_RATIO` times the z spacing means sagittal / coronal slices,
    or a volume whose header labels its axes wrongly (its ``array[k]`` planes are
    not axial): the pipeline would cut axial slices across the thick axis.
    """
    sx, sy, sz = img.GetSpacing()[:3]
    thick = max((sx, "x (left-right)"), (sy, "y (anterior-posterior)"), key=lambda t: t[0])
    if thick[0] >= SLICE_AXIS_RATIO * sz:
        log.warning("%s: after orienting to LPS the thickest voxel axis is %s (spacing %s mm), not z: "
                    "sagittal/coronal slices, or a header that labels the axes wrongly?",
                    path, thick[1], tuple(round(s, 4) for s in (sx, sy, sz)))
        return False
    return True


def _check_nifti_size(path: Path, img: sitk.Image) -> None:
    """Raise InputError when an uncompressed .nii is shorter than its header says (ITK reads it silently)."""
    with open(path, "rb") as fh:
        head = fh.read(176)
    offset = _nifti_vox_offset(head)
    if offset is None:
        return
    nbytes = int(np.prod(img.GetSize())) * img.GetNumberOfComponentsPerPixel() * img.GetSizeOfPixelComponent()
    actual = path.stat().st_size
    if actual < offset + nbytes:
        raise InputError(path, None, f"truncated NIfTI file: {actual} bytes, header needs {offset + nbytes}")


def nifti_nonfinite_count(path: str | os.PathLike[str]) -> int:
    """Number of NaN / infinite voxels stored in a float NIfTI file (0 for integer data).

    ITK's NIfTI reader silently turns NaN and inf into 0, so a reader-side check
    cannot see them; this reads the raw voxel block (``.nii`` or ``.nii.gz``).
    """
    import gzip

    p = Path(path)
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rb") as fh:
        head = fh.read(540)
        for order in ("<", ">"):
            sizeof_hdr = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
            if sizeof_hdr == 348:
                dims = np.frombuffer(head[40:56], dtype=f"{order}i2")
                datatype = int(np.frombuffer(head[70:72], dtype=f"{order}i2")[0])
                offset = int(np.frombuffer(head[108:112], dtype=f"{order}f4")[0])
                break
            if sizeof_hdr == 540:
                dims = np.frombuffer(head[16:80], dtype=f"{order}i8")
                datatype = int(np.frombuffer(head[12:14], dtype=f"{order}i2")[0])
                offset = int(np.frombuffer(head[168:176], dtype=f"{order}i8")[0])
                break
        else:
            return 0
        dtypes = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # float32, float64, complex64, complex128
        if datatype not in dtypes:
            return 0
        ndim = int(dims[0])
        nvox = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + ndim]]))
        if datatype in (32, 1792):
            nvox *= 2
        dt = np.dtype(f"{order}{dtypes[datatype]}")
        fh.seek(offset)
        bad, left = 0, nvox
        while left > 0:
            n = min(left, 1 << 22)
            block = np.frombuffer(fh.read(n * dt.itemsize), dtype=dt)
            if block.size == 0:
                break
            bad += int(np.count_nonzero(~np.isfinite(block)))
            left -= block.size
    return bad


#: tolerances of :func:`grid_difference`: spacing and origin in mm, direction cosines
GRID_TOLERANCE = {"spacing": 1e-4, "origin": 1e-3, "direction": 1e-5}


def grid_difference(a: sitk.Image, b: sitk.Image) -> str | None:
    """``None`` when ``a`` and ``b`` share one voxel grid, else what differs.

    Same grid = same size, and spacing, origin (mm) and direction cosines equal
    within :data:`GRID_TOLERANCE` (NIfTI stores them as float32). The answer names
    the first property that differs with both values, e.g.
    ``"origin (0.0, 0.0, 0.0) vs (0.0, 0.0, 2.0)"``: voxel-wise operations on two
    images are only meaningful when this is ``None``.
    """
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    for what, get in (("spacing", sitk.Image.GetSpacing), ("origin", sitk.Image.GetOrigin),
                      ("direction", sitk.Image.GetDirection)):
        va, vb = get(a), get(b)
        if not np.allclose(va, vb, atol=GRID_TOLERANCE[what]):
            return f"{what} {tuple(round(v, 4) for v in va)} vs {tuple(round(v, 4) for v in vb)}"
    return None


def write_image(img: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> None:
    """Write ``img`` atomically to ``path``; the format comes from the ending.

    Accepted endings: ``.nii.gz``, ``.nii``, ``.mha``, ``.nrrd`` (single
    self-contained files). For a DICOM series folder use :func:`write_dicom_series`.
    ``compress`` applies to formats that support it (gzip inside .mha / .nrrd;
    ``.nii.gz`` is always gzipped and ``.nii`` never).

    Raises :class:`InputError` (a ``ValueError``) naming ``path`` for any other
    ending, so a CLI ``--output x.png`` gives a one-line error, not a traceback.
    """
    p = Path(path)
    suffix = image_suffix(p)
    if suffix not in WRITE_SUFFIXES:
        raise InputError(p, None, f"cannot write this image format; use one of {', '.join(WRITE_SUFFIXES)}")
    with atomic_path(p, verify=lambda tmp: verify_image_file(tmp, img)) as tmp, library_write(p):
        sitk.WriteImage(img, str(tmp), useCompression=compress or suffix == ".nii.gz")


def write_scratch_image(img: sitk.Image, path: str | os.PathLike[str], compress: bool = False) -> None:
    """Write a scratch image (an external tool's input in a temporary folder), verified.

    Not atomic (the folder is private), but a short write raises :class:`OutputError`
    instead of handing the tool a truncated file.
    """
    p = Path(path)
    try:
        sitk.WriteImage(img, str(p), useCompression=compress)
        fsync_file(p)
        verify_image_file(p, img)
    except (OSError, RuntimeError, ValueError) as exc:
        raise OutputError(p, f"write failed: {_short(exc)} (disk full or file-size limit?)") from exc


def verify_image_file(path: Path, img: sitk.Image) -> None:
    """Raise when the image file at ``path`` is not a complete copy of ``img``'s size and type.

    SimpleITK's NIfTI writer does not raise on a short write (full disk), so a
    written file is checked: the header reads back with ``img``'s size and pixel
    type; a NIfTI's voxel block is complete (for ``.nii.gz`` the gzip stream is
    read to its end, which also checks its CRC and length); MHA/NRRD are read
    back whole. Used by :func:`write_image` through :func:`ct2mr.io.atomic.atomic_path`.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    if _squeezed(reader.GetSize()) != _squeezed(img.GetSize()):  # ITK drops trailing singleton axes
        raise ValueError(f"size {reader.GetSize()} on disk, {img.GetSize()} written")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        expected = int(np.prod(img.GetSize())) * img.GetNumberOfComponentsPerPixel() * img.GetSizeOfPixelComponent()
        if name.endswith(".gz"):
            import gzip

            with gzip.open(path, "rb") as fh:
                head = fh.read(540)
                payload = len(head)
                while chunk := fh.read(1 << 24):
                    payload += len(chunk)
        else:
            with open(path, "rb") as fh:
                head = fh.read(540)
            payload = path.stat().st_size
        offset = _nifti_vox_offset(head)
        if offset is None:
            raise ValueError("not a NIfTI header")
        if payload < offset + expected:
            raise ValueError(f"{payload} bytes of image data, header needs {offset + expected}")
    else:
        back = sitk.ReadImage(str(path))
        if back.GetPixelID() != img.GetPixelID():
            raise ValueError(f"pixel type {back.GetPixelIDTypeAsString()} on disk, {img.GetPixelIDTypeAsString()} written")


def _squeezed(size: tuple[int, ...]) -> tuple[int, ...]:
    """``size`` without trailing 1s."""
    out = list(size)
    while len(out) > 1 and out[-1] == 1:
        out.pop()
    return tuple(out)


def _nifti_vox_offset(head: bytes) -> int | None:
    """The voxel-data offset of a NIfTI-1 / NIfTI-2 header (either byte order), or ``None``."""
    if len(head) < 176:
        return None
    for order in ("<", ">"):
        sizeof_hdr = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
        if sizeof_hdr == 348:
            return int(np.frombuffer(head[108:112], dtype=f"{order}f4")[0])
        if sizeof_hdr == 540:
            return int(np.frombuffer(head[168:176], dtype=f"{order}i8")[0])
    return None


@contextlib.contextmanager
def _keep_locale() -> Iterator[None]:
    """Restore the C locale settings afterwards: ITK's GDCM writer switches the whole
    process to the "C" locale, after which Python's default text encoding is ASCII
    (any later ``open()``/``write_text`` of non-ASCII text without an encoding fails)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_ALL, saved)


def _uid(*parts: str) -> str:
    """A deterministic DICOM UID (org root 2.25 = UUID-derived) from ``parts``."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def write_dicom_series(
    img: sitk.Image,
    folder: str | os.PathLike[str],
    modality: Literal["CT", "MR"] = "CT",
    series_description: str = "ct2mr",
    patient_id: str = "ANONYMOUS",
    uid_seed: str | None = None,
) -> None:
    """Write a 3D image as a single-series DICOM folder (one file per axial slice).

    Parameters
    ----------
    img:
        3D scalar image. CT: values in HU (any integer or float type); they are
        rounded, clipped to [-1024, 3071] and stored as signed 16-bit
        ``HU + 1024`` with ``RescaleIntercept = -1024``, ``RescaleSlope = 1``,
        so HU survive the round trip exactly (GDCM reads them back as int32 HU).
        MR: values >= 0 are stored as unsigned 16-bit integers with a slope
        chosen so the maximum maps to ~30000 (absolute error <= slope / 2,
        i.e. <= max / 60000); negative values clip to 0; read back as float64.
    folder:
        Output folder; written into a temporary sibling folder and renamed into
        place (an existing folder at that path is replaced).
    modality:
        ``"CT"`` or ``"MR"`` (the Modality tag, and the value encoding above).
    series_description, patient_id:
        SeriesDescription (0008,103E) and PatientID/PatientName.
    uid_seed:
        When given, Study/Series/FrameOfReference/SOP instance UIDs are derived
        from it deterministically (same input -> identical files); otherwise random.

    Geometry: per-slice ImagePositionPatient, ImageOrientationPatient (from the
    image's direction cosines), PixelSpacing and SliceThickness/SpacingBetweenSlices;
    reading the folder back with :func:`read_image` gives the same spacing,
    origin and direction. A left-handed direction (det < 0) cannot be stored as a
    DICOM slice stack; such an image is first flipped along its third axis
    (the same physical content; the read-back direction is then right-handed).
    """
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("write_dicom_series needs a 3D scalar image")
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality must be 'CT' or 'MR', not {modality!r}")
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    if np.linalg.det(direction) < 0:
        img = sitk.Flip(img, [False, False, True], flipAboutOrigin=False)
        direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    arr = sitk.GetArrayViewFromImage(img)
    pixel_tags: dict[str, str] = {}
    if modality == "CT":
        # GDCM takes real-world values and stores (value - intercept) / slope itself.
        intercept, slope = -1024.0, 1.0
        if np.issubdtype(arr.dtype, np.integer):  # (np.rint of int16 would give float16)
            stored = np.clip(arr, -1024, 3071).astype(np.int16)
        else:
            stored = np.clip(np.rint(arr), -1024, 3071).astype(np.int16)
    else:
        intercept = 0.0
        vmax = float(np.max(arr)) if arr.size else 0.0
        slope = float(f"{vmax / 30000.0:.8g}") if vmax > 0 else 1.0
        stored = np.clip(arr, 0, None).astype(np.float32)
        # a float buffer needs the stored pixel format: unsigned 16 bit
        pixel_tags = {"0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "0"}
    stored_img = sitk.GetImageFromArray(stored)
    stored_img.CopyInformation(img)

    seed = uid_seed if uid_seed is not None else f"{time.time_ns()}-{os.getpid()}-{np.random.SeedSequence().entropy}"
    study_uid = _uid(seed, "study")
    series_uid = _uid(seed, "series", modality, series_description)
    frame_uid = _uid(seed, "frame", modality, series_description)
    spacing = img.GetSpacing()
    iop = "\\".join(f"{v:.10g}" for v in (*direction[:, 0], *direction[:, 1]))
    now = time.gmtime() if uid_seed is None else time.gmtime(0)
    date, tod = time.strftime("%Y%m%d", now), time.strftime("%H%M%S", now)
    common = {
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4",
        "0008|0020": date,  # StudyDate
        "0008|0021": date,  # SeriesDate
        "0008|0030": tod,  # StudyTime
        "0008|0031": tod,  # SeriesTime
        "0008|0060": modality,
        "0008|0008": "DERIVED\\SECONDARY\\AXIAL",
        "0008|103e": series_description,
        "0010|0010": patient_id,
        "0010|0020": patient_id,
        "0020|000d": study_uid,
        "0020|000e": series_uid,
        "0020|0052": frame_uid,
        "0020|0010": "1",  # StudyID
        "0020|0011": "1",  # SeriesNumber
        "0020|0037": iop,
        "0018|0050": f"{spacing[2]:.10g}",  # SliceThickness
        "0018|0088": f"{spacing[2]:.10g}",  # SpacingBetweenSlices
        "0028|1052": f"{intercept:.10g}",  # RescaleIntercept
        "0028|1053": f"{slope:.10g}",  # RescaleSlope
        "0028|1054": "HU" if modality == "CT" else "US",  # RescaleType
        **pixel_tags,
    }
    dest = Path(folder)
    with atomic_folder(dest) as tmp:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for k in range(stored_img.GetDepth()):
            sl = stored_img[:, :, k]
            for tag, value in common.items():
                sl.SetMetaData(tag, value)
            pos = img.TransformIndexToPhysicalPoint((0, 0, k))
            sl.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))  # ImagePositionPatient
            sl.SetMetaData("0020|0013", str(k + 1))  # InstanceNumber
            sl.SetMetaData("0020|1041", f"{float(np.dot(pos, direction[:, 2])):.10g}")  # SliceLocation
            sl.SetMetaData("0008|0018", _uid(seed, "sop", modality, series_description, str(k)))
            writer.SetFileName(str(tmp / f"slice_{k + 1:04d}.dcm"))
            with _keep_locale():
                try:
                    writer.Execute(sl)
                except RuntimeError as exc:
                    raise OutputError(dest, f"write failed: {_short(exc)}") from exc
        _verify_dicom_folder(tmp, dest, stored_img)


def _verify_dicom_folder(folder: Path, dest: Path, stored: sitk.Image) -> None:
    """fsync every slice file of a freshly written series and check it is complete.

    Each file must read back (header) with the slice's size and hold at least the
    slice's pixel bytes; raises :class:`OutputError` naming ``dest`` otherwise.
    """
    nx, ny = stored.GetSize()[:2]
    pixel_bytes = nx * ny * 2  # CT and MR are both stored as 16-bit integers
    files = sorted(folder.glob("slice_*.dcm"))
    if len(files) != stored.GetDepth():
        raise OutputError(dest, f"{len(files)} slice files written, {stored.GetDepth()} expected")
    reader = sitk.ImageFileReader()
    for f in files:
        try:
            fsync_file(f)
            if f.stat().st_size < pixel_bytes:
                raise ValueError(f"{f.stat().st_size} bytes, the pixels alone need {pixel_bytes}")
            reader.SetFileName(str(f))
            with _keep_locale():
                reader.ReadImageInformation()
            if tuple(reader.GetSize()[:2]) != (nx, ny):
                raise ValueError(f"size {reader.GetSize()} on disk")
        except (OSError, RuntimeError, ValueError) as exc:
            raise OutputError(dest, f"{f.name} does not read back ({_short(exc)}; disk full or file-size limit?)") from exc
    fsync_dir(folder)
