"""QA images: mask contours and two-image overlays as PNG (matplotlib, Agg backend).

Shared by skull masking (``masking_qa_{ct,mr}.png``) and registration
(``registration_qa.png``). Both functions take ``SimpleITK.Image`` volumes in
LPS (array ``[z, y, x]``) and draw, per row, three axial slices (at 30 %, 50 %
and 70 % of the z-range of interest) plus one coronal and one sagittal slice
through the centre (or the views a caller chooses, e.g. the MR masks' views through
the skull base). Views follow the radiological convention: axial slices with
anterior at the top and the patient's right on the image's left; coronal and
sagittal with superior at the top. Pixel aspect ratios follow the spacing.

API::

    save_contours_png(path, image, {"head": head_mask, "brain": brain_mask}, title="CT masks")
    save_overlay_png(path, fixed, {"before": moving_resampled_identity, "after": moving_registered},
                     title="MR -> CT")

Images are shown in grey with limits from the 1st/99th percentiles (or given
``vmin``/``vmax``). The overlay shows the fixed image in magenta and the moving
image in green: aligned structures look grey/white, misalignment shows colour
fringes. All inputs must share one grid (``size``) with the first image.
Outputs are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_figure

_COLOURS = ("#ff3030", "#30c0ff", "#ffd000", "#40ff40", "#ff40ff", "#ffffff")


def _arr(img: sitk.Image | np.ndarray) -> np.ndarray:
    return sitk.GetArrayFromImage(img) if isinstance(img, sitk.Image) else np.asarray(img)


def _spacing(img: sitk.Image | np.ndarray) -> tuple[float, float, float]:
    return tuple(img.GetSpacing()) if isinstance(img, sitk.Image) else (1.0, 1.0, 1.0)  # type: ignore[return-value]


def _views(shape: tuple[int, int, int], focus: np.ndarray | None,
           axial: Sequence[int] | None) -> list[tuple[str, int]]:
    """Axial indices at 30/50/70 % of the focus z-range, then coronal and sagittal centres."""
    nz, ny, nx = shape
    if focus is not None and focus.any():
        zs = np.flatnonzero(focus.any(axis=(1, 2)))
        ys = np.flatnonzero(focus.any(axis=(0, 2)))
        xs = np.flatnonzero(focus.any(axis=(0, 1)))
        z0, z1, yc, xc = zs[0], zs[-1], (ys[0] + ys[-1]) // 2, (xs[0] + xs[-1]) // 2
    else:
        z0, z1, yc, xc = 0, nz - 1, ny // 2, nx // 2
    if axial is None:
        axial = [int(round(z0 + f * (z1 - z0))) for f in (0.3, 0.5, 0.7)]
    return [("axial", int(k)) for k in axial] + [("coronal", int(yc)), ("sagittal", int(xc))]


def _cut(vol: np.ndarray, view: str, idx: int) -> np.ndarray:
    """2D view to show with imshow(origin='upper')."""
    if view == "axial":
        return vol[idx]
    if view == "coronal":
        return vol[:, idx, :][::-1]          # superior at the top
    return vol[:, :, idx][::-1]              # sagittal: superior at the top, anterior left


def _aspect(view: str, sp: tuple[float, float, float]) -> float:
    sx, sy, sz = sp
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def _limits(a: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    if vmin is None or vmax is None:
        sample = a.ravel()[:: max(1, a.size // 2_000_000)]
        lo, hi = np.percentile(sample, [1, 99])
        vmin = float(lo) if vmin is None else vmin
        vmax = float(hi) if vmax is None else vmax
    if vmax <= vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def _check_shape(ref: np.ndarray, other: np.ndarray, name: str) -> None:
    if other.shape != ref.shape:
        raise InputError(None, name, f"array shape {other.shape} differs from the image's {ref.shape}")


def _save(fig, path: str | os.PathLike[str], dpi: int) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt  # noqa: PLC0415

    write_figure(fig, path, dpi=dpi, facecolor="black")
    plt.close(fig)


def _figure(nrows: int, ncols: int):  # noqa: ANN202
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.2 * nrows), squeeze=False)
    fig.patch.set_facecolor("black")
    for ax in axes.ravel():
        ax.set_axis_off()
    return fig, axes


def save_contours_png(
    path: str | os.PathLike[str],
    image: sitk.Image | np.ndarray,
    masks: Mapping[str, sitk.Image | np.ndarray],
    *,
    title: str | None = None,
    axial: Sequence[int] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    dpi: int = 110,
    views: Sequence[tuple[str, int]] | None = None,
) -> None:
    """PNG of ``image`` (grey) with the contour of each mask (> 0) in its own colour.

    One row: 3 axial slices (``axial`` indices, default 30/50/70 % of the first
    mask's z-extent), one coronal and one sagittal slice through the first
    mask's bounding-box centre; or the given ``views`` (``("axial" | "coronal" |
    "sagittal", array index)`` pairs, e.g. through the skull base). A legend
    names the masks.
    """
    vol = _arr(image).astype(np.float32)
    mvols = {name: _arr(m) > 0 for name, m in masks.items()}
    for name, m in mvols.items():
        _check_shape(vol, m, name)
    first = next(iter(mvols.values()), None)
    if views is None:
        views = _views(vol.shape, first, axial)  # type: ignore[arg-type]
    else:
        axis = {"axial": 0, "coronal": 1, "sagittal": 2}
        for view, idx in views:
            if view not in axis or not 0 <= idx < vol.shape[axis[view]]:
                raise InputError(None, "views", f"({view!r}, {idx}) is not a view of a {vol.shape} volume")
    lo, hi = _limits(vol, vmin, vmax)
    sp = _spacing(image)
    fig, axes = _figure(1, len(views))
    for ax, (view, idx) in zip(axes[0], views, strict=True):
        ax.imshow(_cut(vol, view, idx), cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(view, sp),
                  interpolation="nearest")
        for (name, m), colour in zip(mvols.items(), _COLOURS, strict=False):
            cut = _cut(m, view, idx)
            if cut.any() and not cut.all():
                ax.contour(cut.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8)
        ax.set_title(f"{view} {idx}", color="white", fontsize=8)
    from matplotlib.lines import Line2D  # noqa: PLC0415

    handles = [Line2D([], [], color=c, label=n) for n, c in zip(mvols, _COLOURS, strict=False)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), facecolor="black",
                   labelcolor="white", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    _save(fig, path, dpi)


def save_overlay_png(
    path: str | os.PathLike[str],
    fixed: sitk.Image | np.ndarray,
    moving: sitk.Image | np.ndarray | Mapping[str, sitk.Image | np.ndarray],
    *,
    title: str | None = None,
    axial: Sequence[int] | None = None,
    fixed_range: tuple[float, float] | None = None,
    moving_range: tuple[float, float] | None = None,
    dpi: int = 110,
) -> None:
    """PNG fusing ``fixed`` (magenta) with each ``moving`` image (green), one row per moving image.

    ``moving`` is one image or a mapping ``label -> image`` (e.g. ``{"before": ...,
    "after": ...}``), each already on the fixed grid. Grey limits per image are
    its 1st/99th percentiles unless ``fixed_range`` / ``moving_range`` are given.
    Views: 3 axial (30/50/70 % of the z-range where ``fixed`` is above its
    limit's low end), coronal and sagittal through the centre.
    """
    f = _arr(fixed).astype(np.float32)
    movings = dict(moving) if isinstance(moving, Mapping) else {"moving": moving}
    mvols = {k: _arr(v).astype(np.float32) for k, v in movings.items()}
    for k, v in mvols.items():
        _check_shape(f, v, k)
    flo, fhi = fixed_range if fixed_range else _limits(f, None, None)
    fn = np.clip((f - flo) / (fhi - flo), 0, 1)
    views = _views(f.shape, fn > 0.05, axial)  # type: ignore[arg-type]
    sp = _spacing(fixed)
    fig, axes = _figure(len(mvols), len(views))
    for row, (label, m) in enumerate(mvols.items()):
        mlo, mhi = moving_range if moving_range else _limits(m, None, None)
        mn = np.clip((m - mlo) / (mhi - mlo), 0, 1)
        for col, (view, idx) in enumerate(views):
            a, b = _cut(fn, view, idx), _cut(mn, view, idx)
            rgb = np.stack([a, b, a], axis=-1)
            ax = axes[row, col]
            ax.imshow(rgb, aspect=_aspect(view, sp), interpolation="nearest")
            ax.set_title(f"{label}: {view} {idx}", color="white", fontsize=8)
    if title:
        fig.suptitle(title + "  (fixed magenta, moving green)", color="white", fontsize=10)
    _save(fig, path, dpi)
