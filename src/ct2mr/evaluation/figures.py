"""The paper's figures from our data (matplotlib, no display needed).

Figures (PNG, written atomically; all images are the 256x256 axial slices of the
slice files, shown with anterior at the top and the patient's right on the
image's left; grey levels 0..255 with fixed limits so panels are comparable):

``synthesis`` (paper Fig. 5)
    One row per chosen slice: input CT (W80/L40 window), synthesized MR,
    reference MR, absolute error ``|synthesized - reference|`` (grey levels,
    colour scale 0..``--error-max``).
``variants`` (paper Fig. 6)
    One row per chosen slice: input CT, the synthesized MR of each variant (in
    the order of ``--synth``), reference MR (when the patient has one).
``cycle`` (paper Fig. 7)
    One row per chosen slice and variant with a Syn_CT: input CT, synthesized
    MR, reconstructed CT ``Syn_CT(Syn_MR(CT))``, relative difference
    ``|reconstructed - input| / 255`` in percent of the 0..255 range.
``metrics``
    Per-patient MAE / PSNR / SSIM (columns), one colour per variant, for each
    region present in ``per_patient.tsv`` (rows: whole slice, head mask, brain
    mask); dashed lines: the variant's mean over patients. With a ``seed``
    column holding several seeds: a large dot per patient = mean over seeds,
    small dots = the single seeds.
``losses``
    Training losses of every ``losses.tsv`` given, one panel per loss column
    (validation MAE columns ``val_*`` included), one colour per variant (the model
    folder's name; for ``{variant}/seed{seed}/losses.tsv`` the variant folder's, one
    line style per seed), against the iteration.
``difference`` (where a variant's gain lies)
    Over every slice of the test patients (``--test-slices``): the per-pixel
    mean absolute error ``|synthesized - reference|`` of the variant
    (``--synth``) and of the baseline (``--baseline-synth``), and their
    difference variant - baseline (diverging colour map centred at 0: blue =
    the variant's error is lower there), with the contour of the head mask
    (pixels inside the head in at least half of the slices). Several synthesized
    files of one patient (seeds) are averaged. The title gives the mean
    difference inside and outside the head mask, so a reader sees whether a
    gain is in the head or in the background.
``tissues`` (segmentation agreement)
    One volume patient, one axial slice (the middle of its segmented brain): a row for the
    real MR and one per variant, each with the MR (grey levels 0..255) and its tissue map
    (CSF blue, GM ochre, WM white; ``ct2mr segment-tissues`` / ``ct2mr evaluate-volume``
    labels, shown on the MR's grid), titled with the variant's Dice per class against the
    real map. ``--volumes``: the real MR then each synthetic MR (``.nii.gz`` on the CT grid);
    ``--tissues``: their label volumes in the same order.

Row titles name the patient, the slice's position in the slice file (``i``) and
its index in the reference volume (``z``).

CLI (one sub-command, one figure per call)::

    ct2mr figures --kind synthesis --slices results/slices/P05.npz \\
        --synth results/synth/mrgan/P05_slices.npz --output fig5.png
        [--slice-index 10 20 | --n-slices 2] [--error-max 100] [--dpi 120]
    ct2mr figures --kind variants --slices results/slices/P05.npz \\
        --synth results/synth/paired/P05_slices.npz results/synth/unpaired/P05_slices.npz \\
                results/synth/mrgan/P05_slices.npz --output fig6.png [--slice-index ...]
    ct2mr figures --kind cycle --slices results/slices/P05.npz \\
        --synth results/synth/unpaired/P05_slices.npz results/synth/mrgan/P05_slices.npz \\
        --output fig7.png [--slice-index ...]
    ct2mr figures --kind metrics --per-patient results/metrics/per_patient.tsv --output metrics.png
    ct2mr figures --kind losses --losses results/models/*/losses.tsv --output losses.png
    ct2mr figures --kind tissues --volumes results/preprocessed/P05/mr_norm.nii.gz \
        results/synth/mrgan/seed0/P05_mr.nii.gz --tissues results/tissues/real/P05.nii.gz \
        results/tissues/mrgan/seed0/P05.nii.gz --output tissues.png
    ct2mr figures --kind difference --test-slices results/slices/P05.npz results/slices/P06.npz \
        --synth results/synth/mrgan/P05_slices.npz results/synth/mrgan/P06_slices.npz \
        --baseline-synth results/synth/paired/P05_slices.npz results/synth/paired/P06_slices.npz \
        --output difference_mrgan_vs_paired.png [--error-max 60]

``--synth`` files are those written by ``ct2mr synthesize --out-slices``; the
variant label is read from the file (key ``variant``; else its folder name).
Default slices: ``--n-slices`` (2) evenly spaced between 30 % and 70 % of the
patient's kept slices.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_figure

KINDS = ("synthesis", "variants", "cycle", "metrics", "losses", "difference", "tissues")
#: tissue label colours: background, CSF, GM, WM (ct2mr.evaluation.tissue_segmentation.TISSUE_LABELS)
TISSUE_COLOURS = ("#000000", "#3b75af", "#d5a13a", "#f2f2f2")
GREY = {"cmap": "gray", "vmin": 0, "vmax": 255, "interpolation": "nearest"}
VARIANT_COLOURS = {"paired": "#1f77b4", "unpaired": "#ff7f0e", "mrgan": "#2ca02c", "regression": "#9467bd"}
_EXTRA_COLOURS = ["#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
_SEED_STYLES = ["-", "--", ":", "-."]
#: columns of losses.tsv that are not losses
_NON_LOSS = {"iteration", "iter", "step", "epoch", "lr", "time", "time_s", "elapsed_s", "wall_s", "seconds"}


# ----------------------------------------------------------------------------- helpers


def _figure(width: float, height: float):  # noqa: ANN202
    from matplotlib.figure import Figure  # Agg canvas; no pyplot, no global state

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path: str | Path, dpi: int = 120) -> Path:  # noqa: ANN001
    path = Path(path)
    write_figure(fig, path, dpi=dpi)
    return path


def _colour(variant: str, i: int) -> str:
    return VARIANT_COLOURS.get(variant, _EXTRA_COLOURS[i % len(_EXTRA_COLOURS)])


def pick_slices(n_total: int, indices: Sequence[int] | None = None, n: int = 2) -> list[int]:
    """Indices into the patient's kept slices: ``indices`` checked, or ``n`` evenly spaced in 30-70 %."""
    if indices:
        bad = [i for i in indices if not 0 <= i < n_total]
        if bad:
            raise InputError(None, "--slice-index", f"{bad} outside 0..{n_total - 1} (the patient has {n_total} slices)")
        return list(indices)
    if n < 1:
        raise InputError(None, "--n-slices", f"must be >= 1, got {n}")
    pos = np.linspace(0.3, 0.7, n) if n > 1 else np.array([0.5])
    return sorted(set(int(round(p * (n_total - 1))) for p in pos))


