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
from ct2mr.inference.synthesize import write_slices_npz
from ct2mr.preprocess.slices import save_slices

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


# --------------------------------------------------------------------------- 3D metrics, tissue Dice, QC


def _volume_case(tmp: Path, offset: float = 0.0) -> dict[str, Path]:
    """A small head on a 1 mm grid (z, y, x) = (24, 40, 40): CSF / GM / WM shells (T2-like grey levels),
    head mask, brain mask, slice file with z_index 4..19; the synthetic = real + ``offset`` on those slices."""
    import SimpleITK as sitk

    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in (24, 40, 40)), indexing="ij")
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    real = np.select([r <= 0.5, r <= 0.7, r <= 0.85, r <= 1.0], [90, 140, 220, 60], 0).astype(np.float64)
    real = np.clip(real + np.random.default_rng(0).normal(0, 8, real.shape), 0, 255).round()
    z_index = np.arange(4, 20)
    syn = np.zeros_like(real)
    syn[z_index] = np.clip(real[z_index] + offset, 0, 255)
    paths = {}
    for name, arr in {"real": real, "synth": syn, "head": r <= 1.0, "brain": r <= 0.85}.items():
        paths[name] = tmp / f"{name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(paths[name]))
    paths["slices"] = tmp / "P01.npz"
    np.savez(paths["slices"], z_index=z_index)
    return paths


def _volume_args(p: dict[str, Path], out: Path) -> list[str]:
    return ["evaluate-volume", "--patient", "P01", "--variant", "mrgan", "--seed", "0", "--real", str(p["real"]),
            "--synth", str(p["synth"]), "--head-mask", str(p["head"]), "--brain-mask", str(p["brain"]),
            "--slices", str(p["slices"]), "--output", str(out)]


def test_evaluate_volume_known_answers_and_the_join(tmp_path: Path) -> None:
    """evaluate-volume on the synthesized slices only: a constant offset is the 3D MAE, no slice jump, and the
    same tissues; its row joins per_patient.tsv, a patient without a volume keeps empty cells."""
    import pandas as pd

    from ct2mr.evaluation.volume_metrics import VOLUME_COLUMNS, join_volume_metrics

    p = _volume_case(tmp_path, offset=5.0)
    real_t = tmp_path / "real_tissues.nii.gz"
    settings = ["--contrast", "t2", "--mrf-smoothing", "0"]
    assert cli.main(["segment-tissues", "--mr", str(p["real"]), "--brain-mask", str(p["brain"]), "--slices",
                     str(p["slices"]), "--output", str(real_t), *settings]) == 0
    out = tmp_path / "vol.tsv"
    assert cli.main([*_volume_args(p, out), "--real-tissues", str(real_t), "--output-tissues",
                     str(tmp_path / "syn_t.nii.gz"), *settings]) == 0
    row = _read_tsv(out)[0]
    assert list(row)[:3] == ["patient", "variant", "seed"] and list(row)[3:] == VOLUME_COLUMNS
    # real + 5 everywhere on the kept slices (the real MR is <= 250 there): MAE 5, PSNR 10 log10(255^2/25)
    assert float(row["mae_3d_head"]) == pytest.approx(5.0, abs=0.05)
    assert float(row["psnr_3d_head"]) == pytest.approx(10 * math.log10(255**2 / 25), abs=0.1)
    assert 0.9 < float(row["ms_ssim_3d_head"]) <= 1.0
    assert float(row["slice_jump_brain"]) == pytest.approx(0.0, abs=0.05)  # the offset is the same on every slice
    assert min(float(row[c]) for c in ("dice_csf", "dice_gm", "dice_wm")) > 0.95  # an offset keeps the classes
    assert float(row["hd95_gm"]) <= 1.0 and float(row["hd95_wm"]) <= 1.0
    assert (tmp_path / "syn_t.nii.gz").is_file()

    # segmentation off: the image metrics only, the Dice / HD95 cells empty
    off = tmp_path / "off.tsv"
    assert cli.main(_volume_args(p, off)) == 0
    row_off = _read_tsv(off)[0]
    assert row_off["dice_gm"] == "" and row_off["hd95_wm"] == "" and row_off["mae_3d_head"] == row["mae_3d_head"]

    per = pd.DataFrame({"patient": ["P01", "P01", "PNG1"], "variant": ["mrgan", "paired", "mrgan"], "seed": [0, 0, 0]})
    joined = join_volume_metrics(per, [out])
    assert joined.loc[0, "mae_3d_head"] == pytest.approx(float(row["mae_3d_head"]))
    assert joined.loc[[1, 2], VOLUME_COLUMNS].isna().all().all()  # no table: empty, not zero
    stray = tmp_path / "stray.tsv"
    stray.write_text(out.read_text().replace("P01", "P09"))
    with pytest.raises(InputError, match="P09.*not a row"):
        join_volume_metrics(per, [stray])


