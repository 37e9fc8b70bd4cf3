"""Each figure kind renders from fake inputs through the CLI; bad inputs are clear errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ct2mr import cli
from ct2mr.errors import InputError
from ct2mr.evaluation.figures import figure_synthesis, pick_slices
from ct2mr.inference.synthesize import write_slices_npz
from ct2mr.preprocess.slices import save_slices

N = 6


def _slices(with_mr: bool = True) -> dict:
    yy, xx = np.mgrid[:256, :256]
    head = ((yy - 128) ** 2 + (xx - 128) ** 2) < 90**2
    ring = head & (((yy - 128) ** 2 + (xx - 128) ** 2) > 80**2)
    ct = np.where(ring, 255, np.where(head, 110, 0)).astype(np.uint8)[None].repeat(N, 0)
    d = {
        "ct": ct, "head_mask": head[None].repeat(N, 0), "brain_mask": (head & ~ring)[None].repeat(N, 0),
        "z_index": np.arange(40, 40 + N, dtype=np.int64), "crop_origin": np.array([0, 0], np.int64),
        "crop_size": np.array(256, np.int64), "ref_shape": np.array([90, 256, 256], np.int64),
        "ref_spacing": np.ones(3), "ref_origin": np.zeros(3), "ref_direction": np.eye(3).ravel(),
        "patient": "P05", "role": "paired_test", "source": "volume",
    }
    if with_mr:
        d["mr"] = np.where(ring, 20, np.where(head, 180, 0)).astype(np.uint8)[None].repeat(N, 0)
    return d


@pytest.fixture()
def case(tmp_path: Path) -> dict[str, Path]:
    s = _slices()
    sf = tmp_path / "slices" / "P05.npz"
    save_slices(sf, s)
    out = {"slices": sf}
    rng = np.random.default_rng(0)
    for v in ("paired", "unpaired", "mrgan"):
        noise = rng.integers(-15, 16, s["mr"].shape)
        arrays = {"mr_syn": np.clip(s["mr"] + noise, 0, 255).astype(np.uint8), "z_index": s["z_index"],
                  "patient": np.array("P05"), "variant": np.array(v)}
        if v != "paired":
            arrays["ct_recon"] = np.clip(s["ct"] + noise, 0, 255).astype(np.uint8)
        out[v] = tmp_path / "synth" / v / "P05_slices.npz"
        write_slices_npz(out[v], arrays)
    pp = tmp_path / "per_patient.tsv"
    lines = ["patient\tvariant\tn_slices\tmae\tpsnr\tssim\tpsnr_paper_convention\tmae_head\tpsnr_head\tssim_head"
             "\tmae_brain\tpsnr_brain\tssim_brain"]
    for p in ("P05", "P06", "P07"):
        for k, v in enumerate(("paired", "unpaired", "mrgan")):
            lines.append(f"{p}\t{v}\t6\t{10 + k}\t{25 - k}\t0.{8 - k}\t{73 - k}\t{20 + k}\t{20 - k}\t0.7\t\t\t")
    pp.write_text("\n".join(lines) + "\n")
    out["per_patient"] = pp
    for v in ("paired", "mrgan"):
        lf = tmp_path / "models" / v / "losses.tsv"
        lf.parent.mkdir(parents=True)
        rows = ["iteration\tG_adv_mr\tG_l1\tG_total\tD_total\tlr\tseconds"]
        rows += [f"{i}\t{1 / i}\t{2 / i}\t{3 / i}\t0.5\t0.0002\t{i}" for i in range(10, 110, 10)]
        lf.write_text("\n".join(rows) + "\n")
        out[f"losses_{v}"] = lf
    return out


def _png_ok(path: Path, min_w: int) -> np.ndarray:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[1] >= min_w
    assert img[..., :3].std() > 0.05  # not blank
    return img


def test_pick_slices() -> None:
    assert pick_slices(11, None, 2) == [3, 7]
    assert pick_slices(11, None, 1) == [5]
    assert pick_slices(11, [0, 10]) == [0, 10]
    with pytest.raises(InputError, match="outside 0..10"):
        pick_slices(11, [11])


def test_all_kinds_through_the_cli(tmp_path: Path, case: dict[str, Path]) -> None:
    s, out = str(case["slices"]), tmp_path / "fig"
    assert cli.main(["figures", "--kind", "synthesis", "--slices", s, "--synth", str(case["mrgan"]),
                     "--output", str(out / "fig5.png"), "--slice-index", "1", "4"]) == 0
    fig5 = _png_ok(out / "fig5.png", 800)
    assert cli.main(["figures", "--kind", "variants", "--slices", s, "--synth", str(case["paired"]),
                     str(case["unpaired"]), str(case["mrgan"]), "--output", str(out / "fig6.png")]) == 0
    fig6 = _png_ok(out / "fig6.png", 800)
    assert fig6.shape[1] > fig5.shape[1]  # five image columns vs four
    assert cli.main(["figures", "--kind", "cycle", "--slices", s, "--synth", str(case["unpaired"]),
                     str(case["mrgan"]), "--output", str(out / "fig7.png")]) == 0
    _png_ok(out / "fig7.png", 800)
    assert cli.main(["figures", "--kind", "metrics", "--per-patient", str(case["per_patient"]),
                     "--output", str(out / "metrics.png")]) == 0
    _png_ok(out / "metrics.png", 800)
    assert cli.main(["figures", "--kind", "losses", "--losses", str(case["losses_paired"]),
                     str(case["losses_mrgan"]), "--output", str(out / "losses.png")]) == 0
    _png_ok(out / "losses.png", 800)
    assert sorted(p.name for p in out.iterdir()) == ["fig5.png", "fig6.png", "fig7.png", "losses.png", "metrics.png"]


def test_bad_inputs(tmp_path: Path, case: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    # a variant without Syn_CT cannot make Figure 7
    assert cli.main(["figures", "--kind", "cycle", "--slices", str(case["slices"]), "--synth",
                     str(case["paired"]), "--output", str(out)]) == 2
    assert "paired/P05_slices.npz: ct_recon: missing" in capsys.readouterr().err
    assert cli.main(["figures", "--kind", "metrics", "--output", str(out)]) == 2
    assert "--per-patient: required" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(InputError, match="no reference MR"):
        figure_synthesis(_slices(with_mr=False), {"mr_syn": np.zeros((N, 256, 256), np.uint8)}, out)


def test_synthesis_from_other_slice_positions_is_refused(tmp_path: Path, case: dict[str, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A stale synthesis file with the same slice count but other z positions was drawn beside the
    wrong reference slices (ct2mr evaluate already refuses it)."""
    from ct2mr.evaluation.evaluate import load_npz

    stale = load_npz(case["mrgan"])
    stale["z_index"] = stale["z_index"] + 1
    path = tmp_path / "stale" / "P05_slices.npz"
    write_slices_npz(path, stale)
    out = tmp_path / "fig.png"
    assert cli.main(["figures", "--kind", "synthesis", "--slices", str(case["slices"]), "--synth", str(path),
                     "--output", str(out)]) == 2
    assert "z_index" in capsys.readouterr().err and not out.exists()