def _label(d: Mapping[str, Any], path: str | Path | None) -> str:
    v = d.get("variant")
    if v:
        return str(v)
    return Path(path).parent.name if path else "synthesized"


def _show(ax, img: np.ndarray, title: str, **kw: Any):  # noqa: ANN001, ANN202
    im = ax.imshow(img, **{**GREY, **kw})
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _row_label(ax, slices: Mapping[str, Any], i: int) -> None:  # noqa: ANN001
    z = int(np.asarray(slices["z_index"])[i]) if "z_index" in slices else i
    ax.set_ylabel(f"{slices.get('patient', '?')}\nslice i={i}, z={z}", fontsize=9)


def _grey_bar(fig, im, ax, label: str = "grey level (0-255)") -> None:  # noqa: ANN001
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _check_synth(slices: Mapping[str, Any], synth: Mapping[str, Any], path: str | Path | None, key: str = "mr_syn") -> None:
    if key not in synth:
        raise InputError(path, key, "missing" + (" (variant without Syn_CT?)" if key == "ct_recon" else ""))
    n = len(np.asarray(slices["ct"])) if "ct" in slices else len(np.asarray(slices["head_mask"]))
    if np.asarray(synth[key]).shape[0] != n:
        raise InputError(path, key, f"{np.asarray(synth[key]).shape[0]} slices, the slice file has {n}")
    # same check as ct2mr.evaluation.evaluate: a stale synthesis with the same count would show other slices
    if "z_index" in slices and "z_index" in synth and not np.array_equal(slices["z_index"], synth["z_index"]):
        raise InputError(path, "z_index", "slice positions differ from the slice file: re-run synthesis")


