"""Synthetic 3D head phantoms: a CT (HU), a misaligned T2-like MR and the true affine.

The project has no same-patient 3D CT/MR pairs, so the paired cohort is made
here. Each patient is an analytic head: nested, deformed ellipsoidal shells for
scalp, skull (5-8 mm), CSF, a gyrated grey-matter ribbon and white matter, two
lateral ventricles and a nose. The anatomy is a function of physical position
(mm), so the CT and the MR are each sampled on their own grid:

* CT grid: ``ct_spacing_mm`` (x, y, z), extent ``fov_mm``, LPS, identity
  direction, centred on the physical origin; the head centre is placed a few
  mm off centre (per patient).
* MR grid: ``mr_spacing_mm``, extent ``fov_mm`` enlarged by
  :data:`MR_FOV_MARGIN` per axis (so the CT's field of view stays inside the MR
  after misalignment), LPS, identity direction, centred on the origin.
* ``truth`` is an ITK affine ``T`` mapping a CT (fixed) physical point ``p`` to
  the MR (moving) physical point ``T(p)``; the MR voxel at ``q`` shows the
  anatomy at ``T^-1(q)``, so ``sitk.Resample(mr, ct, truth)`` puts the MR onto
  the CT anatomy (ITK resampling convention: output(p) = input(T(p))).

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
:func:`ct2mr.registration.quality.tre_mm`) and :func:`brain_points`
(target points inside the brain of a label map).

CLI (``ct2mr phantom``)::

    --patient P01              patient id (part of the random seed)       [required]
    --seed 2018                cohort seed                                 [default 2018]
    --ct PATH                  CT output: .nii.gz/.nii/.mha/.nrrd, or a path
                               without an image ending = DICOM series folder
    --mr PATH                  MR output, same rule
    --truth PATH.json          true affine (see :func:`truth_to_json`)
    --labels PATH.nii.gz       label map on the CT grid (uint8, see LABELS)
    --export FOLDER            the CT as a scanner's export: localizer, axial 5 /
                               2.5 mm, tilted and uneven axial series, a coronal
                               reformat, previews (:mod:`ct2mr.phantom_export`;
                               fixed geometry, not the --ct-spacing / --fov ones)
    --dicomdir                 with --export: a DICOMDIR index and nested folders
    --ct-spacing X Y Z         mm, default 0.8 0.8 2.5
    --mr-spacing X Y Z         mm, default 1.2 1.1 3.0
    --fov X Y Z                mm, default 210 240 120
    --max-rotation-deg D       default 8
    --max-translation-mm D     default 8
    --max-scale S              default 0.04 (scales in 1 +- S)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from ct2mr.atomic import write_json
from ct2mr.errors import InputError
from ct2mr.registration.base import as_affine
from ct2mr.registration.quality import tre_mm  # noqa: F401 - re-exported; the one TRE function

log = logging.getLogger(__name__)

#: label values of :attr:`PhantomPatient.labels`
LABELS: dict[str, int] = {
    "air": 0,
    "scalp": 1,
    "skull": 2,
    "csf": 3,
    "grey_matter": 4,
    "white_matter": 5,
    "ventricles": 6,
}
#: the MR field of view is the CT's ``fov_mm`` times this, per axis
MR_FOV_MARGIN = 1.25
#: width (mm) of the linear partial-volume ramp at every tissue boundary
RAMP_MM = 1.0

#: text stored in the truth JSON
TRUTH_CONVENTION = (
    "ITK AffineTransform: maps a fixed (CT) physical point p (mm, LPS) to the moving (MR) point "
    "q = matrix @ (p - center) + center + translation; registered_MR(p) = MR(q), i.e. "
    "sitk.Resample(mr, ct, transform)"
)


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


# --------------------------------------------------------------------------- anatomy


def _rng(patient: str, seed: int) -> np.random.Generator:
    """Generator seeded from (patient, seed), stable across platforms and runs."""
    key = int.from_bytes(hashlib.sha256(patient.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key]))


@dataclass(frozen=True)
class _Anatomy:
    """Drawn parameters of one head (all lengths mm, physical LPS frame)."""

    centre: np.ndarray  # (3,) head centre
    axes: np.ndarray  # (3,) outer scalp semi-axes
    shape_coef: np.ndarray  # (9,) low-order shape deformation
    t_scalp: float
    t_skull: float
    t_csf: float
    t_gm: float
    gyri_k: np.ndarray  # (6, 3) wave vectors (rad/mm) of the gyral pattern
    gyri_phase: np.ndarray  # (6,)
    vent_centres: np.ndarray  # (2, 3)
    vent_axes: np.ndarray  # (2, 3)
    vent_rot: np.ndarray  # (2, 3, 3) rotation of each ventricle ellipsoid
    nose_centre: np.ndarray
    nose_axes: np.ndarray
    ct_values: dict[str, float]
    ct_noise: float
    mr_values: dict[str, float]
    mr_noise: float
    bias_coef: np.ndarray  # (10,) quadratic bias field coefficients
    deep_gm_centres: np.ndarray  # (2, 3) thalami
    deep_gm_axes: np.ndarray  # (2, 3)
    fissure_half_width: float  # interhemispheric fissure (CSF sheet), mm
    fissure_bottom_z: float  # the fissure reaches down to this z (mm, above the ventricles)

    def summary(self) -> dict[str, Any]:
        return {
            "centre_mm": self.centre.round(2).tolist(),
            "head_semi_axes_mm": self.axes.round(2).tolist(),
            "scalp_mm": round(self.t_scalp, 2),
            "skull_mm": round(self.t_skull, 2),
            "csf_mm": round(self.t_csf, 2),
            "grey_matter_mm": round(self.t_gm, 2),
            "ventricle_semi_axes_mm": self.vent_axes.round(2).tolist(),
            "ct_values_hu": {k: round(v, 1) for k, v in self.ct_values.items()},
            "ct_noise_hu": round(self.ct_noise, 2),
            "mr_values": {k: round(v, 1) for k, v in self.mr_values.items()},
            "mr_noise": round(self.mr_noise, 2),
        }


def _rot(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx for angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    """Draw one head. The order of draws is fixed (outputs depend on it)."""
    u = rng.uniform
    centre = np.array([u(-8, 8), u(-8, 8), u(-6, 6)])
    axes = np.array([u(70, 80), u(88, 100), u(95, 110)])
    shape_coef = rng.normal(0.0, 0.02, 9)
    t_scalp, t_skull, t_csf, t_gm = u(4, 7), u(5, 8), u(1.5, 3.0), u(3.5, 5.0)
    n_dir = rng.normal(size=(6, 3))
    n_dir /= np.linalg.norm(n_dir, axis=1, keepdims=True)
    gyri_k = n_dir * (2 * np.pi / rng.uniform(12, 18, (6, 1)))
    gyri_phase = rng.uniform(0, 2 * np.pi, 6)
    vscale = u(0.7, 1.4)
    vx, vy, vz = u(4.0, 7.0), u(-8, 0), u(8, 18)  # lateral offset, anterior shift, height
    base_axes = np.array([u(4.5, 6.5), u(20, 26), u(8, 11)]) * np.array([vscale, 1.0, vscale])
    splay = np.deg2rad(u(5, 12))
    vent_centres = np.array([centre + [-vx, vy, vz], centre + [vx, vy, vz]])
    vent_axes = np.array([base_axes * [1, u(0.9, 1.1), 1], base_axes * [1, u(0.9, 1.1), 1]])
    # anterior horns splay apart: rotate about z, opposite signs for right/left
    vent_rot = np.array([_rot(0, 0, splay), _rot(0, 0, -splay)])
    nose_centre = centre + [u(-2, 2), -axes[1] * u(0.92, 0.98), u(-45, -30)]
    nose_axes = np.array([u(10, 14), u(16, 22), u(22, 28)])
    ct_values = {
        "air": -1000.0,
        "scalp": u(30, 50),
        "skull": u(1100, 1500),  # outer and inner tables; the diploe is 40 % less dense
        "csf": u(5, 12),
        "gm": u(35, 42),
        "wm": u(25, 31),
        "vent": u(5, 12),
    }
    ct_noise = u(5, 10)
    csf = u(900, 1000)
    mr_values = {
        "air": 0.0,
        "scalp": u(420, 540),
        "skull": u(25, 60),
        "csf": csf,
        "gm": u(560, 660),
        "wm": u(380, 460),
        "vent": csf * u(0.97, 1.03),
    }
    mr_noise = u(8, 20)
    bias_coef = rng.uniform(-1, 1, 10)
    tx, ty, tz = u(9, 12), vy + u(6, 12), vz - u(11, 15)
    deep_gm_centres = np.array([centre + [-tx, ty, tz], centre + [tx, ty, tz]])
    deep_gm_axes = np.array([[u(6, 8), u(10, 13), u(6, 8)]] * 2)
    fissure_half_width = u(0.8, 1.5)
    fissure_bottom_z = float(centre[2] + vz + base_axes[2] + u(2, 5))
    return _Anatomy(
        centre=centre,
        axes=axes,
        shape_coef=shape_coef,
        t_scalp=t_scalp,
        t_skull=t_skull,
        t_csf=t_csf,
        t_gm=t_gm,
        gyri_k=gyri_k,
        gyri_phase=gyri_phase,
        vent_centres=vent_centres,
        vent_axes=vent_axes,
        vent_rot=vent_rot,
        nose_centre=nose_centre,
        nose_axes=nose_axes,
        ct_values=ct_values,
        ct_noise=ct_noise,
        mr_values=mr_values,
        mr_noise=mr_noise,
        bias_coef=bias_coef,
        deep_gm_centres=deep_gm_centres,
        deep_gm_axes=deep_gm_axes,
        fissure_half_width=fissure_half_width,
        fissure_bottom_z=fissure_bottom_z,
    )


def _ramp(x: np.ndarray) -> np.ndarray:
    """Partial-volume fraction: 0 for x <= -RAMP_MM/2, 1 for x >= RAMP_MM/2, linear between."""
    return np.clip(0.5 + x / RAMP_MM, 0.0, 1.0)


def _matmul_small(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for (N, k) x (k, j) with tiny k, j, without BLAS (its threads stall on a busy machine)."""
    out = np.empty((x.shape[0], m.shape[1]), dtype=x.dtype)
    for j in range(m.shape[1]):
        col = x[:, 0] * m[0, j]
        for i in range(1, m.shape[0]):
            col += x[:, i] * m[i, j]
        out[:, j] = col
    return out