def test_seed_layout_in_metrics_and_loss_figures(tmp_path: Path) -> None:
    """Several seeds: per_patient.tsv with a seed column, losses.tsv under {variant}/seed{seed}/
    with validation columns only on some rows."""
    from ct2mr.evaluation.figures import figure_losses, figure_metrics, model_label

    assert model_label("results/models/mrgan/seed2/losses.tsv") == ("mrgan", "seed2")
    assert model_label("results/models/mrgan/losses.tsv") == ("mrgan", "")
    assert model_label("results/models/paired/fold3/seed1/losses.tsv") == ("paired", "fold3 seed1")
    pp = tmp_path / "per_patient.tsv"
    lines = ["patient\tvariant\tseed\tn_slices\tmae\tpsnr\tssim\tmae_head\tpsnr_head\tssim_head"]
    for p in ("P05", "P06"):
        for k, v in enumerate(("paired", "regression", "mrgan")):
            for seed in (0, 1, 2):
                lines.append(f"{p}\t{v}\t{seed}\t6\t{10 + k + seed}\t{25 - k}\t0.8\t{20 + k}\t20\t0.7")
    pp.write_text("\n".join(lines) + "\n")
    _png_ok(figure_metrics(pp, tmp_path / "metrics.png"), 800)
    files = []
    for v in ("paired", "regression"):
        for seed in (0, 1):
            lf = tmp_path / "models" / v / f"seed{seed}" / "losses.tsv"
            lf.parent.mkdir(parents=True)
            rows = ["iteration\tl1_mr_paired\tG_total\tlr\tval_mae\tval_mae_head\tseconds"]
            rows += [f"{i}\t{1 / i}\t{2 / i}\t0.0002\t{f'{30 - i / 10}' if i % 20 == 0 else ''}"
                     f"\t{f'{40 - i / 10}' if i % 20 == 0 else ''}\t{i}" for i in range(10, 110, 10)]
            lf.write_text("\n".join(rows) + "\n")
            files.append(lf)
    _png_ok(figure_losses(files, tmp_path / "losses.png"), 800)


def test_tissues_figure_real_and_each_variant(tmp_path: Path) -> None:
    """Real MR + tissue map, then each variant's (its name from results/tissues/{variant}/seed{seed}/);
    labels on a coarser grid (--downsample 2) are shown on the MR's grid."""
    import SimpleITK as sitk

    from ct2mr.cli import main

    lab = np.zeros((8, 16, 16), np.uint8)
    lab[2:6, 4:12, 4:12] = 3
    lab[2:6, 4:12, 4:6] = 2
    lab[3:5, 6:9, 6:9] = 1
    mr = sitk.GetImageFromArray((lab * 60).astype(np.uint8))
    paths = {"vol": [], "tis": []}
    for name in ("real", "mrgan/seed0"):
        d = tmp_path / name
        d.mkdir(parents=True)
        sitk.WriteImage(mr, str(d / "P01_mr.nii.gz"))
        tis = sitk.GetImageFromArray(lab)
        if name != "real":
            tis = sitk.BinShrink(tis, [2, 2, 2])  # a coarser grid, like --downsample 2
        sitk.WriteImage(tis, str(d / "P01.nii.gz"))
        paths["vol"].append(str(d / "P01_mr.nii.gz"))
        paths["tis"].append(str(d / "P01.nii.gz"))
    out = tmp_path / "tissues.png"
    assert main(["figures", "--kind", "tissues", "--volumes", *paths["vol"], "--tissues", *paths["tis"],
                 "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["figures", "--kind", "tissues", "--volumes", paths["vol"][0], "--tissues", *paths["tis"],
                 "--output", str(out)]) == 2
