"""SimpleITK backend: Mattes mutual information, rigid then affine, multi-resolution.

Stages (both on the same pyramid ``settings.shrink_factors`` with smoothing
``settings.smoothing_sigmas()`` voxels):

1. centre-of-mass (moments) initialisation;
2. rigid (:class:`sitk.Euler3DTransform`), regular-step gradient descent;
3. full affine (12 parameters) starting from the rigid result.

Optimizer scales are estimated from physical shift, so a unit step moves the
image by about 1 mm whatever the parameter. Metric sampling is random with a
fixed seed (``settings.seed``) inside the (dilated) fixed mask.
"""

from __future__ import annotations

import io
import time

import SimpleITK as sitk

from ct2mr.registration.base import (
    RegistrationResult,
    RegistrationSettings,
    as_affine,
    check_image,
    moments_initializer,
    prepare_mask,
)


def _method(settings: RegistrationSettings, fixed_mask: sitk.Image | None, moving_mask: sitk.Image | None,
            iterations: int, log: io.StringIO, stage: str) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(settings.mi_bins))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(float(settings.sampling_fraction), int(settings.seed))
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=int(iterations),
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    reg.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas()))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if settings.threads is not None:
        reg.SetNumberOfThreads(int(settings.threads))

    def _level() -> None:
        log.write(f"{stage}: level {reg.GetCurrentLevel()} start, metric {reg.GetMetricValue():.5f}\n")

    reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, _level)
    return reg


def register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Affine MR->CT registration with SimpleITK; see :func:`ct2mr.registration.register_affine`."""
    t0 = time.perf_counter()
    fixed = check_image(fixed, "fixed")
    moving = check_image(moving, "moving")
    fmask = prepare_mask(fixed_mask, fixed, "fixed_mask", settings.mask_dilation_mm)
    mmask = prepare_mask(moving_mask, moving, "moving_mask", settings.mask_dilation_mm)
    log = io.StringIO()

    init = moments_initializer(fixed, moving)
    center = init.GetCenter()
    log.write(f"moments init: translation {tuple(round(v, 2) for v in init.GetTranslation())} mm\n")

    # rigid stage
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(center)
    rigid.SetTranslation(init.GetTranslation())
    reg = _method(settings, fmask, mmask, settings.iterations, log, "rigid")
    reg.SetInitialTransform(rigid, inPlace=True)
    reg.Execute(fixed, moving)
    log.write(f"rigid: {reg.GetOptimizerIteration()} iterations (last level), metric {reg.GetMetricValue():.5f}, "
              f"stop: {reg.GetOptimizerStopConditionDescription()}\n")

    # affine stage, started from the rigid result
    affine = sitk.AffineTransform(3)
    affine.SetCenter(center)
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    reg = _method(settings, fmask, mmask, settings.iterations, log, "affine")
    reg.SetInitialTransform(affine, inPlace=True)
    reg.Execute(fixed, moving)
    log.write(f"affine: {reg.GetOptimizerIteration()} iterations (last level), metric {reg.GetMetricValue():.5f}, "
              f"stop: {reg.GetOptimizerStopConditionDescription()}\n")

    return RegistrationResult(
        transform=as_affine(affine) if not isinstance(affine, sitk.AffineTransform) else affine,
        runtime_s=time.perf_counter() - t0,
        backend="simpleitk",
        log=log.getvalue(),
        extra={"final_metric": reg.GetMetricValue()},
    )
