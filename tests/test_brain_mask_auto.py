"""``skull_mask.mr_method: auto`` holds beyond the heads it was tuned on: the phantom.

The decision (deepbet or the morphology, :func:`ct2mr.preprocess.skull_mask.auto_brain`) and the
mask must not change under an intensity offset, a positive scale, a smooth +-20 % multiplicative
bias field or a few very bright (vessel) voxels; every fallback and disagreement is a warning
naming the scan; the decision's numbers are recorded (QA JSON). The real heads:
tests/test_brain_mask_auto_real.py. Measured over more heads and fields:
bench/bench_brain_mask_auto.py -> bench/results/brain_mask_auto.md.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.preprocess import brain_extraction as bx
from ct2mr.preprocess.skull_mask import (
    CSF_CONTRAST_THRESHOLD,
    MrMasks,
    masking_qa_record,
    mr_masks,
)

#: the intensity perturbations every case must survive (see :func:`perturb`)
PERTURBATIONS = ("offset", "scale", "bias_linear", "bias_quadratic", "vessels")


def perturb(img: sitk.Image, kind: str, brain: np.ndarray, seed: int = 0) -> sitk.Image:
    """``img`` with its intensities changed: ``offset`` +500, ``scale`` x3, ``bias_linear`` x (1 + 0.2 z),
    ``bias_quadratic`` x (1 + 0.2 (x^2 + y^2 - 1)) (x, y, z in -1..1 across the array: +-20 %), ``vessels``:
    0.2 % of ``brain``'s voxels at twice its 99.9th percentile (contrast-enhanced vessels)."""
    a = sitk.GetArrayFromImage(img).astype(np.float32)
    z, y, x = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in a.shape], indexing="ij")
    if kind == "offset":
        a += 500.0
    elif kind == "scale":
        a *= 3.0
    elif kind == "bias_linear":
        a *= 1.0 + 0.2 * z
    elif kind == "bias_quadratic":
        a *= 1.0 + 0.2 * (x * x + y * y - 1.0)
    elif kind == "vessels":
        idx = np.flatnonzero(brain)
        pick = np.random.default_rng(seed).choice(idx, size=max(1, int(0.002 * idx.size)), replace=False)
        a.flat[pick] = 2.0 * np.percentile(a[brain], 99.9)
    else:
        raise ValueError(kind)
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    return out


def brain_of(m: MrMasks) -> np.ndarray:
    return sitk.GetArrayFromImage(m.brain) > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def auto_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ct2mr.preprocess.skull_mask" and r.levelno >= logging.WARNING]


def assert_stable(base: MrMasks, m: MrMasks, kind: str) -> None:
    """Same method, Dice >= 0.98 to the unperturbed mask, the decision's numbers recorded (and, for an
    offset or a scale, the same numbers)."""
    b, i = base.info or {}, m.info or {}
    assert i["method_used"] == b["method_used"], (kind, i.get("decision"), b.get("decision"))
    assert dice(brain_of(m), brain_of(base)) >= 0.98, kind
    for key in ("csf_contrast", "brain_head_fraction", "decision", "thresholds", "warnings"):
        assert key in i, key
    if kind in ("offset", "scale"):
        assert i["csf_contrast"] == pytest.approx(b["csf_contrast"], rel=1e-3)
        assert i["brain_head_fraction"] == pytest.approx(b["brain_head_fraction"], abs=2e-3)


# --------------------------------------------------------------------------- the statistic


def test_csf_contrast_is_invariant_to_offset_and_scale() -> None:
    """(p99 - p50) / (p50 - p1): x -> a x + b (a > 0) leaves it unchanged; the old p99/p50 moved."""
    rng = np.random.default_rng(1)
    a = rng.normal(100.0, 5.0, (60, 60, 60)).astype(np.float32)
    a[25:35, 25:35, 25:35] = rng.normal(300.0, 5.0, (10, 10, 10))  # bright "ventricles": CSF-bright
    brain = np.zeros(a.shape, bool)
    brain[5:55, 5:55, 5:55] = True  # 1 mm voxels: the deep brain (eroded 10 mm) is [15:45]^3
    img = sitk.GetImageFromArray(a)
    c = bx.csf_contrast(img, brain)
    assert c > CSF_CONTRAST_THRESHOLD
    for scale, offset in ((3.0, 0.0), (1.0, 500.0), (0.01, -1.0), (7.5, 1e4)):
        assert bx.csf_contrast(sitk.GetImageFromArray(a * scale + offset), brain) == pytest.approx(c, rel=1e-4)
    dark = sitk.GetImageFromArray(np.where(a > 200, 20.0, a).astype(np.float32))  # CSF darker than tissue: T1
    assert bx.csf_contrast(dark, brain) < 1.0
    assert np.isnan(bx.csf_contrast(sitk.GetImageFromArray(np.ones_like(a)), brain))


