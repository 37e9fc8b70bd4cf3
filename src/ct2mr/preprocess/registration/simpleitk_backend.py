"""SimpleITK backend: Mattes mutual information, rigid then affine, multi-resolution.

Stages (both on the same pyramid ``settings.shrink_factors``, each level a
block average of the full-resolution image, see :func:`pyramid`):

1. centre-of-mass (moments) initialisation;
2. rigid (:class:`sitk.Euler3DTransform`), regular-step gradient descent, on all
   levels but the finest;
3. full affine (12 parameters) starting from the rigid result.

Optimizer scales are estimated from physical shift, so a unit step moves the
image by about 1 mm whatever the parameter. Metric sampling: a regular grid
with a seeded random perturbation inside each voxel (``settings.seed``),
``max(sampling_fraction, min_samples / N)`` of the N voxels of the (dilated)
fixed mask at each level. Image gradients are computed at the sample points
(the metric's whole-image gradient filters are switched off: ~3 s per level on
a 1 mm head otherwise). With ``settings.threads == 1`` (default) runs are
bit-reproducible.

Accuracy and speed (bench/results/registration.md): mean TRE 0.38 mm on the
real T1/T2 pair, 0.16-0.27 mm on 256^3 1 mm phantom heads in 1-3 s; at
1.5 mm voxels (the unit test) 0.5-0.9 mm.
"""

from __future__ import annotations

import io
import time

import SimpleITK as sitk

from ct2mr.preprocess.registration.base import (
    RegistrationResult,
    RegistrationSettings,
    backend_inputs,
    itk_threads,
    moments_initializer,
)

#: step-length relaxation of the regular-step gradient descent on a direction change
RELAXATION = 0.5
#: relative loss of the metric over one level that counts as divergence (the level is undone)
DIVERGENCE = 0.1
#: metric sampling: "regular" (ITK perturbs each grid sample randomly inside its voxel, seeded) or "random"
SAMPLING = "regular"


def pyramid(img: sitk.Image, factor: int, is_mask: bool = False) -> sitk.Image:
    """One pyramid level: block-average (``sitk.BinShrink``) by ``factor`` per axis.

    Masks: a block is inside when any of its voxels is. Done here, once per
    level, rather than with ``ImageRegistrationMethod.SetShrinkFactorsPerLevel``,
    which smooths the full-resolution images again for every level and stage.
    """
    if factor == 1:
        return img
    shrunk = sitk.BinShrink(sitk.Cast(img, sitk.sitkFloat32), [int(factor)] * img.GetDimension())
    if is_mask:
        return sitk.Cast(shrunk > 0, sitk.sitkUInt8)
    return shrunk


def _optimise(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None,
              transform: sitk.Transform, settings: RegistrationSettings, log: io.StringIO, stage: str,
              factor: int) -> None:
    """One resolution level of one stage; updates ``transform`` in place."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(settings.mi_bins))
    reg.SetMetricSamplingStrategy(reg.REGULAR if SAMPLING == "regular" else reg.RANDOM)
    n_vox = int(sitk.GetArrayViewFromImage(fixed_mask).sum()) if fixed_mask is not None else fixed.GetNumberOfPixels()
    frac = min(1.0, max(float(settings.sampling_fraction), int(settings.min_samples) / max(n_vox, 1)))
    reg.SetMetricSamplingPercentage(frac, int(settings.seed) + 1)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    # image gradients by finite differences at the sampled points only: the
    # default gradient *filters* process the whole image (~3 s on a 1 mm head)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    # first step ~ one voxel of the level (mm), stop when the step is < 0.001 voxel
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(factor), minStep=1e-3 * factor, numberOfIterations=int(settings.iterations),
        relaxationFactor=RELAXATION, gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(transform, inPlace=True)
    t0 = time.perf_counter()
    start_params = transform.GetParameters()
    before = reg.MetricEvaluate(fixed, moving)
    reg.Execute(fixed, moving)
    after = reg.MetricEvaluate(fixed, moving)
    log.write(f"{stage} shrink {factor}: {reg.GetOptimizerIteration()} iterations, metric {before:.5f} -> {after:.5f}, "
              f"{time.perf_counter() - t0:.2f} s; {reg.GetOptimizerStopConditionDescription()}\n")
    # Mattes MI is minimised (more negative = better aligned). A level that loses more
    # than DIVERGENCE of the metric has diverged (seen with an affine stage on a coarse
    # 2-level pyramid: -0.58 -> -0.02): keep the transform it started from. Smaller
    # changes are within the noise of the sampled metric and are kept.
    if not after <= before + DIVERGENCE * abs(before):
        transform.SetParameters(start_params)
        log.write(f"{stage} shrink {factor}: metric got worse ({before:.5f} -> {after:.5f}); "
                  "kept the transform this level started from\n")


def register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Affine MR->CT registration with SimpleITK; see :func:`ct2mr.preprocess.registration.register_affine`.

    Runs with ``settings.threads`` ITK threads (the global default is restored afterwards).
    """
    with itk_threads(settings.threads):
        return _register(fixed, moving, settings, fixed_mask, moving_mask)


def _register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings,
              fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None) -> RegistrationResult:
    t0 = time.perf_counter()
    fixed, moving, fmask, mmask = backend_inputs(
        fixed, moving, fixed_mask, moving_mask, settings, shift_to_nonnegative=False
    )
    log = io.StringIO()

    init = moments_initializer(fixed, moving)
    center = init.GetCenter()
    log.write(f"moments init: translation {tuple(round(v, 2) for v in init.GetTranslation())} mm\n")
    levels = [
        (f, pyramid(fixed, f), pyramid(moving, f),
         None if fmask is None else pyramid(fmask, f, True), None if mmask is None else pyramid(mmask, f, True))
        for f in settings.shrink_factors
    ]

    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(center)
    rigid.SetTranslation(init.GetTranslation())
    # the rigid stage only initialises the affine one: its finest level is skipped
    # (it cost ~2 s of ~5 s on a 256^3 head without changing the affine result's TRE)
    for f, fi, mi, fm, mm in levels[:-1] if len(levels) > 1 else levels:
        _optimise(fi, mi, fm, mm, rigid, settings, log, "rigid", f)

    affine = sitk.AffineTransform(3)
    affine.SetCenter(center)
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    for f, fi, mi, fm, mm in levels:
        _optimise(fi, mi, fm, mm, affine, settings, log, "affine", f)

    return RegistrationResult(transform=affine, runtime_s=time.perf_counter() - t0, backend="simpleitk",
                              log=log.getvalue())
