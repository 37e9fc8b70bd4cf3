"""Synthetic 3D head phantoms: a CT (HU), a misaligned T2-like MR and the true affine.

The project has no same-patient 3D CT/MR pairs, so the paired cohort is made
here. Each patient is an analytic head (:mod:`ct2mr.phantom.anatomy`): nested,
deformed ellipsoidal shells for scalp, skull (5-8 mm), CSF, a gyrated grey-matter
ribbon and white matter, two lateral ventricles and a nose. The anatomy is a
function of physical position (mm), so the CT and the MR are each sampled on
their own grid:

* CT grid: ``ct_spacing_mm`` (x, y, z), extent ``fov_mm``, LPS, identity
  direction, centred on the physical origin; the head centre is placed a few
  mm off centre (per patient).
* MR grid: ``mr_spacing_mm``, extent ``fov_mm`` enlarged by
  :data:`MR_FOV_MARGIN` per axis (so the CT's field of view stays inside the MR
  after misalignment), LPS, identity direction, centred on the origin.
* ``truth`` is an ITK affine ``T`` mapping a CT (fixed) physical point ``p`` to
  the MR (moving) physical point ``T(p)``; the MR voxel at ``q`` shows the
  anatomy at ``T^-1(q)``, so ``sitk.Resample(mr, ct, truth)`` puts the MR onto
  the CT anatomy (ITK resampling convention: output(p) = input(T(p))). Written
  and read as JSON by :mod:`ct2mr.preprocess.registration.truth`.

Partial volume: every tissue boundary is a linear ramp 1 mm wide in physical
space (independent of the grid), so edges are not pure staircases.

Values: CT in HU (air -1000, scalp ~40, skull 1100-1500 with a diploe down to 60 % of that,
CSF ~8, GM ~38, WM ~28), Gaussian noise sigma 5-10 HU, int16 clipped to
[-1024, 3071]. MR T2-like, arbitrary units 0..~1100 (CSF/ventricles bright
~900-1000, GM ~600 > WM ~420, scalp fat ~480, skull ~40), times a smooth
quadratic bias field (within +-15 %), Rician noise, float32 >= 0.

Everything is deterministic from ``(patient, seed)``: anatomy and intensities
do not depend on the grid parameters, and each output is the same whichever
subset one CLI call writes (:func:`make_ct`, :func:`make_mr`,
:func:`make_truth` compute one part each; :func:`make_patient` all of them).
Default-size patient: ~1 s CPU (CT 262x300x48 + MR 219x273x50).

Helpers for registration tests: ``tre_mm`` (mean target registration
error of an estimated transform against the truth; re-exported from
:func:`ct2mr.preprocess.registration.quality.tre_mm`) and :func:`brain_points`
(target points inside the brain of a label map).

The command line (``ct2mr phantom``) is :mod:`ct2mr.phantom.command`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.phantom.anatomy import (
    LABELS,
    Anatomy,
    affine_points,
    draw_anatomy,
    lps_grid,
    mix,
    patient_rng,
    rotation,
    slice_points,
    tissue_fractions,
)
from ct2mr.preprocess.registration.quality import (
    mask_points,
    tre_mm,  # noqa: F401 - re-exported; the one TRE function
)

log = logging.getLogger(__name__)

#: the MR field of view is the CT's ``fov_mm`` times this, per axis
MR_FOV_MARGIN = 1.25


@dataclass(frozen=True)
class PhantomParams:
    """Acquisition geometry and misalignment range of the phantom cohort.

    Spacings and field of view are (x, y, z) in mm; the FOV is the CT's scanned
    extent, centred on the physical origin.
    """

    ct_spacing_mm: tuple[float, float, float] = (0.8, 0.8, 2.5)
    mr_spacing_mm: tuple[float, float, float] = (1.2, 1.1, 3.0)
    fov_mm: tuple[float, float, float] = (210.0, 240.0, 120.0)
    max_rotation_deg: float = 8.0
    max_translation_mm: float = 8.0
    max_scale: float = 0.04


@dataclass
class PhantomPatient:
    """One synthetic patient.

    Attributes
    ----------
    ct: int16 HU on the CT grid (LPS).
    mr: float32 T2-like MR (>= 0) on the MR grid (LPS), misaligned by ``truth``.
    labels: uint8 label map on the CT grid (see :data:`LABELS`).
    truth: AffineTransform, CT physical point -> MR physical point (mm).
    anatomy: the drawn anatomy parameters (for logging / provenance).
    """

    ct: sitk.Image
    mr: sitk.Image
    labels: sitk.Image
    truth: sitk.AffineTransform
    anatomy: dict[str, Any]


def _draw_truth(rng: np.random.Generator, params: PhantomParams, centre: np.ndarray) -> sitk.AffineTransform:
    """Random affine (CT point -> MR point) about the head centre."""
    ang = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg, 3))
    scale = 1.0 + rng.uniform(-params.max_scale, params.max_scale, 3)
    trans = rng.uniform(-params.max_translation_mm, params.max_translation_mm, 3)
    t = sitk.AffineTransform(3)
    t.SetCenter([float(v) for v in centre])
    t.SetMatrix([float(v) for v in (rotation(*ang) @ np.diag(scale)).ravel()])
    t.SetTranslation([float(v) for v in trans])
    return t


def _draw(
    patient: str, seed: int, params: PhantomParams
) -> tuple[Anatomy, sitk.AffineTransform, list[np.random.SeedSequence]]:
    """Anatomy, truth and the seeds of the CT / MR noise streams, all from ``(patient, seed)``."""
    rng = patient_rng(patient, seed)
    anatomy = draw_anatomy(rng)
    truth = _draw_truth(rng, params, anatomy.centre)
    noise_seeds = rng.bit_generator.seed_seq.spawn(2)  # type: ignore[attr-defined]
    return anatomy, truth, noise_seeds


def make_truth(patient: str, seed: int, params: PhantomParams | None = None) -> sitk.AffineTransform:
    """The true affine of a patient (CT physical point -> MR physical point, mm); no images computed."""
    return _draw(patient, seed, params or PhantomParams())[1]


def make_ct(patient: str, seed: int, params: PhantomParams | None = None) -> tuple[sitk.Image, sitk.Image]:
    """``(ct, labels)`` of a patient: int16 HU and uint8 labels on the CT grid (LPS)."""
    params = params or PhantomParams()
    anatomy, _, noise_seeds = _draw(patient, seed, params)
    ref = lps_grid(params.ct_spacing_mm, params.fov_mm)
    nx, ny, nz = ref.GetSize()
    ct_arr = np.empty((nz, ny, nx), dtype=np.float32)
    lab_arr = np.empty((nz, ny, nx), dtype=np.uint8)
    for z in range(nz):
        s, s_vent, lab, diploe = tissue_fractions(anatomy, slice_points(ref, z))
        skull = anatomy.ct_values["skull"] * diploe
        ct_arr[z] = mix(s, s_vent, anatomy.ct_values, skull).reshape(ny, nx)
        lab_arr[z] = lab.reshape(ny, nx)
    noise = np.random.default_rng(noise_seeds[0]).standard_normal(ct_arr.shape, dtype=np.float32)
    ct_arr += np.float32(anatomy.ct_noise) * noise
    ct = sitk.GetImageFromArray(np.clip(np.rint(ct_arr), -1024, 3071).astype(np.int16))
    ct.CopyInformation(ref)
    labels = sitk.GetImageFromArray(lab_arr)
    labels.CopyInformation(ref)
    return ct, labels


def make_mr(patient: str, seed: int, params: PhantomParams | None = None) -> sitk.Image:
    """The misaligned T2-like MR of a patient: float32 >= 0 on the MR grid (LPS)."""
    params = params or PhantomParams()
    anatomy, truth, noise_seeds = _draw(patient, seed, params)
    mr_fov = tuple(f * MR_FOV_MARGIN for f in params.fov_mm)
    ref = lps_grid(params.mr_spacing_mm, mr_fov)  # type: ignore[arg-type]
    # the MR voxel at q shows the anatomy at truth^-1(q) = m_inv @ q + off
    inv = truth.GetInverse()
    m_inv = np.asarray(inv.GetMatrix(), dtype=np.float32).reshape(3, 3)
    off = np.asarray(inv.TransformPoint((0.0, 0.0, 0.0)), dtype=np.float32)
    half_extent = (np.asarray(mr_fov) / 2).astype(np.float32)
    mx, my, mz = ref.GetSize()
    mr_arr = np.empty((mz, my, mx), dtype=np.float32)
    for z in range(mz):
        q = slice_points(ref, z)
        s, s_vent, _, _ = tissue_fractions(anatomy, affine_points(q, m_inv, off))
        val = mix(s, s_vent, anatomy.mr_values, anatomy.mr_values["skull"])
        # the bias field belongs to the scanner: a function of the MR's own coordinates
        mr_arr[z] = (val * _bias(anatomy.bias_coef, q / half_extent)).reshape(my, mx)
    rng = np.random.default_rng(noise_seeds[1])
    sigma = np.float32(anatomy.mr_noise)
    mr_arr += sigma * rng.standard_normal(mr_arr.shape, dtype=np.float32)
    np.square(mr_arr, out=mr_arr)
    imag = sigma * rng.standard_normal(mr_arr.shape, dtype=np.float32)
    mr_arr += np.square(imag, out=imag)
    np.sqrt(mr_arr, out=mr_arr)  # Rician: |signal + complex Gaussian noise|
    mr = sitk.GetImageFromArray(mr_arr)
    mr.CopyInformation(ref)
    return mr


def mr_labels(patient: str, seed: int, ref: sitk.Image, params: PhantomParams | None = None) -> sitk.Image:
    """Truth labels (uint8, :data:`LABELS`) of a patient's anatomy as its MR shows it, on any grid
    ``ref`` in MR space (identity direction, e.g. the MR resampled to 1 mm): the voxel at ``q`` gets
    the label at ``truth^-1(q)``, computed from the analytic anatomy (no label resampling)."""
    params = params or PhantomParams()
    if not np.allclose(np.asarray(ref.GetDirection()), np.eye(3).ravel()):
        raise InputError(None, "grid", "mr_labels needs an identity-direction (LPS) grid")
    anatomy, truth, _ = _draw(patient, seed, params)
    inv = truth.GetInverse()
    m_inv = np.asarray(inv.GetMatrix(), dtype=np.float32).reshape(3, 3)
    off = np.asarray(inv.TransformPoint((0.0, 0.0, 0.0)), dtype=np.float32)
    mx, my, mz = ref.GetSize()
    lab_arr = np.empty((mz, my, mx), dtype=np.uint8)
    for z in range(mz):
        _, _, lab, _ = tissue_fractions(anatomy, affine_points(slice_points(ref, z), m_inv, off))
        lab_arr[z] = lab.reshape(my, mx)
    out = sitk.GetImageFromArray(lab_arr)
    out.CopyInformation(ref)
    return out


def make_patient(patient: str, seed: int, params: PhantomParams | None = None) -> PhantomPatient:
    """Generate one synthetic patient, deterministically from ``(patient, seed)``.

    Equal to :func:`make_ct`, :func:`make_mr` and :func:`make_truth` called
    separately. See the module docstring for grids, values and the ``truth``
    convention.
    """
    params = params or PhantomParams()
    t0 = time.perf_counter()
    anatomy, truth, _ = _draw(patient, seed, params)
    ct, labels = make_ct(patient, seed, params)
    mr = make_mr(patient, seed, params)
    log.debug("phantom %s seed %d generated in %.2f s", patient, seed, time.perf_counter() - t0)
    return PhantomPatient(ct=ct, mr=mr, labels=labels, truth=truth, anatomy=anatomy.summary())


def anatomy_summary(patient: str, seed: int) -> dict[str, Any]:
    """The drawn anatomy parameters of a patient (sizes in mm, values in HU / MR units)."""
    return _draw(patient, seed, PhantomParams())[0].summary()


def _bias(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Smooth multiplicative bias field within [0.85, 1.15] at normalised coordinates ``x`` in [-1, 1]."""
    px, py, pz = x[:, 0], x[:, 1], x[:, 2]
    c = [x.dtype.type(v / 10.0) for v in coef]
    field = (
        c[0] * px + c[1] * py + c[2] * pz + c[3] * px * py + c[4] * py * pz
        + c[5] * px * pz + c[6] * px * px + c[7] * py * py + c[8] * pz * pz + c[9] * px * py * pz
    )  # |field| <= 1 for |x| <= 1
    return 1.0 + 0.15 * np.clip(field, -1.0, 1.0)


def brain_points(labels: sitk.Image, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Up to ``n`` random physical points (N, 3), mm, of brain voxels (labels 3-6) of a label map.

    Target points for :func:`tre_mm`: :func:`ct2mr.preprocess.registration.quality.mask_points`
    on the phantom's brain.
    """
    return mask_points(labels >= LABELS["csf"], n, seed)