# ----------------------------------------------------------------------------- figures


def figure_synthesis(
    slices: Mapping[str, Any],
    synth: Mapping[str, Any],
    output: str | Path,
    indices: Sequence[int] | None = None,
    n_slices: int = 2,
    error_max: float = 100.0,
    dpi: int = 120,
    synth_path: str | Path | None = None,
) -> Path:
    """Fig. 5: input CT / synthesized MR / reference MR / absolute error, one row per slice."""
    if "mr" not in slices:
        raise InputError(None, "mr", f"patient {slices.get('patient', '?')} has no reference MR: no Figure 5")
    _check_synth(slices, synth, synth_path)
    rows = pick_slices(len(slices["ct"]), indices, n_slices)
    variant = _label(synth, synth_path)
    fig = _figure(13.0, 3.2 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for r, i in enumerate(rows):
        ct, syn, ref = (np.asarray(a[i]) for a in (slices["ct"], synth["mr_syn"], slices["mr"]))
        err = np.abs(syn.astype(np.int16) - ref.astype(np.int16))
        _show(axes[r, 0], ct, "input CT (W80/L40)")
        _show(axes[r, 1], syn, f"synthesized MR ({variant})")
        im = _show(axes[r, 2], ref, "reference MR")
        _grey_bar(fig, im, axes[r, 2])
        im = _show(axes[r, 3], err, f"|synth - ref| (MAE {err.mean():.1f})", cmap="inferno", vmax=error_max)
        _grey_bar(fig, im, axes[r, 3], "absolute error (grey levels)")
        _row_label(axes[r, 0], slices, i)
    fig.suptitle(f"CT -> MR synthesis, patient {slices.get('patient', '?')}, {variant}")
    return _save(fig, output, dpi)


def figure_variants(
    slices: Mapping[str, Any],
    synths: Sequence[tuple[str, Mapping[str, Any]]],
    output: str | Path,
    indices: Sequence[int] | None = None,
    n_slices: int = 2,
    dpi: int = 120,
) -> Path:
    """Fig. 6: input CT, each variant's synthesized MR, reference MR; ``synths`` = [(label, synth dict)]."""
    if not synths:
        raise InputError(None, "--synth", "give at least one synthesized slice file")
    for label, s in synths:
        _check_synth(slices, s, label)
    has_ref = "mr" in slices
    rows = pick_slices(len(slices["ct"]), indices, n_slices)
    ncol = 1 + len(synths) + int(has_ref)
    fig = _figure(3.0 * ncol + 0.8, 3.2 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for r, i in enumerate(rows):
        _show(axes[r, 0], np.asarray(slices["ct"][i]), "input CT (W80/L40)")
        im = None
        for c, (label, s) in enumerate(synths, start=1):
            im = _show(axes[r, c], np.asarray(s["mr_syn"][i]), f"synthesized MR: {label}")
        if has_ref:
            im = _show(axes[r, ncol - 1], np.asarray(slices["mr"][i]), "reference MR")
        _grey_bar(fig, im, axes[r, ncol - 1])
        _row_label(axes[r, 0], slices, i)
    fig.suptitle(f"Training variants, patient {slices.get('patient', '?')}")
    return _save(fig, output, dpi)


def figure_cycle(
    slices: Mapping[str, Any],
    synths: Sequence[tuple[str, Mapping[str, Any]]],
    output: str | Path,
    indices: Sequence[int] | None = None,
    n_slices: int = 1,
    diff_max: float = 20.0,
    dpi: int = 120,
) -> Path:
    """Fig. 7: input CT / synthesized MR / reconstructed CT / relative difference (% of 255)."""
    if not synths:
        raise InputError(None, "--synth", "give at least one synthesized slice file with ct_recon")
    for label, s in synths:
        _check_synth(slices, s, label, "ct_recon")
    rows = pick_slices(len(slices["ct"]), indices, n_slices)
    pairs = [(i, label, s) for i in rows for label, s in synths]
    fig = _figure(13.0, 3.2 * len(pairs) + 0.4)
    axes = fig.subplots(len(pairs), 4, squeeze=False)
    for r, (i, label, s) in enumerate(pairs):
        ct = np.asarray(slices["ct"][i])
        rec = np.asarray(s["ct_recon"][i])
        rel = np.abs(rec.astype(np.float64) - ct.astype(np.float64)) / 255.0 * 100.0
        _show(axes[r, 0], ct, "input CT (W80/L40)")
        _show(axes[r, 1], np.asarray(s["mr_syn"][i]), f"synthesized MR ({label})")
        im = _show(axes[r, 2], rec, f"reconstructed CT ({label})")
        _grey_bar(fig, im, axes[r, 2])
        im = _show(axes[r, 3], rel, f"relative difference (mean {rel.mean():.1f} %)", cmap="inferno", vmax=diff_max)
        _grey_bar(fig, im, axes[r, 3], "|recon - input| (% of 0-255)")
        _row_label(axes[r, 0], slices, i)
    fig.suptitle(f"Cycle CT -> MR -> CT, patient {slices.get('patient', '?')}")
    return _save(fig, output, dpi)


def figure_metrics(per_patient: str | Path, output: str | Path, dpi: int = 120) -> Path:
    """Per-patient MAE / PSNR / SSIM per variant (rows: whole slice, head, brain when present)."""
    from ct2mr.io.tables import read_tsv  # noqa: PLC0415 - pandas only for this figure

    df = read_tsv(per_patient, "per-patient table", dtype={"patient": str, "variant": str})
    for col in ("patient", "variant", "mae", "psnr", "ssim"):
        if col not in df.columns:
            raise InputError(per_patient, col, "missing column (expected `ct2mr evaluate --per-patient` output)")
    if df.empty:
        raise InputError(per_patient, None, "no rows")
    regions = [(s, name) for s, name in (("", "whole slice"), ("_head", "head mask"), ("_brain", "brain mask"))
               if f"mae{s}" in df.columns and df[f"mae{s}"].notna().any()]
    patients = list(dict.fromkeys(df["patient"]))
    variants = list(dict.fromkeys(df["variant"]))
    several_seeds = "seed" in df.columns and df["seed"].nunique() > 1
    x = np.arange(len(patients))
    fig = _figure(max(10.0, 0.5 * len(patients) * 3 + 4), 3.0 * len(regions) + 0.6)
    axes = fig.subplots(len(regions), 3, squeeze=False)
    units = {"mae": "MAE (grey levels, lower is better)", "psnr": "PSNR (dB, data range 255)", "ssim": "SSIM"}
    width = 0.8 / max(len(variants), 1)
    for r, (suffix, rname) in enumerate(regions):
        for c, metric in enumerate(("mae", "psnr", "ssim")):
            ax = axes[r, c]
            col = f"{metric}{suffix}"
            for k, v in enumerate(variants):
                vals = df[df["variant"] == v].assign(_y=lambda d: d[col].astype(float).replace([np.inf], np.nan))
                sub = vals.groupby("patient", sort=False)["_y"].mean().reindex(patients)
                y = sub.to_numpy()
                colour = _colour(v, k)
                xk = x + (k - (len(variants) - 1) / 2) * width
                if several_seeds:
                    pos = {p: xk[i] for i, p in enumerate(patients)}
                    ax.plot([pos[p] for p in vals["patient"]], vals["_y"].to_numpy(), ".", color=colour, ms=3, alpha=0.6)
                ax.plot(xk, y, "o", color=colour, label=v, ms=6)
                if np.isfinite(y).any():
                    ax.axhline(np.nanmean(y), color=colour, ls="--", lw=1)
            ax.set_xticks(x, patients, rotation=45 if len(patients) > 6 else 0, fontsize=8)
            ax.set_ylabel(units[metric], fontsize=8)
            ax.set_title(f"{metric.upper()}, {rname}", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, title="variant", title_fontsize=8)
    fig.suptitle("Per-patient metrics (dashed: mean over patients"
                 + (f"; large dots: mean over {df['seed'].nunique()} seeds, small: single seeds)" if several_seeds else ")"))
    return _save(fig, output, dpi)


def model_label(losses_path: str | Path) -> tuple[str, str]:
    """(variant, seed folder) of ``.../{variant}/seed{seed}/losses.tsv``; (variant, ``fold{f} seed{s}``)
    of a cross-validation model ``.../{variant}/fold{f}/seed{s}/losses.tsv``; ``(folder, "")``
    for ``.../{variant}/losses.tsv``."""
    parent = Path(losses_path).parent
    if re.fullmatch(r"seed\d+", parent.name):
        if re.fullmatch(r"fold\d+", parent.parent.name):
            return parent.parent.parent.name, f"{parent.parent.name} {parent.name}"
        return parent.parent.name, parent.name
    return parent.name, ""


def figure_losses(loss_files: Sequence[str | Path], output: str | Path, dpi: int = 120) -> Path:
    """Training losses of each ``results/models/{variant}/losses.tsv``: one panel per loss, one colour per variant."""
    import pandas as pd

    from ct2mr.io.tables import read_tsv  # noqa: PLC0415 - pandas only for this figure

    if not loss_files:
        raise InputError(None, "--losses", "give at least one losses.tsv")
    curves: list[tuple[str, str, Any]] = []
    for path in loss_files:
        path = Path(path)
        df = read_tsv(path, "loss table")
        xcol = next((c for c in ("iteration", "iter", "step") if c in df.columns), None)
        if xcol is None:
            raise InputError(path, "iteration", "missing column (expected iteration, iter or step)")
        variant, seed = model_label(path)
        for col in df.columns:
            if col not in _NON_LOSS and pd.api.types.is_numeric_dtype(df[col]):
                ys = df[col].to_numpy(dtype=float)
                ok = np.isfinite(ys)  # validation columns are empty between validation rows
                curves.append((variant, seed, col, (df[xcol].to_numpy()[ok], ys[ok])))
    names = list(dict.fromkeys(c for _, _, c, _ in curves))
    if not names:
        raise InputError(loss_files[0], None, "no loss column found")
    variants = list(dict.fromkeys(v for v, _, _, _ in curves))
    seeds = list(dict.fromkeys(s for _, s, _, _ in curves))
    ncol = min(4, len(names))
    nrow = math.ceil(len(names) / ncol)
    fig = _figure(3.6 * ncol, 2.8 * nrow + 0.5)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.ravel()[len(names):]:
        ax.set_axis_off()
    for k, name in enumerate(names):
        ax = axes.ravel()[k]
        for v, seed, col, (xs, ys) in curves:
            if col == name:
                label = v if len(seeds) == 1 else f"{v} {seed}"
                ax.plot(xs, ys, color=_colour(v, variants.index(v)), lw=1.2, label=label,
                        ls=_SEED_STYLES[seeds.index(seed) % len(_SEED_STYLES)], marker="o" if name.startswith("val_") else None,
                        ms=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Training losses")
    return _save(fig, output, dpi)


def _patient_of(path: str | Path) -> str:
    """Patient id of a slice file (``P.npz``) or a synthesized slice file (``P_slices.npz``)."""
    return Path(path).name.removesuffix(".npz").removesuffix("_slices")


def mean_error_map(
    slices_by_patient: Mapping[str, Mapping[str, Any]], synth_files: Sequence[str | Path]
) -> tuple[np.ndarray, int]:
    """Per-pixel mean ``|synthesized - reference|`` (grey levels, clipped to 0..255) over all test slices.

    ``synth_files`` are matched to patients by file name (``{patient}_slices.npz``);
    several files of one patient (seeds, in their own folders) are averaged
    first. Returns the (S, S) map and the number of slices. InputError for a
    patient without synthesized file or a file of an unknown patient.
    """
    from ct2mr.evaluation.evaluate import load_npz

    by_patient: dict[str, list[Path]] = {}
    for f in synth_files:
        pid = _patient_of(f)
        if pid not in slices_by_patient:
            raise InputError(f, None, f"patient {pid} is not among the test slice files given")
        by_patient.setdefault(pid, []).append(Path(f))
    total: np.ndarray | None = None
    n = 0
    for pid, sl in slices_by_patient.items():
        if pid not in by_patient:
            raise InputError(None, "--synth", f"no synthesized slice file for patient {pid}")
        ref = np.asarray(sl["mr"], dtype=np.float64)
        err = np.zeros_like(ref)
        for f in by_patient[pid]:
            syn = load_npz(f)
            _check_synth(sl, syn, f)
            err += np.abs(np.clip(np.asarray(syn["mr_syn"], dtype=np.float64), 0, 255) - ref)
        err /= len(by_patient[pid])
        total = err.sum(axis=0) if total is None else total + err.sum(axis=0)
        n += ref.shape[0]
    assert total is not None
    return total / n, n


def figure_difference(
    test_slices: Sequence[str | Path],
    variant_synth: Sequence[str | Path],
    baseline_synth: Sequence[str | Path],
    output: str | Path,
    error_max: float = 60.0,
    dpi: int = 120,
) -> dict[str, float]:
    """Mean |error| maps of a variant and a baseline and their difference (see module docstring).

    Returns the numbers shown in the title: mean difference inside / outside the
    head mask (grey levels per pixel) and the slice count.
    """
    from matplotlib.colors import TwoSlopeNorm

    from ct2mr.evaluation.evaluate import load_npz
    from ct2mr.preprocess.slices import load_slices

    slices: dict[str, Mapping[str, Any]] = {}
    for f in test_slices:
        d = load_slices(f)
        if "mr" not in d:
            raise InputError(f, "mr", "no reference MR: not a test patient")
        slices[_patient_of(f)] = d
    if not slices:
        raise InputError(None, "--test-slices", "give the test patients' slice files")
    vname = _label(load_npz(variant_synth[0]), variant_synth[0]) if variant_synth else "variant"
    bname = _label(load_npz(baseline_synth[0]), baseline_synth[0]) if baseline_synth else "baseline"
    err_v, n = mean_error_map(slices, _need(variant_synth, "--synth", "difference"))
    err_b, _ = mean_error_map(slices, _need(baseline_synth, "--baseline-synth", "difference"))
    diff = err_v - err_b
    head = np.concatenate([np.asarray(d["head_mask"], bool) for d in slices.values()]).mean(axis=0) >= 0.5
    inside = float(diff[head].mean()) if head.any() else math.nan
    outside = float(diff[~head].mean()) if (~head).any() else math.nan
    lim = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    fig = _figure(12, 4.4)
    axes = fig.subplots(1, 3)
    for ax, img, title in ((axes[0], err_v, f"{vname}: mean |error|"), (axes[1], err_b, f"{bname}: mean |error|")):
        im = _show(ax, img, title, cmap="magma", vmin=0, vmax=error_max)
        fig.colorbar(im, ax=ax, shrink=0.8, label="grey levels")
    im = _show(axes[2], diff, f"{vname} - {bname} (blue: {vname} better)", cmap="RdBu_r",
               norm=TwoSlopeNorm(vcenter=0.0, vmin=-lim, vmax=lim), vmin=None, vmax=None)
    fig.colorbar(im, ax=axes[2], shrink=0.8, label="difference of mean |error|, grey levels")
    for ax in axes:
        if head.any() and not head.all():
            ax.contour(head, levels=[0.5], colors="lime", linewidths=0.8)
    fig.suptitle(f"Where {vname} and {bname} differ, over {n} test slices of {len(slices)} patient(s):\n"
                 f"mean difference inside the head mask {inside:+.2f}, outside {outside:+.2f} grey levels "
                 "(green line: head mask in >= half of the slices)", fontsize=9)
    _save(fig, output, dpi)
    return {"inside_head": inside, "outside_head": outside, "n_slices": float(n)}


def figure_tissues(
    volumes: Sequence[str | Path], tissues: Sequence[str | Path], output: str | Path, dpi: int = 120
) -> Path:
    """The ``tissues`` figure (module docstring): real MR + tissue map, then each synthetic one.

    ``volumes[0]`` / ``tissues[0]`` are the real MR and its labels; the others a variant's
    (its name: the folder two levels above the label file, ``results/tissues/{variant}/seed{seed}/``).
    Labels on a coarser grid (``--downsample``) are resampled onto the MR's grid (nearest).
    """
    import SimpleITK as sitk
    from matplotlib.colors import ListedColormap

    from ct2mr.evaluation.tissue_segmentation import dice_per_class
    from ct2mr.io.imageio import read_image

    if len(volumes) != len(tissues) or len(volumes) < 2:
        raise InputError(None, "--volumes/--tissues", f"need the real one and 1+ synthetic, as many of each; "
                                                      f"got {len(volumes)} volumes and {len(tissues)} label files")
    mrs = [read_image(v) for v in volumes]
    labels = []
    for path, mr in zip(tissues, mrs, strict=True):
        lab = read_image(path)
        if lab.GetSize() != mr.GetSize() or not np.allclose(lab.GetSpacing(), mr.GetSpacing()):
            lab = sitk.Resample(lab, mr, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        labels.append(sitk.GetArrayFromImage(lab))
    brain_z = np.flatnonzero(labels[0].any(axis=(1, 2)))
    if brain_z.size == 0:
        raise InputError(tissues[0], None, "no tissue voxels: nothing to show")
    z = int(brain_z[len(brain_z) // 2])
    cmap = ListedColormap(TISSUE_COLOURS)
    fig = _figure(6.0, 2.7 * len(mrs))
    axes = fig.subplots(len(mrs), 2, squeeze=False)
    names = ["real"] + [Path(t).parent.parent.name for t in tissues[1:]]
    for i, (name, mr, lab) in enumerate(zip(names, mrs, labels, strict=True)):
        title = name
        if i:
            d = dice_per_class(labels[0], lab)
            title = f"{name}: Dice CSF/GM/WM {d['csf']:.2f}/{d['gm']:.2f}/{d['wm']:.2f}"
        _show(axes[i, 0], sitk.GetArrayViewFromImage(mr)[z], f"{name} MR (z {z})", **GREY)
        _show(axes[i, 1], lab[z], title, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    fig.suptitle(f"{Path(tissues[0]).name.split('.')[0]}: tissue maps, real vs synthetic", fontsize=9)
    return _save(fig, output, dpi)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="which figure")
    parser.add_argument("--output", required=True, help="output PNG")
    parser.add_argument("--slices", help="patient slice file results/slices/{patient}.npz (synthesis, variants, cycle)")
    parser.add_argument("--synth", nargs="+", default=[],
                        help="synthesized slice files {variant}/{patient}_slices.npz (synthesis: one; variants, cycle: one or more)")
    parser.add_argument("--slice-index", type=int, nargs="+", default=None,
                        help="positions in the slice file (0..N-1) to show (default: --n-slices evenly spaced)")
    parser.add_argument("--n-slices", type=int, default=None, help="slices shown when --slice-index is absent (default 2; cycle 1)")
    parser.add_argument("--error-max", type=float, default=None,
                        help="upper end of the absolute-error colour scale, grey levels (synthesis 100, difference 60)")
    parser.add_argument("--per-patient", help="per_patient.tsv from `ct2mr evaluate` (metrics)")
    parser.add_argument("--losses", nargs="+", default=[], help="results/models/{variant}/losses.tsv files (losses)")
    parser.add_argument("--test-slices", nargs="+", default=[],
                        help="difference: every test patient's slice file results/slices/{patient}.npz")
    parser.add_argument("--baseline-synth", nargs="+", default=[],
                        help="difference: the baseline's synthesized slice files (--synth: the variant's)")
    parser.add_argument("--volumes", nargs="+", default=[],
                        help="tissues: the real MR then each synthetic MR (.nii.gz on the CT grid)")
    parser.add_argument("--tissues", nargs="+", default=[],
                        help="tissues: the label volumes of --volumes, in the same order")
    parser.add_argument("--dpi", type=int, default=120, help="PNG resolution (default 120)")


def _need(value: Any, flag: str, kind: str) -> Any:
    if not value:
        raise InputError(None, flag, f"required for --kind {kind}")
    return value


def run(args: argparse.Namespace) -> None:
    from ct2mr.evaluation.evaluate import load_npz
    from ct2mr.preprocess.slices import load_slices

    kind = args.kind
    if kind == "metrics":
        figure_metrics(_need(args.per_patient, "--per-patient", kind), args.output, dpi=args.dpi)
        return
    if kind == "losses":
        figure_losses(_need(args.losses, "--losses", kind), args.output, dpi=args.dpi)
        return
    if kind == "tissues":
        figure_tissues(_need(args.volumes, "--volumes", kind), _need(args.tissues, "--tissues", kind), args.output,
                       dpi=args.dpi)
        return
    if kind == "difference":
        figure_difference(_need(args.test_slices, "--test-slices", kind), _need(args.synth, "--synth", kind),
                          _need(args.baseline_synth, "--baseline-synth", kind), args.output,
                          error_max=60.0 if args.error_max is None else args.error_max, dpi=args.dpi)
        return
    slices = load_slices(_need(args.slices, "--slices", kind))
    if "ct" not in slices:
        raise InputError(args.slices, "ct", "no CT slices: nothing was synthesized for this patient")
    synths = [(p, load_npz(p)) for p in _need(args.synth, "--synth", kind)]
    for p, s in synths:  # errors name the file
        _check_synth(slices, s, p, "ct_recon" if kind == "cycle" else "mr_syn")
    labelled = [(_label(s, p), s) for p, s in synths]
    if kind == "synthesis":
        if len(synths) != 1:
            raise InputError(None, "--synth", f"--kind synthesis takes one file, got {len(synths)}")
        figure_synthesis(slices, synths[0][1], args.output, args.slice_index, args.n_slices or 2,
                         100.0 if args.error_max is None else args.error_max, args.dpi, synth_path=synths[0][0])
    elif kind == "variants":
        figure_variants(slices, labelled, args.output, args.slice_index, args.n_slices or 2, args.dpi)
    else:
        figure_cycle(slices, labelled, args.output, args.slice_index, args.n_slices or 1, dpi=args.dpi)