# --------------------------------------------------------------------------- the phantom P01


@pytest.fixture(scope="module")
def p01() -> tuple[sitk.Image, MrMasks]:
    """The default cohort's phantom P01 (T2-like, its own 1.2x1.1x3 mm grid) and its ``auto`` masks."""
    from ct2mr.phantom.patient import make_mr

    mr = make_mr("P01", 2018)
    return mr, mr_masks(mr, source="P01")


def test_phantom_p01_unperturbed(p01, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    mr, base = p01
    info = base.info or {}
    assert info["method_used"] == "morphology" and info["csf_contrast"] > 2 * CSF_CONTRAST_THRESHOLD
    assert info["agreement_dice"] >= 0.75 and info["warnings"] == []
    assert info["decision"].startswith("morphology: CSF-bright")
    rec = masking_qa_record(mr, base)  # what masking_qa_mr.json holds
    assert json.loads(json.dumps(rec, allow_nan=False))["csf_contrast"] == info["csf_contrast"]
    assert rec["thresholds"]["csf_contrast"] == CSF_CONTRAST_THRESHOLD


@pytest.mark.parametrize("kind", PERTURBATIONS)
def test_phantom_p01_perturbed_keeps_the_method_and_mask(p01, kind: str,  # noqa: ANN001
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Before: P01 + 500 moved p99/p50 from 2.04 to 1.49, deepbet was chosen (Dice to the truth
    0.995 -> 0.954) and nothing was said."""
    mr, base = p01
    caplog.set_level(logging.WARNING)
    m = mr_masks(perturb(mr, kind, brain_of(base)), source=f"P01+{kind}")
    assert_stable(base, m, kind)
    assert auto_warnings(caplog) == []


# --------------------------------------------------------------------------- warnings and records


def test_disagreement_keeps_deepbet_and_warns(p01, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                              caplog: pytest.LogCaptureFixture) -> None:
    """CSF-bright with skull, but the morphology and deepbet disagree (Dice < 0.75): deepbet, said aloud."""
    from ct2mr.preprocess.morphology import erode

    mr, base = p01
    small = erode(brain_of(base), mr.GetSpacing(), 12.0)  # a CNN mask far too small: a gross disagreement
    monkeypatch.setattr(bx, "deepbet_mask", lambda *args, **kwargs: small)
    caplog.set_level(logging.WARNING)
    m = mr_masks(mr, source="scan-42")
    info = m.info or {}
    assert info["method_used"] == "deepbet" and info["agreement_dice"] < 0.75
    np.testing.assert_array_equal(brain_of(m), small)
    (msg,) = auto_warnings(caplog)
    assert "scan-42" in msg and "disagree" in msg and f"{info['agreement_dice']:.3f}" in msg
    assert f"{info['csf_contrast']:.2f}" in msg
    assert info["warnings"] and "disagree" in info["warnings"][0] and "disagreement" in info["decision"]


def test_deepbet_failure_falls_back_and_warns(p01, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                              caplog: pytest.LogCaptureFixture) -> None:
    mr, base = p01

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise InputError(None, "brain", "deepbet found no brain: is this a head MR?")

    monkeypatch.setattr(bx, "deepbet_mask", broken)
    caplog.set_level(logging.WARNING)
    m = mr_masks(mr, source="scan-7")
    info = m.info or {}
    assert info["method_used"] == "morphology" and "no brain" in info["fallback"]
    (msg,) = auto_warnings(caplog)
    assert "scan-7" in msg and "deepbet failed" in msg
    assert info["warnings"] == [info["fallback"]] and info["decision"].startswith("morphology")
    np.testing.assert_array_equal(brain_of(m), brain_of(base))  # the morphology auto would have chosen anyway


def test_ambiguous_contrast_warns(p01, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                  caplog: pytest.LogCaptureFixture) -> None:
    """A contrast within a factor 2 of the threshold (no measured head has one) is decided, and warned."""
    mr, base = p01
    monkeypatch.setattr(bx, "deepbet_mask", lambda *args, **kwargs: brain_of(base))
    caplog.set_level(logging.WARNING)
    for value, used in ((2.5, "morphology"), (1.5, "deepbet")):
        monkeypatch.setattr(bx, "csf_contrast", lambda *args, v=value, **kwargs: v)
        caplog.clear()
        m = mr_masks(mr, source="scan-9")
        assert (m.info or {})["method_used"] == used
        (msg,) = auto_warnings(caplog)
        assert "scan-9" in msg and f"{value:.2f}" in msg and "near its threshold" in msg
    monkeypatch.setattr(bx, "csf_contrast", lambda *args, **kwargs: float("nan"))
    caplog.clear()
    m = mr_masks(mr, source="scan-9")
    assert (m.info or {})["method_used"] == "deepbet" and (m.info or {})["csf_contrast"] is None
    assert "undefined" in auto_warnings(caplog)[0]
