"""MR brain extraction by a CNN (deepbet) whose weights ship in its wheel.

The brain masks of :func:`ct2mr.preprocess.skull_mask.mr_masks` come from one of these
methods (``skull_mask.mr_method``); the measured comparison is
``bench/bench_brain_mask.py`` (results in ``bench/results/brain_mask.md``).

* **deepbet** (:func:`deepbet_mask`): the deepbet CNN (Fisch et al. 2024, MIT),
  trained on T1-weighted heads; its two TorchScript models (a 128^3 localiser and
  a 256^3 segmenter of the brain's bounding box) ship inside the installed
  ``deepbet`` wheel and load from there (nothing is downloaded). It runs on the
  CPU with the threads torch is given (``ct2mr --threads``). The image is
  reoriented to RAS for the network (its training orientation) and the mask
  back to the input's grid; the largest component is kept and its holes filled
  (as deepbet does). ``grow_mm`` (default 0: deepbet's mask as published) grows
  it: deepbet's masks are tighter than FreeSurfer's (real T1 head: 1197 vs 1318
  cm3, Dice 0.939; grown 1 mm: Dice 0.958, but the Seg3D head then measures
  1641 cm3, above the 1100-1600 plausibility range; bench).
* Template registration (the MNI152 2009a template of nilearn's wheel registered
  with ANTs) and ``brainextractor`` (BET in Python) were measured too
  (``bench/bench_brain_mask.py``) and are not offered: minutes per head and
  worse masks than deepbet's on the real T1 head.

All masks are bool arrays ``[z, y, x]`` on the input's grid (any orientation).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.preprocess.morphology import dilate, erode, fill_holes, largest_component

log = logging.getLogger(__name__)

def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ------------------------------------------------------------------ deepbet


@functools.lru_cache(maxsize=1)
def _deepbet_model():  # noqa: ANN202
    """deepbet's BrainExtraction with its two TorchScript models, from the installed wheel (CPU)."""
    try:
        from deepbet import BrainExtraction  # noqa: PLC0415
        from deepbet.utils import DATA_PATH  # noqa: PLC0415
    except ImportError as exc:
        raise InputError(None, "skull_mask.mr_method", f"deepbet is not installed ({exc}); "
                         "pip install deepbet==1.0.2 or choose 'morphology'") from exc
    for name in ("model.pt", "bbox_model.pt"):
        if not (Path(DATA_PATH) / "models" / name).is_file():
            raise InputError(Path(DATA_PATH) / "models" / name, "deepbet weights", "missing from the installed package")
    with warnings.catch_warnings():  # deepbet ships TorchScript models; torch 2.13 deprecates jit.load
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load`", category=DeprecationWarning)
        return BrainExtraction(no_gpu=True)


def deepbet_probability(mr: sitk.Image) -> np.ndarray:
    """deepbet's brain probability (float32, 0..1) on the grid of ``mr`` (array ``[z, y, x]``)."""
    import torch  # noqa: PLC0415

    bet = _deepbet_model()
    ras = sitk.DICOMOrient(mr, "RAS")
    x = np.ascontiguousarray(sitk.GetArrayFromImage(ras).astype(np.float32).transpose(2, 1, 0))
    with torch.inference_mode():
        p = bet.run_model(x)
    out = sitk.GetImageFromArray(np.ascontiguousarray(p.astype(np.float32).transpose(2, 1, 0)))
    out.CopyInformation(ras)
    return sitk.GetArrayFromImage(sitk.Resample(out, mr, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0))


def deepbet_mask(mr: sitk.Image, threshold: float = 0.5, grow_mm: float = 0.0) -> np.ndarray:
    """Brain mask of ``mr`` by deepbet (bool ``[z, y, x]``): probability > threshold, largest
    component, holes filled, grown by ``grow_mm`` (ball)."""
    m = deepbet_probability(mr) > threshold
    if not m.any():
        raise InputError(None, "brain", "deepbet found no brain: is this a head MR?")
    m = fill_holes(largest_component(m))
    return dilate(m, mr.GetSpacing(), grow_mm) if grow_mm > 0 else m  # type: ignore[arg-type]


#: quantiles (percent) of :func:`csf_contrast`: the dark tail, the middle, the bright tail of the deep brain
CSF_CONTRAST_QUANTILES = (1.0, 50.0, 99.0)


def csf_contrast(mr: sitk.Image, brain: np.ndarray) -> float:
    """How much brighter than the brain tissue the brain's brightest voxels are, measured against
    how much darker its darkest are: ``(p99 - p50) / (p50 - p1)`` of the MR inside ``brain``
    eroded by 10 mm (the deep brain, with the ventricles; the whole brain when the erosion leaves
    under 1 % of it).

    CSF is a tail of the deep brain's intensities: the bright one when CSF is brighter than
    tissue (T2, PD: the statistic is large, 4.3-43 on the real T2 and the phantom heads), the dark
    one when it is darker (T1, FLAIR: under 1, 0.26-0.86), whatever the image's units. Built from
    differences of quantiles divided by a difference of quantiles, it is unchanged by
    ``x -> a * x + b`` (any offset, any positive scale: a DICOM rescale, an intensity offset);
    quantiles ignore a few very bright voxels (contrast-enhanced vessels under 1 % of the deep
    brain), and a smooth +-20 % bias field moves it by less than a factor 3 (numbers:
    bench/results/brain_mask_auto.md). NaN when the deep brain is constant."""
    a = sitk.GetArrayViewFromImage(mr)
    deep = erode(brain, mr.GetSpacing(), 10.0)  # type: ignore[arg-type]
    if deep.sum() < 0.01 * brain.sum():
        deep = brain
    if not deep.any():
        return float("nan")
    p_lo, p50, p_hi = np.percentile(np.asarray(a[deep], dtype=np.float64), CSF_CONTRAST_QUANTILES)
    spread = p_hi - p_lo
    if not spread > 0:
        return float("nan")
    # a floor on the lower tail (1e-6 of the range) keeps it finite when half the deep brain is at its minimum
    return float((p_hi - p50) / max(p50 - p_lo, 1e-6 * spread))


def method_record(method: str) -> dict[str, Any]:
    """Package and version behind a method (for the QA JSON)."""
    pkg = {"deepbet": "deepbet", "morphology": "scikit-image"}.get(method)
    return {"package": pkg, "version": package_version(pkg) if pkg else None}
