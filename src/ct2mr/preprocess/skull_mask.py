"""Head, skull and brain masks of a CT (in HU) or an MR, and skull-stripped images.

All masks are ``uint8`` 0/1 images on the input's grid (any orientation; the
pipeline uses LPS 1 mm). Morphology radii are given in mm and converted per
axis to ``round(r / spacing)`` voxels (SimpleITK ball structuring elements).

CT (:func:`ct_masks`), input in HU:

* **head** = largest 3D connected component (face connectivity) of ``HU >
  head_threshold_hu`` (default -400), holes filled per axial slice and in 3D.
* **skull** = ``HU > skull_threshold_hu`` (default 300) inside the head.
* **brain** (intracranial soft tissue): candidates = head, not skull, HU in
  ``brain_hu_range`` (default -50..150); opened with a ball of
  ``brain_opening_mm`` (default 4 mm) to cut the bridges through thin or
  partial-volume bone, foramina and orbits; largest 3D component; holes filled
  in 3D and per axial slice (ventricles, calcifications); skull voxels removed.
  (The skull separates brain from scalp; the opening removes the leaks.)
* **stripped** = CT where brain, -1024 HU elsewhere (input pixel type).

MR (:func:`mr_masks`), arbitrary units (T1 or T2 weighting):

* **head** = MR > Otsu threshold (skimage, 256 bins, computed on every 2nd
  voxel along each axis), holes filled (3D and per axial slice: the scalp
  ring encloses the dark skull), largest 3D component, closed (3 mm), holes
  filled again.
* **brain** by ``method`` (``skull_mask.mr_method``, :data:`MR_METHODS`; measured
  side by side in ``bench/bench_brain_mask.py`` -> ``bench/results/brain_mask.md``):

  - ``deepbet``: the deepbet CNN (:mod:`ct2mr.preprocess.brain_extraction`; weights from the
    installed wheel), within the head. Real T1 head: Dice 0.94 against FreeSurfer;
    real brain-extracted T2 / FLAIR: ~0.95; the phantom's T2-like heads: ~0.94-0.95
    (it cuts part of their bright CSF rim).
  - ``morphology`` (no CNN; the fallback): ``core`` = head eroded by
    ``brain_erosion_mm`` (default 3 mm: removes the skin surface layer); ``t`` = half
    way between the background (:func:`background_level`: the median MR outside the
    head) and the median MR inside ``core`` (0.5 x that median when the background is
    0, as in most scans; an offset or scale of the image moves ``t`` with it);
    ``tissue`` = core & MR > t (drops the dark skull, air cavities and, in T1, dark
    CSF at the surface); ``tissue`` is opened
    with a ball of ``brain_opening_mm`` (default 5 mm: cuts the bridges between
    scalp and brain), its largest 3D component kept, dilated by
    ``brain_erosion_mm`` inside ``tissue`` (regrows the cortex the opening shaved
    off, without re-crossing the cut bridges), closed (3 mm) and holes filled in
    3D and per axial slice (restores ventricles, which are dark in T1). Phantom
    (T2-like): Dice ~0.99 against labels 3..6. Real T1 heads: leaks into orbits,
    skull base and neck and cuts the vertex (Dice 0.825 against FreeSurfer).
  - ``auto`` (default, contrast-aware; the morphology when deepbet fails, recorded):
    deepbet, except on CSF-bright (T2/PD-like)
    MR that still has its skull (:func:`ct2mr.preprocess.brain_extraction.csf_contrast`,
    ``(p99 - p50) / (p50 - p1)`` of the deep brain, > :data:`CSF_CONTRAST_THRESHOLD`;
    deepbet's brain < :data:`STRIPPED_FRACTION` of the head): there the morphological
    mask (the T1-trained CNN cuts the bright CSF rim; the phantom: 0.94-0.95 vs 0.99),
    unless it agrees with deepbet's under :data:`AUTO_MIN_AGREEMENT` (a gross failure:
    then deepbet). The phantom's masks are thus those of ``morphology``. The decision
    is unchanged by an offset or a positive scale of the intensities, a smooth +-20 %
    bias field or a few very bright (vessel) voxels (``tests/test_brain_mask_auto.py``,
    ``bench/bench_brain_mask_auto.py``). Every fallback (deepbet failed, the contrast
    undefined, the morphology failed or disagreeing with deepbet) and every contrast
    near the threshold is a ``logging`` warning naming the scan and the numbers.

  What ran (method, package version, runtime, and for ``auto`` the decision: its
  numbers, thresholds, why, and the warnings) is in :attr:`MrMasks.info` and the QA
  JSON (``masking_qa_mr.json``).
* **stripped** = MR x brain (input pixel type).

QA: :func:`save_masking_qa` draws mask contours through :mod:`ct2mr.preprocess.qa_images`:
CT 3 axial slices, one coronal, one sagittal; MR the skull-base views of
:func:`mr_qa_views` (where leaks happen). MR QA numbers: :func:`masking_qa_record`
(``--qa-json``).

CLI (``ct2mr skull-mask``)::

    ct2mr skull-mask --modality ct --input ct.nii.gz --head-mask H --brain-mask B --stripped S
                     --skull-mask K --qa-png Q [--skull-threshold-hu 300] [--head-threshold-hu -400]
    ct2mr skull-mask --modality mr --input mr.nii.gz --head-mask H --brain-mask B --stripped S
                     --qa-png Q [--qa-json J] [--method auto|deepbet|morphology]
                     [--brain-erosion-mm 3] [--brain-opening-mm 5]

``--skull-mask`` is accepted (and then written) only for ``ct``; ``--qa-json`` and
``--method`` act only for ``mr``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.preprocess.morphology import (
    Spacing,
    closing,
    dilate,
    erode,
    fill_holes,
    largest_component,
    on_bounding_box,
    opening,
    radius_voxels,
)

log = logging.getLogger(__name__)


class CtMasks(NamedTuple):
    """CT masks (uint8 0/1) and the skull-stripped CT (HU, -1024 outside the brain)."""

    head: sitk.Image
    skull: sitk.Image
    brain: sitk.Image
    stripped: sitk.Image


class MrMasks(NamedTuple):
    """MR masks (uint8 0/1), the skull-stripped MR (MR x brain) and how the brain mask was made."""

    head: sitk.Image
    brain: sitk.Image
    stripped: sitk.Image
    #: method, method_used, runtime_s / cpu_s (wall / process CPU s of the brain extraction alone),
    #: packages {name: {package, version}}, and for ``auto`` csf_contrast, brain_head_fraction,
    #: (CSF-bright MR) agreement_dice (morphology vs deepbet), thresholds, decision (why, one line),
    #: warnings (the lines logged; also ``fallback`` when deepbet failed)
    info: dict[str, Any] | None = None


#: brain extraction methods of :func:`mr_masks` (``skull_mask.mr_method``)
MR_METHODS = ("auto", "deepbet", "morphology")
#: the default (the config schema's default too)
DEFAULT_MR_METHOD = "auto"
#: ``auto`` (numbers: bench/results/brain_mask_auto.md): CSF-bright (T2/PD-like) when the deep brain's
#: ``(p99 - p50) / (p50 - p1)`` (:func:`ct2mr.preprocess.brain_extraction.csf_contrast`) exceeds this:
#: CSF-dark real heads (3 T1, 1 FLAIR) 0.26-0.74, and up to 0.86 under a +-20 % bias field; CSF-bright
#: (real T2, 8 phantom heads) 4.5-43, and down to 4.27 under a bias field: about their geometric middle ...
CSF_CONTRAST_THRESHOLD = 2.0
#: ... a contrast within this factor of the threshold (here 1.0-4.0: no measured head) is ambiguous: warned
#: (on an MR with skull; an MR already brain-extracted is deepbet's whatever its contrast) ...
CSF_CONTRAST_AMBIGUOUS = 2.0
#: ... and the MR still has its skull when deepbet's brain is under this fraction of the head mask ...
STRIPPED_FRACTION = 0.8
#: ... then the morphological mask, unless its Dice with deepbet's is under this (gross failure;
#: phantom heads 0.94-0.95 at 1 mm, 0.79-0.85 on the 2 mm test cohort)
AUTO_MIN_AGREEMENT = 0.75


def _from_array(a: np.ndarray, ref: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(a.astype(np.uint8))
    out.CopyInformation(ref)
    return out


def _check_3d(img: sitk.Image) -> None:
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, "image", "expected a scalar 3D volume")


def _require_nonempty(a: np.ndarray, what: str) -> None:
    if not a.any():
        raise InputError(None, what, "mask is empty: check the thresholds / the image values")


# ------------------------------------------------------------------ CT


def ct_masks(
    ct: sitk.Image,
    skull_threshold_hu: float = 300.0,
    head_threshold_hu: float = -400.0,
    brain_hu_range: tuple[float, float] = (-50.0, 150.0),
    brain_opening_mm: float = 4.0,
) -> CtMasks:
    """Head, skull and brain masks of a CT in HU, and the skull-stripped CT (see module docstring)."""
    _check_3d(ct)
    sp: Spacing = ct.GetSpacing()  # type: ignore[assignment]
    hu = sitk.GetArrayViewFromImage(ct)
    head0 = hu > head_threshold_hu
    _require_nonempty(head0, "head")
    head_a = fill_holes(largest_component(head0))

    skull_a = (hu > skull_threshold_hu) & head_a
    _require_nonempty(skull_a, "skull")

    lo, hi = brain_hu_range
    cand = opening(head_a & ~skull_a & (hu >= lo) & (hu <= hi), sp, brain_opening_mm)
    _require_nonempty(cand, "brain")
    brain_a = fill_holes(largest_component(cand)) & ~skull_a

    stripped_a = np.where(brain_a, hu, np.asarray(-1024, dtype=hu.dtype)).astype(hu.dtype)
    stripped = sitk.GetImageFromArray(stripped_a)
    stripped.CopyInformation(ct)
    return CtMasks(head=_from_array(head_a, ct), skull=_from_array(skull_a, ct), brain=_from_array(brain_a, ct),
                   stripped=stripped)


# ------------------------------------------------------------------ MR


def _otsu(a: np.ndarray) -> float:
    """Otsu threshold (skimage, 256 bins) of every 2nd voxel along each axis."""
    from skimage.filters import threshold_otsu  # noqa: PLC0415

    return float(threshold_otsu(np.ascontiguousarray(a[::2, ::2, ::2]), nbins=256))


def mr_head(a: np.ndarray, sp: Spacing) -> np.ndarray:
    """Head mask of an MR array (see module docstring)."""
    # fill first: the dark skull separates the bright scalp from the brain
    head_a = fill_holes(closing(largest_component(fill_holes(a > _otsu(a))), sp, 3.0))
    _require_nonempty(head_a, "head")
    return head_a


def background_level(a: np.ndarray, head_a: np.ndarray) -> float:
    """The MR's background (air) level: the median outside the head mask (every 2nd voxel along each
    axis), or the 0.5th percentile of the image when under 1 % of it lies outside the head. It moves
    with the image under ``x -> a * x + b`` (a > 0), and so does a threshold set relative to it."""
    sub, out = a[::2, ::2, ::2], ~head_a[::2, ::2, ::2]
    if out.sum() >= 0.01 * out.size:
        return float(np.median(sub[out]))
    return float(np.percentile(sub, 0.5))


def morphology_brain(a: np.ndarray, head_a: np.ndarray, sp: Spacing, brain_erosion_mm: float = 3.0,
                     brain_opening_mm: float = 5.0, background: float | None = None) -> np.ndarray:
    """Brain mask by head-mask erosion, threshold and morphology (the ``morphology`` method).

    The threshold is half way between ``background`` (default: :func:`background_level`; 0 gives
    the earlier 0.5 x median) and the median MR inside the eroded head.
    """
    r = max(radius_voxels(sp, brain_erosion_mm)) + 1
    core_a = on_bounding_box(lambda b: erode(b, sp, brain_erosion_mm), head_a, r)
    if not core_a.any():
        raise InputError(None, "brain", "head mask vanishes after erosion: head too small or erosion too large")
    med = float(np.median(a[core_a]))
    bg = min(background_level(a, head_a) if background is None else float(background), med)
    t = bg + 0.5 * (med - bg)
    tissue = core_a & (a > t)
    seed = largest_component(opening(tissue, sp, brain_opening_mm))
    _require_nonempty(seed, "brain")
    if any(radius_voxels(sp, brain_erosion_mm)):  # regrow what the opening shaved off, without crossing long bridges
        seed = dilate(seed, sp, brain_erosion_mm) & tissue
    return fill_holes(closing(seed, sp, 3.0)) & head_a


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 0.0


def auto_brain(mr: sitk.Image, head_a: np.ndarray, deepbet_a: np.ndarray, brain_erosion_mm: float = 3.0,
               brain_opening_mm: float = 5.0, scan: str = "MR") -> tuple[np.ndarray, str, dict[str, Any]]:
    """``auto``'s choice between deepbet's brain mask and the morphology's (see module docstring).

    Returns the mask, the method used and the decision's record: ``csf_contrast``,
    ``brain_head_fraction``, ``agreement_dice`` (when the morphology ran), ``thresholds``,
    ``decision`` (one line: why) and ``warnings`` (each also logged as a warning naming ``scan``).
    """
    from ct2mr.preprocess import brain_extraction as bx  # noqa: PLC0415

    sp: Spacing = mr.GetSpacing()  # type: ignore[assignment]
    contrast = bx.csf_contrast(mr, deepbet_a)
    frac = float(deepbet_a.sum()) / float(head_a.sum())
    rec: dict[str, Any] = {
        "csf_contrast": round(contrast, 3) if np.isfinite(contrast) else None,
        "brain_head_fraction": round(frac, 3),
        "thresholds": {"csf_contrast": CSF_CONTRAST_THRESHOLD, "stripped_fraction": STRIPPED_FRACTION,
                       "min_agreement": AUTO_MIN_AGREEMENT},
        "warnings": [],
    }

    def warn(msg: str) -> None:
        rec["warnings"].append(msg)
        log.warning("%s: brain mask (auto): %s", scan, msg)

    def done(mask: np.ndarray, used: str, why: str) -> tuple[np.ndarray, str, dict[str, Any]]:
        rec["decision"] = f"{used}: {why}"
        return mask, used, rec

    if not np.isfinite(contrast):
        warn(f"the CSF contrast is undefined (the deep brain is constant): deepbet kept, "
             f"brain/head {frac:.2f}")
        return done(deepbet_a, "deepbet", "CSF contrast undefined")
    if frac >= STRIPPED_FRACTION:  # already brain-extracted: the contrast does not matter
        return done(deepbet_a, "deepbet", f"brain/head {frac:.2f} >= {STRIPPED_FRACTION:g} (no skull to strip)")
    lo, hi = CSF_CONTRAST_THRESHOLD / CSF_CONTRAST_AMBIGUOUS, CSF_CONTRAST_THRESHOLD * CSF_CONTRAST_AMBIGUOUS
    if lo <= contrast <= hi:
        warn(f"CSF contrast {contrast:.2f} is near its threshold {CSF_CONTRAST_THRESHOLD:g} (ambiguous "
             f"{lo:g}..{hi:g}: neither clearly CSF-dark like T1/FLAIR nor CSF-bright like T2): check the QA image")
    if contrast <= CSF_CONTRAST_THRESHOLD:
        return done(deepbet_a, "deepbet", f"CSF-dark, csf_contrast {contrast:.2f} <= {CSF_CONTRAST_THRESHOLD:g}")
    bright = (f"CSF-bright (csf_contrast {contrast:.2f} > {CSF_CONTRAST_THRESHOLD:g}) with skull "
              f"(brain/head {frac:.2f} < {STRIPPED_FRACTION:g})")
    try:
        morph = morphology_brain(sitk.GetArrayViewFromImage(mr), head_a, sp, brain_erosion_mm, brain_opening_mm)
    except InputError as exc:
        warn(f"{bright}, but the morphology failed ({exc.field}: {exc.problem}): deepbet kept")
        return done(deepbet_a, "deepbet", f"{bright}; the morphology failed")
    agree = _dice(morph, deepbet_a)
    rec["agreement_dice"] = round(agree, 4)
    if agree < AUTO_MIN_AGREEMENT:
        warn(f"{bright}, but the morphology and deepbet disagree (Dice {agree:.3f} < {AUTO_MIN_AGREEMENT:g}; "
             f"morphology {int(morph.sum())} voxels, deepbet {int(deepbet_a.sum())}): deepbet kept, check the QA image")
        return done(deepbet_a, "deepbet", f"{bright}; disagreement, Dice {agree:.3f} < {AUTO_MIN_AGREEMENT:g}")
    return done(morph, "morphology", f"{bright}; agreement Dice {agree:.3f} >= {AUTO_MIN_AGREEMENT:g}")


def mr_masks(mr: sitk.Image, brain_erosion_mm: float = 3.0, brain_opening_mm: float = 5.0,
             method: str = DEFAULT_MR_METHOD, source: str | Path | None = None) -> MrMasks:
    """Head and brain masks of an MR and the skull-stripped MR (see module docstring).

    ``method`` (one of :data:`MR_METHODS`) chooses the brain extraction; what ran,
    with package version, runtime and (``auto``) the decision (:func:`auto_brain`), is in
    ``info``. ``source`` names the scan in the warnings (default ``"MR"``).
    """
    from ct2mr.preprocess import brain_extraction as bx  # noqa: PLC0415

    _check_3d(mr)
    if method not in MR_METHODS:
        raise InputError(None, "skull_mask.mr_method", f"{method!r} is not one of {', '.join(MR_METHODS)}")
    if brain_erosion_mm < 0:
        raise InputError(None, "brain_erosion_mm", f"must be >= 0, got {brain_erosion_mm}")
    sp: Spacing = mr.GetSpacing()  # type: ignore[assignment]
    a = sitk.GetArrayViewFromImage(mr)
    if not np.isfinite(a).all():
        raise InputError(None, "voxel values", "MR holds NaN or infinite values")
    if float(a.max()) <= float(a.min()):
        raise InputError(None, "voxel values", "MR is constant")
    head_a = mr_head(a, sp)

    t0, c0 = time.perf_counter(), time.process_time()
    info: dict[str, Any] = {"method": method}
    used = method
    scan = str(source) if source is not None else "MR"
    deepbet_a: np.ndarray | None = None
    if method != "morphology":
        try:
            deepbet_a = bx.deepbet_mask(mr) & head_a
        except InputError as exc:
            if method == "deepbet":
                raise
            # auto: the morphology is the fallback (recorded in the QA JSON and logged)
            info["fallback"] = f"deepbet failed ({exc.field}: {exc.problem}): morphology used"
            info["decision"] = f"morphology: {info['fallback']}"
            info["warnings"] = [info["fallback"]]
            log.warning("%s: brain mask (auto): %s", scan, info["fallback"])
    if deepbet_a is None:
        brain_a = morphology_brain(a, head_a, sp, brain_erosion_mm, brain_opening_mm)
        used = "morphology"
    else:
        brain_a = deepbet_a
        if method == "auto":
            # contrast-aware: the CNN is T1-trained; on CSF-bright (T2/PD-like) heads with skull it cuts
            # the bright CSF rim, which the morphology follows (the phantom: Dice 0.94-0.95 vs 0.99); a
            # gross morphological failure (agreement < AUTO_MIN_AGREEMENT) falls back to the CNN. An MR
            # already brain-extracted (brain >= STRIPPED_FRACTION of the head) has no skull for the
            # morphology. (Bounding the morphology by the CNN's mask grown 12 mm cost Dice on the phantom
            # and registration accuracy on the coarse 2 mm test cohort, whose 90 mm slab the CNN misreads.)
            brain_a, used, decision = auto_brain(mr, head_a, deepbet_a, brain_erosion_mm, brain_opening_mm, scan)
            info.update(decision)
        _require_nonempty(brain_a, "brain")
    info["method_used"] = used
    info["runtime_s"] = round(time.perf_counter() - t0, 2)
    info["cpu_s"] = round(time.process_time() - c0, 2)  # all threads: less sensitive to other jobs' load
    for name in ("deepbet", "morphology") if method == "auto" and used == "morphology" else (used,):
        info.setdefault("packages", {})[name] = bx.method_record(name)

    stripped = sitk.GetImageFromArray((a * brain_a).astype(a.dtype))
    stripped.CopyInformation(mr)
    return MrMasks(head=_from_array(head_a, mr), brain=_from_array(brain_a, mr), stripped=stripped, info=info)


# ------------------------------------------------------------------ QA


def mr_qa_views(brain: np.ndarray) -> list[tuple[str, int]]:
    """QA views of an MR brain mask through the skull base, where leaks happen (array ``[z, y, x]``, LPS).

    Axial at 10, 25 and 55 % of the brain's z-extent (skull base / orbits, temporal
    lobes, mid-brain); coronal at 30 % (orbits, anterior cranial fossa) and 55 % (temporal lobes,
    middle fossa) of its anterior-posterior extent; sagittal at the midline and at 22 % of its
    left-right extent (through the temporal lobe).
    """
    idx = [np.flatnonzero(brain.any(axis=tuple(i for i in range(3) if i != ax))) for ax in range(3)]
    if any(i.size == 0 for i in idx):
        return []
    (z0, z1), (y0, y1), (x0, x1) = ((int(i[0]), int(i[-1])) for i in idx)

    def at(lo: int, hi: int, f: float) -> int:
        return int(round(lo + f * (hi - lo)))

    return ([("axial", at(z0, z1, f)) for f in (0.10, 0.25, 0.55)]
            + [("coronal", at(y0, y1, f)) for f in (0.30, 0.55)]
            + [("sagittal", at(x0, x1, 0.5)), ("sagittal", at(x0, x1, 0.22))])


def save_masking_qa(path: str | Path, image: sitk.Image, masks: CtMasks | MrMasks, modality: str) -> None:
    """Contours of the masks on the image as a PNG.

    CT: 3 axial, one coronal and one sagittal slice through the brain. MR: the
    skull-base views of :func:`mr_qa_views` (axial, coronal and sagittal), the
    method that made the brain mask in the title.
    """
    from ct2mr.preprocess.qa_images import save_contours_png  # noqa: PLC0415

    vol_cm3 = float(sitk.GetArrayViewFromImage(masks.brain).sum()) * float(np.prod(image.GetSpacing())) / 1000
    if isinstance(masks, CtMasks):
        save_contours_png(path, image, {"head": masks.head, "skull": masks.skull, "brain": masks.brain},
                          title=f"CT masks (brain {vol_cm3:.0f} cm3)", vmin=-100.0, vmax=200.0)
        return
    used = (masks.info or {}).get("method_used", "?")
    views = mr_qa_views(sitk.GetArrayViewFromImage(masks.brain) > 0)
    save_contours_png(path, image, {"head": masks.head, "brain": masks.brain}, views=views or None,
                      title=f"MR masks, brain by {used} ({vol_cm3:.0f} cm3): skull-base views")


def masking_qa_record(image: sitk.Image, masks: MrMasks) -> dict[str, Any]:
    """QA numbers of the MR masks: the method record plus head/brain volumes (cm3)."""
    vox_cm3 = float(np.prod(image.GetSpacing())) / 1000.0
    rec: dict[str, Any] = dict(masks.info or {})
    rec["brain_cm3"] = round(float(sitk.GetArrayViewFromImage(masks.brain).sum()) * vox_cm3, 1)
    rec["head_cm3"] = round(float(sitk.GetArrayViewFromImage(masks.head).sum()) * vox_cm3, 1)
    return rec


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modality", choices=("ct", "mr"), required=True)
    parser.add_argument("--input", required=True, type=Path, help="CT in HU or MR (NIfTI)")
    add_mask_arguments(parser)


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    """The output files and settings of skull masking (``ct2mr skull-mask``, ``ct2mr prepare``)."""
    parser.add_argument("--head-mask", required=True, type=Path, help="output head mask (uint8 0/1)")
    parser.add_argument("--brain-mask", required=True, type=Path, help="output brain mask (uint8 0/1)")
    parser.add_argument("--stripped", required=True, type=Path, help="output skull-stripped image")
    parser.add_argument("--skull-mask", type=Path, help="output skull mask (ct only)")
    parser.add_argument("--qa-png", required=True, type=Path, help="output QA image (mask contours)")
    parser.add_argument("--skull-threshold-hu", type=float, default=300.0, help="CT: skull = HU > this (default 300)")
    parser.add_argument("--head-threshold-hu", type=float, default=-400.0,
                        help="CT: head = largest component of HU > this (default -400)")
    parser.add_argument("--brain-erosion-mm", type=float, default=3.0,
                        help="MR: head-mask erosion and regrow radius for the brain mask in mm (default 3)")
    parser.add_argument("--brain-opening-mm", type=float, default=5.0,
                        help="MR: opening radius that cuts scalp-brain bridges, mm (default 5)")
    parser.add_argument("--method", choices=MR_METHODS, default=DEFAULT_MR_METHOD,
                        help=f"MR: brain extraction (default {DEFAULT_MR_METHOD}; skull_mask.mr_method)")
    parser.add_argument("--qa-json", type=Path,
                        help="MR: output QA numbers (JSON: method, version, runtime, volumes)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image  # noqa: PLC0415

    check_mask_arguments(args)
    write_masks(read_image(args.input), args, args.input)


def check_mask_arguments(args: argparse.Namespace) -> None:
    """The masking flags' cross-check, before any work: a skull mask is a CT output."""
    if args.modality == "mr" and args.skull_mask is not None:
        raise InputError(None, "--skull-mask", "only for --modality ct")


