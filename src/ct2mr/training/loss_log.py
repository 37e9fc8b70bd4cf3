"""The loss log of a training run: the text of ``losses.tsv`` (:func:`losses_tsv`) and its
plot ``loss_curve.png`` (:func:`plot_losses`).

``losses.tsv``: ``iteration``, each loss term (mean over the iterations since the
previous row), ``G_total``, discriminator terms, ``D_total``, ``lr``,
``seconds`` (training wall time so far); with ``--val-slices`` also
``val_mae`` and ``val_mae_head`` (grey levels 0-255) on the first row at or
after each multiple of ``val_every`` and on the last row (empty cells on the others).
"""

from __future__ import annotations

from pathlib import Path

from ct2mr.io.atomic import write_figure
from ct2mr.training.losses import ALL_TERMS


def losses_tsv(columns: list[str], rows: list[dict[str, float]]) -> str:
    """losses.tsv text; a column missing from a row (validation between its rows) is an empty cell."""
    lines = ["\t".join(["iteration", *columns, "seconds"])]
    for r in rows:
        cells = [str(int(r["iteration"]))] + [f"{r[c]:.6g}" if c in r else "" for c in columns] + [f"{r['seconds']:.3f}"]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def plot_losses(path: Path, columns: list[str], rows: list[dict[str, float]], title: str) -> None:
    """Loss curves (generator terms, discriminator terms, lr) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in rows]
    gcols = [c for c in columns if c in ALL_TERMS or c == "G_total"]
    dcols = [c for c in columns if c.startswith("dis_") or c == "D_total"]
    vcols = [c for c in columns if c.startswith("val_")]
    fig, axes = plt.subplots(1, 4 if vcols else 3, figsize=(20 if vcols else 15, 4))
    for c in gcols:
        axes[0].plot(it, [max(r[c], 1e-8) for r in rows], label=c, lw=2 if c == "G_total" else 1)
    axes[0].set_yscale("log")
    axes[0].set_title("generator terms (unweighted; G_total weighted)")
    for c in dcols:
        axes[1].plot(it, [r[c] for r in rows], label=c, lw=2 if c == "D_total" else 1)
    axes[1].set_title("discriminator terms")
    if not dcols:
        axes[1].text(0.5, 0.5, "no discriminator", ha="center", va="center", transform=axes[1].transAxes)
    axes[2].plot(it, [r["lr"] for r in rows])
    axes[2].set_title("learning rate")
    for c in vcols:
        pts = [(r["iteration"], r[c]) for r in rows if c in r]
        axes[3].plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=c)
    if vcols:
        axes[3].set_title("validation MAE, paired_val patients (grey levels)")
    for ax in axes:
        ax.set_xlabel("iteration")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    write_figure(fig, path, dpi=80)
    plt.close(fig)
