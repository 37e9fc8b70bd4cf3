"""``ct2mr check-config --data``: every input's header opened, every problem reported at once, one line each.

Built from the real data of ../shared/data: a few files of the GE head CT export (copied, some
edited with pydicom), the real NIfTI volumes (headers only, never copied) and real 2D head CTs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from PIL import Image

from ct2mr.cli import main
from tests.test_image_pools import _png_header_only

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def export_files(shared_data: Path) -> dict[int, list[Path]]:
    """SeriesNumber -> the GE export's files of that series, sorted by InstanceNumber (headers only)."""
    import pydicom

    by_series: dict[int, list[tuple[int, Path]]] = {}
    for f in sorted((shared_data / "head_ct_dicom_export" / "DICOM").iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesNumber", "InstanceNumber"])
        by_series.setdefault(int(ds.SeriesNumber), []).append((int(ds.InstanceNumber), f))
    return {n: [f for _, f in sorted(items)] for n, items in by_series.items()}


def _copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def _project(tmp_path: Path, rows: list[str], backend: str = "simpleitk",
             columns: str = "patient\trole\tct\tmr\ttruth\tseries", variants: list[str] | None = None) -> Path:
    """A config + patient table (tab-separated ``columns``) in ``tmp_path``; returns the config."""
    table = tmp_path / "patients.tsv"
    table.write_text(columns + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    config = tmp_path / "config.yaml"
    data = {"patients": str(table), "registration": {"backend": backend}}
    if variants:
        data["training"] = {"variants": variants}
    config.write_text(yaml.safe_dump(data))
    return config


def _run(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    rc = main(["check-config", "--config", str(config), "--data"])
    out, err = capsys.readouterr()
    return rc, [ln for ln in err.splitlines() if ln.strip()], out


def test_every_problem_reported_at_once(shared_data: Path, export_files: dict[int, list[Path]], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom

    vol = shared_data / "volumes"
    # a good DICOM folder: 4 slices of the 2.5 mm axial series and 2 of the 5 mm one; series 3 chosen by number
    good = _copy(export_files[3][30:34] + export_files[2][10:12], tmp_path / "good_dicom")
    # one series whose files carry two PatientIDs (edited copies)
    two = _copy(export_files[3][40:44], tmp_path / "two_patients")
    ds = pydicom.dcmread(two / export_files[3][41].name)
    ds.PatientID = "SOMEONE_ELSE"
    ds.save_as(two / export_files[3][41].name)
    # a series choice that matches nothing
    other = _copy(export_files[3][50:54], tmp_path / "other_dicom")
    # a pool: 2 real head CTs, a strip (dropped, not a problem), a 16-bit image and a decompression bomb
    pool = tmp_path / "pool"
    pool.mkdir()
    for name in ("000.png", "107.png"):
        shutil.copy(shared_data / "head_ct_2d" / name, pool / name)
    Image.fromarray(np.zeros((40, 2000), np.uint8) + 90).save(pool / "strip.png")
    Image.fromarray(np.full((64, 64), 3000, np.uint16)).save(pool / "deep.png")
    _png_header_only(pool / "huge.png", 30000, 30000)
    # a truth JSON without its center, and a 2D NIfTI given as an MR volume
    (tmp_path / "truth.json").write_text('{"matrix": [[1,0,0],[0,1,0],[0,0,1]], "translation": [0,0,0]}')
    sitk.WriteImage(sitk.Image([64, 64], sitk.sitkUInt8), str(tmp_path / "flat.nii.gz"))
    rows = [
        f"GOOD\tpaired_train\t{good}\t{vol / 'mr_head_t1_mne.nii.gz'}\t\t3",
        f"TWO\tct_only\t{two}\t\t\t",
        f"SEL\tct_only\t{other}\t\t\t99",
        f"POOL\tct_only\t{pool}\t\t\t",
        f"TRUTH\tpaired_test\t{vol / 'ct_head_invesalius.nii.gz'}\t{vol / 'mr_head_t1_seg3d.nii.gz'}"
        f"\t{tmp_path / 'truth.json'}\t",
        f"FLAT\tmr_only\t\t{tmp_path / 'flat.nii.gz'}\t\t",
    ]
    config = _project(tmp_path, rows, backend="elastix")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # no elastix program
    rc, err, out = _run(config, capsys)
    assert rc == 2
    expected = [
        r"line 3 \(patient 'TWO'\), column ct: .*two_patients.*2 patients",
        r"line 4 \(patient 'SEL'\), column ct: .*other_dicom: series: '99' matches no series; series found: 3 ",
        r"line 5 \(patient 'POOL'\), column ct: .*deep\.png: mode: 16-bit",
        r"line 5 \(patient 'POOL'\), column ct: .*huge\.png: size: 900000000 pixels.*decompression",
        r"line 6 \(patient 'TRUTH'\), column truth: .*truth\.json: center: missing",
        r"line 7 \(patient 'FLAT'\), column mr: .*flat\.nii\.gz: dimension: 2D image",
        r"config\.yaml: registration\.backend: registration backend 'elastix': needs the 'elastix' program on PATH",
    ]
    problems = err[:-1]
    assert len(problems) == len(expected), err
    for pattern in expected:
        assert sum(bool(re.search(pattern, ln)) for ln in problems) == 1, (pattern, err)
    assert re.search(r"config\.yaml: --data: 7 problems in the inputs \(listed above\); 6 patients checked", err[-1]), err
    assert not any("GOOD" in ln or "strip.png" in ln for ln in err)
    # what is fine is said on stdout: the series each DICOM folder gives, the pool images dropped by size
    assert re.search(r"GOOD.*column ct: DICOM series 3 \(4 files.*chosen by the table's series value '3'", out), out
    assert re.search(r"POOL.*pool of 5 images; 1 will be dropped by the job: strip\.png \(a 2000x40 px strip", out), out
    assert re.search(r"# data: 6 patients, \d+ files opened in [\d.]+ s", out), out


def test_real_harvard_config_passes(repo_root: Path, shared_data: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Harvard study (106 PNG pairs and both real pools, 630 images) is checked in about a second."""
    monkeypatch.chdir(repo_root)
    rc, err, out = _run(Path("config/harvard.yaml"), capsys)
    assert rc == 0, err
    summary = out.strip().splitlines()[-1]
    m = re.search(r"# data: 8 patients, (\d+) files opened in ([\d.]+) s .*no problem found", summary)
    assert m and int(m.group(1)) == 2 * 106 + 324 + 200, summary
    assert re.search(r"HCT_POOL.*200 images", out) and re.search(r"HMR_POOL.*324 images", out), out


def test_phantom_rows_not_yet_generated_are_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh project: the phantom rows' scans are made by the workflow, so --data notes them and passes."""
    monkeypatch.chdir(tmp_path)
    rows = [f"P{i}\t{role}\tresults/phantom/P{i}/ct.nii.gz\tresults/phantom/P{i}/mr_dicom\tresults/phantom/P{i}/truth.json\t"
            for i, role in ((1, "paired_train"), (2, "paired_test"))]
    rows += ["P3\tct_only\tresults/phantom/P3/ct_dicom\t\t\t", "P4\tmr_only\t\tresults/phantom/P4/mr.mha\t\t"]
    rc, err, out = _run(_project(tmp_path, rows), capsys)
    assert rc == 0, err
    assert len(re.findall(r"not generated yet", out)) == 4, out  # one note per phantom row
    assert "no problem found" in out


def test_wrong_modality_and_capped_lines(export_files: dict[int, list[Path]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A series chosen for the MR column that is a CT; a pool of 7 bad images gives 5 lines and a count."""
    pool = tmp_path / "deep_pool"
    pool.mkdir()
    for i in range(7):
        Image.fromarray(np.full((40, 40), 3000 + i, np.uint16)).save(pool / f"deep{i}.png")
    ct = _copy(export_files[3][20:24], tmp_path / "ct_as_mr")
    rows = [f"CTMR\tmr_only\t\t{ct}\t3", f"DEEP\tct_only\t{pool}\t\t"]
    config = _project(tmp_path, rows, columns="patient\trole\tct\tmr\tmr_series", variants=["unpaired"])
    rc, err, _ = _run(config, capsys)
    assert rc == 2
    assert sum(bool(re.search(r"'CTMR'.*column mr: .*ct_as_mr: Modality: series 3 .* is CT, but column mr takes the MR",
                              ln)) for ln in err) == 1, err
    deep = [ln for ln in err if "'DEEP'" in ln]
    assert len(deep) == 6 and all("16-bit" in ln for ln in deep[:5]), deep
    assert re.search(r"\.\.\. and 3 more problem\(s\)", deep[5]), deep  # 2 more images + the pool as a whole
    assert re.search(r"--data: 9 problems", err[-1]), err  # 1 + 7 images + the pool as a whole
