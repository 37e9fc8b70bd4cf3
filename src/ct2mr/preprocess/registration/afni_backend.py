"""AFNI backend: ``3dAllineate`` through nipype (``nipype.interfaces.afni.Allineate``) -- the paper's tool.

Runs ``3dAllineate -base fixed -source moving -cost nmi -warp affine_general
-cmass -1Dmatrix_save M.aff12.1D`` (12-parameter affine, normalised mutual
information, centre-of-mass initialisation) in a temporary folder, and converts
the saved matrix.

Coordinate conventions (documented, *not verified here*: AFNI is not installed
on the development machine, so the conversion is covered by a unit test of the
parser only and the end-to-end test skips):

* AFNI's internal dataset coordinates are "RAI" = DICOM order: +x = Left,
  +y = Posterior, +z = Superior (the names give the *negative* directions).
  That is the same physical frame as ITK's LPS, so no sign flip is needed when
  both read the same NIfTI header (AFNI negates x and y of the NIfTI RAS
  sform/qform; ITK does the same).
* ``-1Dmatrix_save`` writes one line of 12 numbers, the first 3 rows of the
  4x4 matrix (row-major: a11 a12 a13 t1 a21 ... t3) that maps **base (fixed)
  coordinates to source (moving) coordinates** (3dAllineate -help: "the matrix
  ... transforms base to source coordinates"). That is the ITK direction, so
  the transform is ``y = A x + t`` in mm with centre 0.

Needs AFNI's ``3dAllineate`` on PATH (https://afni.nimh.nih.gov/; not packaged in Debian).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ct2mr.io.imageio import write_scratch_image
from ct2mr.preprocess.registration.base import (
    BackendUnavailable,
    RegistrationResult,
    RegistrationSettings,
    affine_from_matrix,
    backend_inputs,
)

UNAVAILABLE = ("needs AFNI's 3dAllineate on PATH; install AFNI (https://afni.nimh.nih.gov/, "
               "not packaged in Debian) or choose simpleitk|antspy|elastix")


def check_available() -> None:
    """Raise :class:`BackendUnavailable` when ``3dAllineate`` is not on PATH."""
    if shutil.which("3dAllineate") is None:
        raise BackendUnavailable("afni", UNAVAILABLE)


def parse_aff12(path: str | Path) -> sitk.AffineTransform:
    """AFNI ``.aff12.1D`` (base -> source, DICOM/LPS mm) -> SimpleITK AffineTransform (fixed -> moving).

    Comment lines (``#``) are skipped; the first line with 12 numbers is used.
    """
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        vals = [float(v) for v in line.split()]
        if len(vals) != 12:
            raise RuntimeError(f"afni: expected 12 numbers per line in {path}, got {len(vals)}")
        m = np.array(vals).reshape(3, 4)
        return affine_from_matrix(m[:, :3], m[:, 3])
    raise RuntimeError(f"afni: no matrix in {path}")


def register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Affine MR->CT registration with AFNI 3dAllineate; see :func:`ct2mr.preprocess.registration.register_affine`.

    ``settings.mi_bins``, ``sampling_fraction`` and ``shrink_factors`` have no
    direct 3dAllineate equivalent (it picks its own histogram and blur
    schedule); ``settings.seed`` and ``threads`` are passed through the
    environment (``AFNI_RANDOM_SEEDVAL``, ``OMP_NUM_THREADS``).
    """
    check_available()
    from nipype.interfaces.afni import Allineate

    t0 = time.perf_counter()
    fixed, moving, fmask, mmask = backend_inputs(fixed, moving, fixed_mask, moving_mask, settings)
    tmp = Path(tempfile.mkdtemp(prefix="ct2mr_afni_"))
    try:
        write_scratch_image(fixed, str(tmp / "fixed.nii"))
        write_scratch_image(moving, str(tmp / "moving.nii"))
        al = Allineate()
        al.inputs.reference = str(tmp / "fixed.nii")
        al.inputs.in_file = str(tmp / "moving.nii")
        al.inputs.out_file = str(tmp / "moving_al.nii")
        al.inputs.out_matrix = str(tmp / "fixed_to_moving.aff12.1D")
        al.inputs.cost = "nmi"
        al.inputs.warp_type = "affine_general"
        al.inputs.center_of_mass = ""
        al.inputs.outputtype = "NIFTI"
        if fmask is not None:
            write_scratch_image(sitk.Cast(fmask, sitk.sitkFloat32), str(tmp / "weight.nii"))
            al.inputs.weight = str(tmp / "weight.nii")
        if mmask is not None:
            write_scratch_image(mmask, str(tmp / "source_mask.nii"))
            al.inputs.source_mask = str(tmp / "source_mask.nii")
        al.inputs.environ = {"AFNI_RANDOM_SEEDVAL": str(int(settings.seed) + 1),
                             "OMP_NUM_THREADS": str(settings.threads or 1)}
        al.terminal_output = "allatonce"
        res = al.run(cwd=str(tmp))
        transform = parse_aff12(tmp / "fixed_to_moving.aff12.1D")
        log = f"{al.cmdline}\n{res.runtime.stdout}\n{res.runtime.stderr}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RegistrationResult(transform=transform, runtime_s=time.perf_counter() - t0, backend="afni", log=log)
