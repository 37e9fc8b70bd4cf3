"""``skull_mask.mr_method: auto`` on the real T1 heads of ``../shared/data/volumes`` (skipped when absent)
under an intensity offset, a scale, smooth bias fields and bright vessel voxels: the same method (deepbet,
CSF-dark), a mask of Dice >= 0.98 to the unperturbed one, the same decision numbers for an offset or a
scale, and no warning (before this check existed the real heads kept deepbet under these too; the
phantom's offset flipped). Resampled to 2 mm to keep the suite fast (deepbet sees a 256^3 crop whatever the
grid; the masks of the pipeline's 1 mm grid: bench/results/brain_mask_auto.md). The phantom and the
warnings: tests/test_brain_mask_auto.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import SimpleITK as sitk

from ct2mr.preprocess.skull_mask import CSF_CONTRAST_AMBIGUOUS, CSF_CONTRAST_THRESHOLD, MrMasks, mr_masks
from tests.test_brain_mask_auto import PERTURBATIONS, assert_stable, auto_warnings, brain_of, perturb

HEADS = {"mne": "mr_head_t1_mne.nii.gz", "seg3d": "mr_head_t1_seg3d.nii.gz"}
_CACHE: dict[str, tuple[sitk.Image, MrMasks]] = {}


def _head(shared_data: Path, name: str) -> tuple[sitk.Image, MrMasks]:
    """A real T1 head as the pipeline masks it (LPS), at 2 mm, and its unperturbed ``auto`` masks (cached)."""
    if name not in _CACHE:
        from ct2mr.preprocess.resample import resample_isotropic

        img = sitk.ReadImage(str(shared_data / "volumes" / HEADS[name]), sitk.sitkFloat32)
        mr = resample_isotropic(sitk.DICOMOrient(img, "LPS"), (2.0, 2.0, 2.0))
        _CACHE[name] = (mr, mr_masks(mr, source=name))
    return _CACHE[name]


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(HEADS))
def test_real_t1_unperturbed_is_csf_dark(shared_data: Path, name: str) -> None:
    _, base = _head(shared_data, name)
    info = base.info or {}
    assert info["method_used"] == "deepbet" and info["warnings"] == []
    # clearly CSF-dark: below the ambiguous band around the threshold (measured 0.26 and 0.73)
    assert info["csf_contrast"] < CSF_CONTRAST_THRESHOLD / CSF_CONTRAST_AMBIGUOUS
    assert info["decision"].startswith("deepbet: CSF-dark")


#: (head, perturbation) pairs: every perturbation on one head, the offset, a bias field and the vessels on the
#: other (a deepbet run each, ~4 s: the suite's budget; all of them on both heads at 1 mm: the bench)
CASES = [("mne", kind) for kind in PERTURBATIONS] + [("seg3d", "offset"), ("seg3d", "bias_quadratic"),
                                                      ("seg3d", "vessels")]


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "kind"), CASES)
def test_real_t1_perturbed_keeps_the_method_and_mask(shared_data: Path, name: str, kind: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    mr, base = _head(shared_data, name)
    caplog.set_level(logging.WARNING)
    m = mr_masks(perturb(mr, kind, brain_of(base)), source=f"{name}+{kind}")
    assert_stable(base, m, kind)
    assert auto_warnings(caplog) == []