def test_volume_columns_reach_per_patient_and_summary(tmp_path: Path) -> None:
    files = _write_case(tmp_path, ["P01", "P02"], {"mrgan": [10, 12]})
    vol = tmp_path / "v.tsv"
    vol.write_text("patient\tvariant\tseed\tmae_3d_head\tpsnr_3d_head\tms_ssim_3d_head\tslice_jump_brain\tdice_csf"
                   "\tdice_gm\tdice_wm\thd95_gm\thd95_wm\nP01\tmrgan\t0\t11\t25\t0.9\t2\t0.8\t0.7\t0.9\t3\t2\n")
    out = tmp_path / "m"
    assert cli.main(["evaluate", "--slices", *map(str, files), "--synth-dir", str(tmp_path / "synth"),
                     "--variants", "mrgan", "--per-patient", str(out / "pp.tsv"), "--summary", str(out / "s.tsv"),
                     "--volume-metrics", str(vol)]) == 0
    per = {r["patient"]: r for r in _read_tsv(out / "pp.tsv")}
    assert per["P01"]["dice_gm"] == "0.7" and per["P02"]["dice_gm"] == ""  # P02 has no volume: empty
    summ = {r["metric"]: r for r in _read_tsv(out / "s.tsv")}
    assert summ["dice_gm"]["mrgan"] == "0.7000" and summ["dice_gm"]["mrgan_n"] == "1"


def test_qc_flags_and_dice_correlation(tmp_path: Path) -> None:
    import json

    import pandas as pd

    from ct2mr.evaluation.qc import dice_correlation, qc_table

    n = 12
    mae = [10.0] * (n - 1) + [40.0]  # one outlier among 13 (PNG1 too): z = 12/sqrt(13) = 3.33 > 3
    dice = [0.8] * (n - 2) + [0.65, 0.8]  # P11: 0.15 below the median 0.8
    rows = [{"patient": f"P{i:02d}", "variant": "mrgan", "seed": 0, "mae_head": mae[i], "mae_3d_head": mae[i],
             "dice_csf": dice[i], "dice_gm": dice[i], "dice_wm": dice[i]} for i in range(n)]
    rows.append({"patient": "PNG1", "variant": "mrgan", "seed": 0, "mae_head": 10.0})
    per = pd.DataFrame(rows)
    qc = qc_table(per, {"P00": "morphology"}).set_index("patient")
    assert qc.loc["P11", "flags"] == "MAE z > 3"
    assert qc.loc["P11", "mae_head_z"] == pytest.approx(12 / math.sqrt(13))  # (n-1)/sqrt(n), 13 with PNG1
    assert qc.loc["P10", "flags"] == "Dice drop > 0.1" and qc.loc["P10", "dice_drop"] == pytest.approx(0.15)
    assert qc.loc["P05", "flags"] == "" and qc.loc["P00", "mr_mask_method"] == "morphology"
    assert qc.loc["P05", "mr_mask_method"] == "-"
    assert qc.loc["PNG1", "note"].startswith("no volume")
    corr = dice_correlation(per).set_index("metric")
    assert corr.loc["mae_3d_head", "n"] == n and corr.loc["mae_head", "n"] == n
    assert corr.loc["mae_head", "n_patients"] == n and "p_value" not in corr.columns  # descriptive only
    two_variants = pd.concat([per.dropna(subset=["dice_csf"]), per.dropna(subset=["dice_csf"]).assign(variant="paired")])
    corr2 = dice_correlation(two_variants).set_index("metric")
    assert corr2.loc["mae_head", "n"] == 2 * n and corr2.loc["mae_head", "n_patients"] == n
    assert math.isnan(corr.loc["slice_jump_brain", "spearman_rho"])  # no values
    mono = pd.DataFrame({"patient": list("abcd"), "variant": "v", "seed": 0, "mae_head": [1.0, 2, 3, 4],
                         "dice_csf": [0.9, 0.8, 0.7, 0.6], "dice_gm": 0.5, "dice_wm": 0.5})
    assert dice_correlation(mono).set_index("metric").loc["mae_head", "spearman_rho"] == pytest.approx(-1.0)

    qa = tmp_path / "P00" / "masking_qa_mr.json"
    qa.parent.mkdir()
    qa.write_text(json.dumps({"method_used": "deepbet"}))
    pp = tmp_path / "pp.tsv"
    per.to_csv(pp, sep="\t", index=False)
    assert cli.main(["qc", "--per-patient", str(pp), "--mask-qa", str(qa), "--qc", str(tmp_path / "qc.tsv"),
                     "--correlation", str(tmp_path / "c.tsv")]) == 0
    assert _read_tsv(tmp_path / "qc.tsv")[0]["mr_mask_method"] == "deepbet"


def test_a_flat_synthetic_mr_scores_dice_0_instead_of_failing(tmp_path: Path) -> None:
    import SimpleITK as sitk

    p = _volume_case(tmp_path)
    flat = sitk.ReadImage(str(p["synth"])) * 0 + 100  # an untrained model's constant output
    sitk.WriteImage(flat, str(p["synth"]))
    real_t = tmp_path / "real_tissues.nii.gz"
    settings = ["--contrast", "t2", "--mrf-smoothing", "0"]
    assert cli.main(["segment-tissues", "--mr", str(p["real"]), "--brain-mask", str(p["brain"]), "--slices",
                     str(p["slices"]), "--output", str(real_t), *settings]) == 0
    out = tmp_path / "vol.tsv"
    assert cli.main([*_volume_args(p, out), "--real-tissues", str(real_t), *settings]) == 0
    row = _read_tsv(out)[0]
    assert row["dice_gm"] == "0" and row["hd95_gm"] == "" and float(row["mae_3d_head"]) > 0
