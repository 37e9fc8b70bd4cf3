"""The difference figure: a known gain in the background is reported outside the head, not inside."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ct2mr import cli
from ct2mr.errors import InputError
from ct2mr.evaluation.figures import figure_difference, mean_error_map
from ct2mr.inference.synthesize import write_slices_npz
from ct2mr.preprocess.slices import save_slices
from tests.test_figures import _slices


def _cohort(tmp_path: Path) -> dict[str, list[Path]]:
    """Two test patients; the baseline errs by 20 everywhere, the variant by 20 in the head only.

    The variant has two seed folders (errors 18 and 22 inside the head: mean 20).
    """
    out: dict[str, list[Path]] = {"slices": [], "mrgan": [], "paired": []}
    for pid in ("P05", "P06"):
        s = _slices()
        s["patient"] = pid
        sf = tmp_path / "slices" / f"{pid}.npz"
        save_slices(sf, s)
        out["slices"].append(sf)
        head = s["head_mask"]
        mr = s["mr"].astype(int)
        for v, folder, err_in, err_out in (("paired", "paired", 20, 20), ("mrgan", "mrgan/seed0", 18, 0),
                                           ("mrgan", "mrgan/seed1", 22, 0)):
            syn = np.where(head, mr + err_in, mr + err_out).clip(0, 255).astype(np.uint8)
            f = tmp_path / "synth" / folder / f"{pid}_slices.npz"
            write_slices_npz(f, {"mr_syn": syn, "z_index": s["z_index"], "patient": np.array(pid),
                                 "variant": np.array(v)})
            out[v].append(f)
    return out


def test_gain_outside_the_head_is_shown_outside(tmp_path: Path) -> None:
    c = _cohort(tmp_path)
    res = figure_difference(c["slices"], c["mrgan"], c["paired"], tmp_path / "diff.png")
    assert res["inside_head"] == pytest.approx(0.0, abs=0.5)  # clipping at 255 aside, same error in the head
    assert res["outside_head"] == pytest.approx(-20.0, abs=0.01)
    assert res["n_slices"] == 12
    img = mpimg.imread(tmp_path / "diff.png")
    assert img.shape[1] > 800 and img.std() > 0.05


def test_error_map_averages_seeds_and_counts_slices(tmp_path: Path) -> None:
    c = _cohort(tmp_path)
    from ct2mr.preprocess.slices import load_slices

    slices = {p.stem: load_slices(p) for p in c["slices"]}
    err, n = mean_error_map(slices, c["mrgan"])
    assert n == 12
    head = slices["P05"]["head_mask"][0]
    assert err[~head].max() == 0 and err[128, 128] == pytest.approx(20, abs=0.01)
    with pytest.raises(InputError, match="no synthesized slice file for patient P06"):
        mean_error_map(slices, c["mrgan"][:1])


def test_cli(tmp_path: Path) -> None:
    c = _cohort(tmp_path)
    out = tmp_path / "fig" / "difference_mrgan_vs_paired.png"
    argv = ["figures", "--kind", "difference", "--test-slices", *map(str, c["slices"]),
            "--synth", *map(str, c["mrgan"]), "--baseline-synth", *map(str, c["paired"]), "--output", str(out)]
    assert cli.main(argv) == 0 and out.read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["figures", "--kind", "difference", "--test-slices", str(c["slices"][0]),
                     "--synth", str(c["mrgan"][0]), "--output", str(tmp_path / "x.png")]) == 2
