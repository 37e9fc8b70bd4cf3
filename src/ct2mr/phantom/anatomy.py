"""The analytic head of the phantom cohort: random anatomy, tissue fractions, intensity mixing.

A head is a function of physical position (mm, LPS): nested, deformed ellipsoidal
shells for scalp, skull (5-8 mm), CSF, a gyrated grey-matter ribbon and white
matter, two lateral ventricles, thalami, an interhemispheric fissure and a nose
(:class:`Anatomy`, drawn by :func:`draw_anatomy` from :func:`patient_rng`).
:func:`tissue_fractions` gives the partial-volume fractions and hard labels
(:data:`LABELS`) at any points, :func:`mix` turns fractions into intensities, and
:func:`lps_grid` / :func:`slice_points` / :func:`affine_points` are the geometry
helpers that sample it. The images, the misalignment and the truth are made in
:mod:`ct2mr.phantom.patient`; the scanner-like DICOM export in
:mod:`ct2mr.phantom.export`.

Partial volume: every tissue boundary is a linear ramp :data:`RAMP_MM` wide in
physical space (independent of the grid), so edges are not pure staircases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

#: label values of :attr:`ct2mr.phantom.patient.PhantomPatient.labels` (and of :func:`tissue_fractions`)
LABELS: dict[str, int] = {
    "air": 0,
    "scalp": 1,
    "skull": 2,
    "csf": 3,
    "grey_matter": 4,
    "white_matter": 5,
    "ventricles": 6,
}
#: width (mm) of the linear partial-volume ramp at every tissue boundary
RAMP_MM = 1.0


def patient_rng(patient: str, seed: int) -> np.random.Generator:
    """Generator seeded from (patient, seed), stable across platforms and runs."""
    key = int.from_bytes(hashlib.sha256(patient.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, key]))


@dataclass(frozen=True)
class Anatomy:
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


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx for angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
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
    vent_rot = np.array([rotation(0, 0, splay), rotation(0, 0, -splay)])
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
    return Anatomy(
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


def patient_anatomy(patient: str, seed: int) -> Anatomy:
    """The anatomy of patient ``(patient, seed)``: the first draws of :func:`patient_rng`."""
    return draw_anatomy(patient_rng(patient, seed))


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


def affine_points(x: np.ndarray, m: np.ndarray, off: np.ndarray) -> np.ndarray:
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


def tissue_fractions(
    a: Anatomy, p: np.ndarray
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
    a: Anatomy, p: np.ndarray
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


def mix(s: list[np.ndarray], s_vent: np.ndarray, v: dict[str, float], skull: np.ndarray | float) -> np.ndarray:
    """Intensity from nested-layer fractions and per-tissue values."""
    out = v["air"] + s[0] * (v["scalp"] - v["air"])
    out += s[1] * (skull - v["scalp"])
    out += s[2] * (v["csf"] - skull)
    out += s[3] * (v["gm"] - v["csf"])
    out += s[4] * (v["wm"] - v["gm"])
    out += s_vent * (v["vent"] - v["wm"])
    return out


def lps_grid(spacing: tuple[float, float, float], fov: tuple[float, float, float]) -> sitk.Image:
    """Empty LPS grid, identity direction, covering ``fov`` (mm) centred on the origin."""
    spacing_a = np.asarray(spacing, dtype=float)
    size = np.maximum(np.round(np.asarray(fov, dtype=float) / spacing_a).astype(int), 1)
    img = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    img.SetSpacing([float(s) for s in spacing_a])
    img.SetOrigin([float(o) for o in -(size - 1) * spacing_a / 2])
    return img


def slice_points(ref: sitk.Image, z: int) -> np.ndarray:
    """Physical points (N, 3) of slice ``z`` of ``ref`` (identity direction), x fastest."""
    nx, ny, _ = ref.GetSize()
    sx, sy, sz = ref.GetSpacing()
    ox, oy, oz = ref.GetOrigin()
    yy, xx = np.meshgrid(oy + sy * np.arange(ny), ox + sx * np.arange(nx), indexing="ij")
    pts = np.empty((xx.size, 3), dtype=np.float32)
    pts[:, 0], pts[:, 1], pts[:, 2] = xx.ravel(), yy.ravel(), oz + sz * z
    return pts