def write_masks(img: sitk.Image, args: argparse.Namespace, source: str | Path) -> None:
    """Masks of ``img`` (``args.modality``) written to the files the ``skull-mask`` flags name.

    ``args`` carries those flags (``ct2mr skull-mask`` and ``ct2mr prepare`` share them);
    an input error of the masking names ``source``, the file ``img`` came from.
    """
    from ct2mr.io.imageio import write_image  # noqa: PLC0415

    try:
        if args.modality == "ct":
            masks: CtMasks | MrMasks = ct_masks(img, args.skull_threshold_hu, args.head_threshold_hu)
        else:
            masks = mr_masks(img, args.brain_erosion_mm, args.brain_opening_mm, method=args.method, source=source)
    except InputError as exc:
        raise InputError(source, exc.field, exc.problem) from exc
    write_image(masks.head, args.head_mask)
    write_image(masks.brain, args.brain_mask)
    write_image(masks.stripped, args.stripped)
    if isinstance(masks, CtMasks) and args.skull_mask is not None:
        write_image(masks.skull, args.skull_mask)
    save_masking_qa(args.qa_png, img, masks, args.modality)
    if isinstance(masks, MrMasks) and args.qa_json is not None:
        from ct2mr.io.atomic import write_json  # noqa: PLC0415

        write_json(args.qa_json, masking_qa_record(img, masks))
        info = masks.info or {}
        log.info("brain mask by %s in %.1f s%s", info.get("method_used"), info.get("runtime_s", float("nan")),
                 f" ({info['decision']})" if "decision" in info else "")
    log.info("masks of %s written", source)
