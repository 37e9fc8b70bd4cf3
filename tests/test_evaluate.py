"""Evaluation end to end on fake slice and synthesis files with known errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from ct2mr import cli
from ct2mr.errors import InputError
from ct2mr.evaluation.evaluate import evaluate_patient
from ct2mr.preprocess.slices import save_slices
from ct2mr.inference.synthesize import write_slices_npz

N = 3


def _slices(patient: str, with_mr: bool = True) -> dict:
    yy, xx = np.mgrid[:256, :256]
    head = ((yy - 128) ** 2 + (xx - 128) ** 2) < 90**2
    brain = ((yy - 128) ** 2 + (xx - 128) ** 2) < 60**2
    d = {
        "ct": np.where(head, 120, 0).astype(np.uint8)[None].repeat(N, 0),
        "head_mask": head[None].repeat(N, 0),
        "brain_mask": brain[None].repeat(N, 0),
        "z_index": np.arange(10, 10 + N, dtype=np.int64),
        "crop_origin": np.array([0, 0], np.int64),
        "crop_size": np.array(256, np.int64),
        "ref_shape": np.array([20, 256, 256], np.int64),
        "ref_spacing": np.ones(3),
        "ref_origin": np.zeros(3),
        "ref_direction": np.eye(3).ravel(),
        "patient": patient,
        "role": "paired_test",
        "source": "volume",
    }
    if with_mr:
        d["mr"] = np.where(head, 100, 0).astype(np.uint8)[None].repeat(N, 0)
    return d


def _write_case(root: Path, patients: list[str], offsets: dict[str, list[int]], seed: int | None = None) -> list[Path]:
    """Slice files + synth files whose MR is the reference + offset inside the brain."""
    files = []
    for i, p in enumerate(patients):
        s = _slices(p)
        sf = root / "slices" / f"{p}.npz"
        save_slices(sf, s)
        files.append(sf)
        for variant, offs in offsets.items():
            syn = s["mr"].astype(int)
            syn[s["brain_mask"]] += offs[i]
            folder = root / "synth" / variant / ("" if seed is None else f"seed{seed}")
            write_slices_npz(folder / f"{p}_slices.npz",
                             {"mr_syn": syn.astype(np.uint8), "z_index": s["z_index"],
                              "patient": np.array(p), "variant": np.array(variant)})
    return files


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_evaluate_patient_known_errors() -> None:
    s = _slices("P01")
    syn = s["mr"].astype(int)
    syn[s["brain_mask"]] += 20
    m = evaluate_patient(s, {"mr_syn": syn.astype(np.uint8), "z_index": s["z_index"]})
    brain_frac = s["brain_mask"].mean()
    head_frac_brain = s["brain_mask"].sum() / s["head_mask"].sum()
    assert m["n_slices"] == N
    assert m["mae"] == pytest.approx(20 * brain_frac)
    assert m["mae_head"] == pytest.approx(20 * head_frac_brain)
    assert m["mae_brain"] == pytest.approx(20.0)
    assert m["psnr_brain"] == pytest.approx(10 * math.log10(255**2 / 400))
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / (400 * brain_frac)))
    assert m["psnr_paper_convention"] == pytest.approx(m["psnr"] + 20 * math.log10(255))
    assert 0 < m["ssim_brain"] < m["ssim"] < 1


def test_patient_without_mr_is_an_error(tmp_path: Path) -> None:
    s = _slices("P05", with_mr=False)
    with pytest.raises(InputError, match=r"P05.npz: mr: patient P05 \(paired_test\) has no MR: cannot evaluate"):
        evaluate_patient(s, {"mr_syn": np.zeros((N, 256, 256), np.uint8)}, source=tmp_path / "P05.npz")
    sf = tmp_path / "P05.npz"
    save_slices(sf, s)
    rc = cli.main(["evaluate", "--slices", str(sf), "--synth-dir", str(tmp_path), "--variants", "mrgan",
                   "--per-patient", str(tmp_path / "pp.tsv"), "--summary", str(tmp_path / "s.tsv")])
    assert rc == 2
    assert not (tmp_path / "pp.tsv").exists()


def test_mismatched_synthesis_is_an_error() -> None:
    s = _slices("P01")
    with pytest.raises(InputError, match="shape"):
        evaluate_patient(s, {"mr_syn": np.zeros((N + 1, 256, 256), np.uint8)})
    with pytest.raises(InputError, match="z_index"):
        evaluate_patient(s, {"mr_syn": s["mr"], "z_index": s["z_index"] + 1})


def test_cli_end_to_end(tmp_path: Path) -> None:
    patients = [f"P0{i}" for i in range(1, 7)]
    offsets = {  # brain offsets: mrgan always the smallest error
        "paired": [20, 22, 24, 26, 28, 30],
        "unpaired": [30, 32, 34, 36, 38, 40],
        "mrgan": [10, 11, 12, 13, 14, 15],
    }
    files = _write_case(tmp_path, patients, offsets)
    out = tmp_path / "metrics"
    rc = cli.main(["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"),
                   "--variants", "paired", "unpaired", "mrgan",
                   "--per-patient", str(out / "per_patient.tsv"), "--summary", str(out / "summary.tsv"),
                   "--table1", str(out / "table1.tsv")])
    assert rc == 0
    per = _read_tsv(out / "per_patient.tsv")
    assert len(per) == 18
    assert list(per[0])[:8] == ["patient", "variant", "seed", "fold", "n_slices", "mae", "psnr", "ssim"]
    assert {r["fold"] for r in per} == {""}  # no cross-validation
    assert {r["seed"] for r in per} == {"0"}  # no --seeds: the flat layout, reported as seed 0
    row = next(r for r in per if r["patient"] == "P03" and r["variant"] == "mrgan")
    assert row["n_slices"] == str(N)
    assert float(row["mae_brain"]) == pytest.approx(12.0)

    summ = {r["metric"]: r for r in _read_tsv(out / "summary.tsv")}
    mb = summ["mae_brain"]
    assert float(mb["mrgan_mean"]) == pytest.approx(12.5)
    assert float(mb["mrgan_sd"]) == pytest.approx(np.std([10, 11, 12, 13, 14, 15], ddof=1), rel=1e-5)
    assert mb["mrgan"] == "12.50 ± 1.87"
    assert mb["paired_n"] == "6"

    assert not list(out.glob("wilcoxon*"))  # the tests are ct2mr compare's, with the patient as the unit

    t1 = _read_tsv(out / "table1.tsv")
    assert [r["patient"] for r in t1] == [*patients, "mean ± sd"]
    assert list(t1[0]) == ["patient", "mae_paired", "mae_unpaired", "mae_mrgan", "psnr_paired", "psnr_unpaired",
                           "psnr_mrgan", "psnr_paper_paired", "psnr_paper_unpaired", "psnr_paper_mrgan"]


def test_missing_synthesis(tmp_path: Path) -> None:
    files = _write_case(tmp_path, ["P01", "P02", "P03"], {"paired": [20, 21, 22], "mrgan": [10, 11, 12]})
    out = tmp_path / "m"
    args = ["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"),
            "--per-patient", str(out / "pp.tsv"), "--summary", str(out / "s.tsv")]
    assert cli.main([*args, "--variants", "paired", "mrgan"]) == 0
    # a variant with no synthesis files: error names the missing file
    with pytest.raises(InputError, match=r"unpaired/P01_slices\.npz"):
        from ct2mr.evaluation.evaluate import evaluate_all

        evaluate_all(files, tmp_path / "synth", ["unpaired"])


@pytest.mark.parametrize("damage", ["truncated", "empty", "bad_crc"])
def test_load_npz_damaged_file_is_an_input_error(tmp_path: Path, damage: str) -> None:
    """A truncated, empty or corrupt synthesis file is an InputError naming it (was a raw
    BadZipFile / EOFError traceback from `ct2mr evaluate` and `ct2mr figures`)."""
    from ct2mr.evaluation.evaluate import load_npz

    good = tmp_path / "good.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(good, mr_syn=rng.integers(0, 255, (3, 64, 64)).astype(np.uint8))
    data = bytearray(good.read_bytes())
    bad = tmp_path / f"{damage}.npz"
    if damage == "truncated":
        bad.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:  # flip bytes inside the compressed member: CRC / zlib error on read
        for i in range(100, 600):
            data[i] ^= 0x5A
        bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=str(bad.name)):
        load_npz(bad)


@pytest.mark.parametrize("value", ["0", "-255"])
def test_cli_non_positive_data_range_is_a_one_line_error(tmp_path: Path, capsys, value: str) -> None:
    """`--data-range 0` ended in a bare ValueError traceback from ct2mr.evaluation.metrics."""
    files = _write_case(tmp_path, ["P01"], {"mrgan": [10]})
    out = tmp_path / "metrics"
    rc = cli.main(["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"),
                   "--variants", "mrgan", "--per-patient", str(out / "p.tsv"), "--summary", str(out / "s.tsv"),
                   "--data-range", value])
    assert rc == 2
    assert "--data-range" in capsys.readouterr().err
    assert not out.exists()


def test_seeds_per_patient_and_summary(tmp_path: Path) -> None:
    """Two seeds: a seed column, summary rows over seeds (all) and per seed."""
    patients = ["P01", "P02", "P03", "P04"]
    by_seed = {  # brain offsets per seed; seed 1 is worse for both variants
        0: {"paired": [20, 22, 24, 26], "mrgan": [10, 11, 12, 13]},
        1: {"paired": [24, 26, 28, 30], "mrgan": [14, 15, 16, 17]},
    }
    for seed, offsets in by_seed.items():
        files = _write_case(tmp_path, patients, offsets, seed=seed)
    out = tmp_path / "m"
    assert cli.main(["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"),
                     "--variants", "paired", "mrgan", "--seeds", "0", "1",
                     "--per-patient", str(out / "pp.tsv"), "--summary", str(out / "s.tsv"),
                     "--table1", str(out / "t1.tsv")]) == 0
    per = _read_tsv(out / "pp.tsv")
    assert len(per) == 4 * 2 * 2
    row = next(r for r in per if r["patient"] == "P02" and r["variant"] == "mrgan" and r["seed"] == "1")
    assert float(row["mae_brain"]) == pytest.approx(15.0)

    summ = _read_tsv(out / "s.tsv")
    assert list(summ[0])[:2] == ["metric", "seed"]
    assert [r["seed"] for r in summ if r["metric"] == "mae_brain"] == ["all", "0", "1"]
    mb = {r["seed"]: r for r in summ if r["metric"] == "mae_brain"}
    # over seeds: each patient's mean over seeds (12, 13, 14, 15), then mean +- sd over patients
    assert float(mb["all"]["mrgan_mean"]) == pytest.approx(13.5)
    assert float(mb["all"]["mrgan_sd"]) == pytest.approx(np.std([12, 13, 14, 15], ddof=1), rel=1e-5)
    assert mb["all"]["mrgan_seeds"] == "2"
    # sd over seeds of the per-seed means 11.5 and 15.5
    assert float(mb["all"]["mrgan_sd_seeds"]) == pytest.approx(np.std([11.5, 15.5], ddof=1), rel=1e-5)
    assert float(mb["1"]["mrgan_mean"]) == pytest.approx(15.5)
    assert mb["1"]["mrgan_n"] == "4"

    t1 = _read_tsv(out / "t1.tsv")
    assert [r["patient"] for r in t1] == [*patients, "mean ± sd"]
    # a missing seed folder names the file
    with pytest.raises(InputError, match=r"mrgan/seed2/P01_slices\.npz"):
        from ct2mr.evaluation.evaluate import evaluate_all

        evaluate_all(files, tmp_path / "synth", ["mrgan"], seeds=[2])


def test_folds_column_and_a_patient_outside_the_folds(tmp_path: Path) -> None:
    """Under cross-validation each row carries its patient's fold; a test patient in no fold is an error
    (its model could have been trained on it)."""
    from ct2mr.training.folds import write_folds

    files = _write_case(tmp_path, ["P01", "P02", "P03"], {"paired": [20, 21, 22], "mrgan": [10, 11, 12]})
    folds = tmp_path / "folds.tsv"
    assignment = write_folds(folds, ["P01", "P02", "P03"], 3, seed=1)
    out = tmp_path / "m"
    args = ["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"), "--variants", "paired",
            "mrgan", "--per-patient", str(out / "pp.tsv"), "--summary", str(out / "s.tsv"), "--folds", str(folds)]
    assert cli.main(args) == 0
    per = _read_tsv(out / "pp.tsv")
    assert {(r["patient"], int(r["fold"])) for r in per} == set(assignment.items())
    write_folds(folds, ["P01", "P02"], 2)
    assert cli.main([*args[:-2], "--per-patient", str(out / "pp2.tsv"), "--folds", str(folds)]) == 2
    assert not (out / "pp2.tsv").exists()
