"""The Snakemake report, opened as a person would: in headless Chromium (Debian's).

Playwright drives the system Chromium (no browser download). The test clicks
through the report's categories, opens the per-patient table and a figure, and
keeps screenshots in test-artifacts/report/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.workflow_helpers import REPO, snakemake

ARTIFACTS = REPO / "test-artifacts" / "report"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(tiny_run, "--report", str(path))
    return path


@pytest.mark.slow
def test_report_holds_every_category_and_table(report: Path, tiny_run: Path) -> None:
    text = report.read_text(encoding="utf-8")
    # the 3D evaluation of the volume test patient (T3): every column filled, Dice in [0, 1]
    from ct2mr.evaluation.comparisons import read_per_patient
    from ct2mr.evaluation.volume_metrics import VOLUME_COLUMNS

    per = read_per_patient(tiny_run / "results/metrics/per_patient.tsv")
    assert list(per.columns[-len(VOLUME_COLUMNS):]) == VOLUME_COLUMNS
    t3 = per[per["patient"] == "T3"]
    assert len(t3) == 4 and t3[VOLUME_COLUMNS].notna().all().all(), t3[VOLUME_COLUMNS]
    assert t3[["dice_csf", "dice_gm", "dice_wm"]].stack().between(0, 1).all()
    comparisons = (tiny_run / "results/metrics/comparisons.tsv").read_text()
    assert "\ndice_gm\tmrgan\tpaired\t" in comparisons  # the comparisons cover the new columns
    assert (tiny_run / "results/metrics/dice_correlation.tsv").is_file()
    for words in ("qc.html", "dice_correlation.html", "tissues.png", "Tissue segmentation"):
        assert words in text, f"{words!r} missing from the report"
    for words in ("1. Data and QA", "2. Registration", "3. Training", "4. Evaluation",
                  "per_patient.html", "summary.html", "table1.html", "registration.html",
                  "synthesis_T3.png", "variants_T3.png", "cycle_T3.png", "metrics.png", "losses.png",
                  "registration_qa.png", "masking_qa_ct.png", "loss_curve.png",
                  "comparisons.html", "difference_mrgan_vs_paired.png", "The primary comparison",
                  "exact sign-flip", "undecided: with 1 test patient"):
        assert words in text, f"{words!r} missing from the report"
    assert "wilcoxon" not in text.lower()  # one test of one question: ct2mr compare's


@pytest.mark.slow
def test_report_renders_in_chromium(report: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian package 'chromium')")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(report.as_uri())
            body = page.inner_text("body")
            assert "ct2mr synthesizes brain MR from CT" in body  # the workflow description rendered
            for category in ("Data and QA", "Registration", "Training", "Evaluation"):
                assert category in body
            page.screenshot(path=str(ARTIFACTS / "home.png"))

            # the per-patient table, as a person opens it: Evaluation > Tables > per patient
            page.get_by_role("link", name="Evaluation").click()
            page.get_by_role("link", name="Tables").click()
            page.locator("tr", has_text="per patient").first.locator("a").first.click()
            page.wait_for_timeout(500)
            frames = [f for f in page.frames if f != page.main_frame]
            assert frames, "the table did not open"
            table = frames[-1].inner_text("body")
            assert "Per-patient metrics" in table
            for words in ("patient", "variant", "mae", "psnr", "ssim", "T3", "paired", "unpaired", "mrgan"):
                assert words in table
            page.screenshot(path=str(ARTIFACTS / "per_patient_table.png"))

            # a figure: Evaluation > Figure 5 shows an image that decoded
            page.get_by_role("link", name="Evaluation").first.click()
            page.get_by_role("link", name="Figure 5: synthesis").click()
            page.locator("tr", has_text="T3").first.locator("a").first.click()
            page.wait_for_timeout(500)
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            assert any(w > 200 for w in widths), f"no decoded figure on the page: {widths}"
            page.screenshot(path=str(ARTIFACTS / "figure5.png"))
        finally:
            browser.close()