def _affine(x: np.ndarray, m: np.ndarray, off: np.ndarray) -> np.ndarray:
    """``x @ m.T + off`` for points (N, 3)."""
    out = _matmul_small(x, np.ascontiguousarray(m.T))
    out += off
    return out


def _near_box(p: np.ndarray, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Boolean mask of points within the axis-aligned box ``centre +- half`` (mm)."""
    lo, hi = centre - half, centre + half
    near = (p[:, 2] >= lo[2]) & (p[:, 2] <= hi[2])
    if not near.any():
        return near
    for ax in (0, 1):
        near &= (p[:, ax] >= lo[ax]) & (p[:, ax] <= hi[ax])
    return near


def _ellipsoid_depth(p: np.ndarray, centre: np.ndarray, axes: np.ndarray, rot: np.ndarray | None = None) -> np.ndarray:
    """Radial depth (mm) of points inside an ellipsoid: > 0 inside, < 0 outside."""
    d = p - centre.astype(p.dtype)
    if rot is not None:
        d = _matmul_small(d, rot.astype(p.dtype))  # into the ellipsoid's own frame (rot columns = its axes)
    dist = np.sqrt((d * d).sum(axis=1))
    da = d * (1.0 / axes).astype(p.dtype)
    r = np.sqrt((da * da).sum(axis=1))
    return dist / np.maximum(r, 1e-9) - dist


def _tissue_fractions(
    a: _Anatomy, p: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_fractions_core` on the points that can be inside the head; air elsewhere."""
    f = p.dtype.type
    bound = (a.axes * (1.0 + np.abs(a.shape_coef).sum()) + RAMP_MM).astype(p.dtype)
    d = (p - a.centre.astype(p.dtype)) * (f(1.0) / bound)
    cand = (d * d).sum(axis=1) <= 1.0
    cand |= _near_box(p, a.nose_centre, a.nose_axes + RAMP_MM)
    if cand.all():
        return _fractions_core(a, p)
    n = len(p)
    s_c, vent_c, lab_c, dip_c = _fractions_core(a, p[cand])
    s = []
    for sc in s_c:
        full = np.zeros(n, dtype=p.dtype)
        full[cand] = sc
        s.append(full)
    s_vent = np.zeros(n, dtype=p.dtype)
    s_vent[cand] = vent_c
    labels = np.zeros(n, dtype=np.uint8)
    labels[cand] = lab_c
    diploe = np.ones(n, dtype=p.dtype)
    diploe[cand] = dip_c
    return s, s_vent, labels, diploe


def _fractions_core(
    a: _Anatomy, p: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Partial-volume fractions at physical points ``p`` (N, 3), in mm.

    Returns ``(s, s_vent, labels, diploe)``: ``s[k]`` is the fraction deeper than
    boundary k (0 scalp surface, 1 skull outer, 2 skull inner, 3 grey-matter
    surface, 4 white-matter surface); ``s_vent`` the ventricle fraction;
    ``labels`` the hard label (uint8, :data:`LABELS`); ``diploe`` the relative
    skull density (0.6..1, darker cancellous middle layer).
    Expensive terms are only evaluated where they can matter.
    """
    n = len(p)
    f = p.dtype.type
    d = p - a.centre.astype(p.dtype)
    dist = np.sqrt((d * d).sum(axis=1))
    unit = d / np.maximum(dist, f(1e-6))[:, None]
    ux, uy, uz = unit[:, 0], unit[:, 1], unit[:, 2]
    ua = unit * (1.0 / a.axes).astype(p.dtype)
    radius = 1.0 / np.sqrt((ua * ua).sum(axis=1))
    c = [f(v) for v in a.shape_coef]
    radius *= 1.0 + (
        c[0] * ux * uy
        + c[1] * uy * uz
        + c[2] * ux * uz
        + c[3] * (ux * ux - uy * uy)
        + c[4] * (3 * uz * uz - 1)
        + c[5] * uy**3
        + c[6] * uz**3
        + c[7] * ux * uy * uz
        + c[8] * uy
    )
    depth = radius - dist  # mm below the scalp surface, along the ray from the centre
    b1 = a.t_scalp
    b2 = b1 + a.t_skull
    s0 = _ramp(depth)
    # nose: only near its bounding box
    near = _near_box(p, a.nose_centre, a.nose_axes + RAMP_MM)
    if near.any():
        s0[near] = np.maximum(s0[near], _ramp(_ellipsoid_depth(p[near], a.nose_centre, a.nose_axes)))
    s1 = _ramp(depth - b1)
    s2 = _ramp(depth - b2)
    s3 = np.zeros(n, dtype=p.dtype)
    s4 = np.zeros(n, dtype=p.dtype)
    inner = depth > b2 - RAMP_MM
    if inner.any():
        # gyral pattern: waves on the (scaled) unit sphere, std ~ 1
        waves = _matmul_small(unit[inner], (65.0 * a.gyri_k.T).astype(p.dtype))
        waves += a.gyri_phase.astype(p.dtype)
        gyri = np.sin(waves, out=waves).sum(axis=1) / f(np.sqrt(3.0))
        b3 = b2 + a.t_csf + 6.0 * np.clip(gyri - f(0.3), 0.0, None)  # sulci: CSF reaches deeper
        b4 = b3 + a.t_gm + 1.5 * np.clip(-gyri, 0.0, None)  # thicker cortex on the gyral crowns
        di = depth[inner]
        s3[inner] = _ramp(di - b3)
        s4[inner] = _ramp(di - b4)
    s_vent = np.zeros(n, dtype=p.dtype)
    for vc, va, vr in zip(a.vent_centres, a.vent_axes, a.vent_rot, strict=True):
        near = _near_box(p, vc, np.full(3, va.max() + RAMP_MM))
        if near.any():
            s_vent[near] = np.maximum(s_vent[near], _ramp(_ellipsoid_depth(p[near], vc, va, vr)))
    s_vent *= s4  # ventricles only inside white matter
    # interhemispheric fissure: a CSF sheet lined with cortex, from the vertex down to above the ventricles
    near = (np.abs(p[:, 0] - f(a.centre[0])) <= a.fissure_half_width + a.t_gm + RAMP_MM) & (s3 > 0)
    if near.any():
        fd = np.abs(p[near, 0] - f(a.centre[0]))
        above = _ramp(p[near, 2] - f(a.fissure_bottom_z))
        s3[near] *= 1.0 - _ramp(f(a.fissure_half_width) - fd) * above
        s4[near] *= 1.0 - _ramp(f(a.fissure_half_width + a.t_gm) - fd) * above
    # deep grey matter (thalami) inside the white matter
    for gc, ga in zip(a.deep_gm_centres, a.deep_gm_axes, strict=True):
        near = _near_box(p, gc, ga + RAMP_MM)
        if near.any():
            s4[near] *= 1.0 - _ramp(_ellipsoid_depth(p[near], gc, ga))
    s = [s0, s1, s2, s3, s4]
    labels = np.zeros(n, dtype=np.uint8)
    for k, sk in enumerate(s, start=1):
        labels[sk >= 0.5] = k
    labels[s_vent >= 0.5] = LABELS["ventricles"]
    mid = f((b1 + b2) / 2)
    diploe = np.ones(n, dtype=p.dtype)
    bone = (s1 > 0) & (s2 < 1)
    diploe[bone] = 1.0 - 0.4 * np.exp(-(((depth[bone] - mid) / f(a.t_skull / 4)) ** 2))
    return s, s_vent, labels, diploe


def _mix(s: list[np.ndarray], s_vent: np.ndarray, v: dict[str, float], skull: np.ndarray | float) -> np.ndarray:
    """Intensity from nested-layer fractions and per-tissue values."""
    out = v["air"] + s[0] * (v["scalp"] - v["air"])
    out += s[1] * (skull - v["scalp"])
    out += s[2] * (v["csf"] - skull)
    out += s[3] * (v["gm"] - v["csf"])
    out += s[4] * (v["wm"] - v["gm"])
    out += s_vent * (v["vent"] - v["wm"])
    return out


def _grid(spacing: tuple[float, float, float], fov: tuple[float, float, float]) -> sitk.Image:
    """Empty LPS grid, identity direction, covering ``fov`` (mm) centred on the origin."""
    spacing_a = np.asarray(spacing, dtype=float)
    size = np.maximum(np.round(np.asarray(fov, dtype=float) / spacing_a).astype(int), 1)
    img = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing_a])
    img.SetOrigin([float(o) for o in -(size - 1) * spacing_a / 2])
    return img


def _points(ref: sitk.Image, z: int) -> np.ndarray:
    """Physical points (N, 3) of slice ``z`` of ``ref`` (identity direction), x fastest."""
    nx, ny, _ = ref.GetSize()
    sx, sy, sz = ref.GetSpacing()
    ox, oy, oz = ref.GetOrigin()
    yy, xx = np.meshgrid(oy + sy * np.arange(ny), ox + sx * np.arange(nx), indexing="ij")
    pts = np.empty((xx.size, 3), dtype=np.float32)
    pts[:, 0], pts[:, 1], pts[:, 2] = xx.ravel(), yy.ravel(), oz + sz * z
    return pts


def _draw_truth(rng: np.random.Generator, params: PhantomParams, centre: np.ndarray) -> sitk.AffineTransform:
    """Random affine (CT point -> MR point) about the head centre."""
    ang = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg, 3))
    scale = 1.0 + rng.uniform(-params.max_scale, params.max_scale, 3)
    trans = rng.uniform(-params.max_translation_mm, params.max_translation_mm, 3)
    t = sitk.AffineTransform(3)
    t.SetCenter([float(v) for v in centre])
    t.SetMatrix([float(v) for v in (_rot(*ang) @ np.diag(scale)).ravel()])
    t.SetTranslation([float(v) for v in trans])
    return t


def _draw(
    patient: str, seed: int, params: PhantomParams
) -> tuple[_Anatomy, sitk.AffineTransform, list[np.random.SeedSequence]]:
    """Anatomy, truth and the seeds of the CT / MR noise streams, all from ``(patient, seed)``."""
    rng = _rng(patient, seed)
    anatomy = _draw_anatomy(rng)
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
    ref = _grid(params.ct_spacing_mm, params.fov_mm)
    nx, ny, nz = ref.GetSize()
    ct_arr = np.empty((nz, ny, nx), dtype=np.float32)
    lab_arr = np.empty((nz, ny, nx), dtype=np.uint8)
    for z in range(nz):
        s, s_vent, lab, diploe = _tissue_fractions(anatomy, _points(ref, z))
        skull = anatomy.ct_values["skull"] * diploe
        ct_arr[z] = _mix(s, s_vent, anatomy.ct_values, skull).reshape(ny, nx)
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
    ref = _grid(params.mr_spacing_mm, mr_fov)  # type: ignore[arg-type]
    # the MR voxel at q shows the anatomy at truth^-1(q) = m_inv @ q + off
    inv = truth.GetInverse()
    m_inv = np.asarray(inv.GetMatrix(), dtype=np.float32).reshape(3, 3)
    off = np.asarray(inv.TransformPoint((0.0, 0.0, 0.0)), dtype=np.float32)
    half_extent = (np.asarray(mr_fov) / 2).astype(np.float32)
    mx, my, mz = ref.GetSize()
    mr_arr = np.empty((mz, my, mx), dtype=np.float32)
    for z in range(mz):
        q = _points(ref, z)
        s, s_vent, _, _ = _tissue_fractions(anatomy, _affine(q, m_inv, off))
        val = _mix(s, s_vent, anatomy.mr_values, anatomy.mr_values["skull"])
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
        _, _, lab, _ = _tissue_fractions(anatomy, _affine(_points(ref, z), m_inv, off))
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


# --------------------------------------------------------------------------- truth


def truth_to_json(transform: sitk.Transform) -> dict[str, Any]:
    """JSON-ready dict of an affine (CT/fixed point -> MR/moving point, mm, LPS).

    Keys: ``matrix`` (row-major 3x3), ``translation`` (3), ``center`` (3), all mm,
    and ``convention`` (text). ITK semantics:
    ``q = matrix @ (p - center) + center + translation``.
    """
    aff = sitk.AffineTransform(transform) if isinstance(transform, sitk.AffineTransform) else as_affine(transform)
    return {
        "matrix": np.asarray(aff.GetMatrix()).reshape(3, 3).tolist(),
        "translation": list(aff.GetTranslation()),
        "center": list(aff.GetCenter()),
        "convention": TRUTH_CONVENTION,
    }


def truth_from_json(path: str | os.PathLike[str]) -> sitk.AffineTransform:
    """Read a truth JSON written by :func:`truth_to_json` (CT point -> MR point).

    Raises InputError naming the file and the key when it is missing or malformed.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, None, "does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(p, None, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(p, None, "expected a JSON object with matrix, translation, center")
    shapes = {"matrix": (3, 3), "translation": (3,), "center": (3,)}
    vals: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key not in data:
            raise InputError(p, key, "missing")
        try:
            arr = np.asarray(data[key], dtype=float)
        except (TypeError, ValueError):
            raise InputError(p, key, f"expected numbers of shape {shape}") from None
        if arr.shape != shape or not np.all(np.isfinite(arr)):
            raise InputError(p, key, f"expected finite numbers of shape {shape}, got shape {arr.shape}")
        vals[key] = arr
    t = sitk.AffineTransform(3)
    t.SetCenter([float(v) for v in vals["center"]])
    t.SetMatrix([float(v) for v in vals["matrix"].ravel()])
    t.SetTranslation([float(v) for v in vals["translation"]])
    return t


def brain_points(labels: sitk.Image, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Up to ``n`` random physical points (N, 3), mm, of brain voxels (labels 3-6) of a label map.

    Target points for :func:`tre_mm`: :func:`ct2mr.registration.quality.mask_points`
    on the phantom's brain.
    """
    from ct2mr.registration.quality import mask_points

    return mask_points(labels >= LABELS["csf"], n, seed)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ct2mr phantom`` (see the module docstring)."""
    d = PhantomParams()
    parser.add_argument("--patient", required=True, help="patient id, e.g. P01 (part of the random seed)")
    parser.add_argument("--seed", type=int, default=2018, help="cohort seed (default 2018)")
    parser.add_argument("--ct", help="CT output (.nii.gz/.nii/.mha/.nrrd; no image ending = DICOM series folder)")
    parser.add_argument("--mr", help="MR output (same rule as --ct)")
    parser.add_argument("--truth", help="true affine JSON (CT point -> MR point)")
    parser.add_argument("--labels", help="label map on the CT grid (.nii.gz/.nii/.mha/.nrrd)")
    parser.add_argument("--export", help="folder: the CT as a scanner's export (several series, previews; "
                                         "see ct2mr.phantom_export)")
    parser.add_argument("--dicomdir", action="store_true", help="with --export: a DICOMDIR and nested folders")
    parser.add_argument("--ct-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.ct_spacing_mm)
    parser.add_argument("--mr-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.mr_spacing_mm)
    parser.add_argument("--fov", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.fov_mm)
    parser.add_argument("--max-rotation-deg", type=float, default=d.max_rotation_deg)
    parser.add_argument("--max-translation-mm", type=float, default=d.max_translation_mm)
    parser.add_argument("--max-scale", type=float, default=d.max_scale)


def run(args: argparse.Namespace) -> None:
    """Generate one patient and write the requested outputs (only what they need is computed)."""
    from ct2mr.imageio import image_suffix, write_image

    if not (args.ct or args.mr or args.truth or args.labels or args.export):
        raise InputError(None, "outputs", "give at least one of --ct, --mr, --truth, --labels, --export")
    if args.dicomdir and not args.export:
        raise InputError(None, "--dicomdir", "applies only with --export")
    for name in ("ct_spacing", "mr_spacing", "fov"):
        if any(v <= 0 for v in getattr(args, name)):
            raise InputError(None, f"--{name.replace('_', '-')}", "must be > 0")
    if args.labels and image_suffix(args.labels) is None:
        raise InputError(args.labels, "--labels", "needs an image ending (.nii.gz, .nii, .mha, .nrrd)")
    params = PhantomParams(
        ct_spacing_mm=tuple(args.ct_spacing),
        mr_spacing_mm=tuple(args.mr_spacing),
        fov_mm=tuple(args.fov),
        max_rotation_deg=args.max_rotation_deg,
        max_translation_mm=args.max_translation_mm,
        max_scale=args.max_scale,
    )
    log.info("phantom %s (seed %d): %s", args.patient, args.seed, json.dumps(anatomy_summary(args.patient, args.seed)))
    uid_seed = f"{args.patient}-{args.seed}-{asdict(params)}"
    if args.ct or args.labels:
        t0 = time.perf_counter()
        ct, labels = make_ct(args.patient, args.seed, params)
        log.info("CT %s generated in %.2f s", "x".join(map(str, ct.GetSize())), time.perf_counter() - t0)
        if args.ct:
            _write(ct, args.ct, "CT", args.patient, uid_seed)
        if args.labels:
            write_image(labels, args.labels)
            log.info("wrote labels %s", args.labels)
    if args.mr:
        t0 = time.perf_counter()
        mr = make_mr(args.patient, args.seed, params)
        log.info("MR %s generated in %.2f s", "x".join(map(str, mr.GetSize())), time.perf_counter() - t0)
        _write(mr, args.mr, "MR", args.patient, uid_seed)
    if args.export:
        from ct2mr.phantom_export import write_export

        summary = write_export(args.export, args.patient, args.seed, dicomdir=args.dicomdir)
        log.info("wrote export %s: %s", args.export, json.dumps(summary))
    if args.truth:
        data = truth_to_json(make_truth(args.patient, args.seed, params))
        data.update(patient=args.patient, seed=args.seed, params=asdict(params))
        write_json(args.truth, data)
        log.info("wrote truth %s", args.truth)


def _write(img: sitk.Image, out: str, modality: Literal["CT", "MR"], patient: str, uid_seed: str) -> None:
    """Write to ``out``: a DICOM series folder when it has no image ending, else NIfTI/MHA/NRRD."""
    from ct2mr.imageio import image_suffix, write_dicom_series, write_image

    if image_suffix(out) is None:
        write_dicom_series(img, out, modality=modality, series_description=f"ct2mr phantom {modality}",
                           patient_id=patient, uid_seed=f"{uid_seed}-{modality}")
    else:
        write_image(img, out)
    log.info("wrote %s %s", modality, out)
