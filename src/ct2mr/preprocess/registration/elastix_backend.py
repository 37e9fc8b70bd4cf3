"""elastix backend: the ``elastix`` program through nipype (``nipype.interfaces.elastix.Registration``).

The images (and the dilated fixed mask) are written as NIfTI to a temporary
folder with an affine parameter file: AdvancedMattesMutualInformation,
AffineTransform, multi-resolution (``settings.shrink_factors``), random
coordinate sampling with a fixed seed, centre-of-gravity initialisation.
elastix's ``TransformParameters.0.txt`` holds the affine as 9 matrix entries
(row-major) + 3 translations and a ``CenterOfRotationPoint`` c, meaning
``y = A (x - c) + c + t`` from fixed to moving physical points (mm, LPS) -- the
same convention as ITK -- and is converted to a :class:`SimpleITK.AffineTransform`.

Needs the ``elastix`` executable on PATH (Debian/Ubuntu: ``apt install elastix``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ct2mr.io.atomic import write_text
from ct2mr.io.imageio import write_scratch_image
from ct2mr.preprocess.registration.base import (
    BackendUnavailable,
    RegistrationResult,
    RegistrationSettings,
    affine_from_matrix,
    backend_inputs,
)


def check_available() -> None:
    """Raise :class:`BackendUnavailable` when the ``elastix`` program is not on PATH."""
    if shutil.which("elastix") is None:
        raise BackendUnavailable("elastix", "needs the 'elastix' program on PATH; install it "
                                 "(apt install elastix, or https://elastix.dev) or choose simpleitk|antspy|afni")


def parameter_file_text(settings: RegistrationSettings, n_fixed_samples: int) -> str:
    """elastix parameter file for an MI-driven affine registration."""
    levels = len(settings.shrink_factors)
    pyr = " ".join(f"{s} {s} {s}" for s in settings.shrink_factors)
    # ASGD draws new samples every iteration, so a few thousand suffice (elastix manual);
    # the fraction of the mask is capped at 5000 samples per iteration.
    n_samples = int(min(5000, max(2048, round(settings.sampling_fraction * n_fixed_samples))))
    return f"""// ct2mr affine MR->CT, Mattes MI
(FixedInternalImagePixelType "float")
(MovingInternalImagePixelType "float")
(FixedImageDimension 3)
(MovingImageDimension 3)
(UseDirectionCosines "true")
(Registration "MultiResolutionRegistration")
(Interpolator "BSplineInterpolator")
(BSplineInterpolationOrder 1)
(ResampleInterpolator "FinalBSplineInterpolator")
(FinalBSplineInterpolationOrder 1)
(Resampler "DefaultResampler")
(FixedImagePyramid "FixedSmoothingImagePyramid")
(MovingImagePyramid "MovingSmoothingImagePyramid")
(Optimizer "AdaptiveStochasticGradientDescent")
(Transform "AffineTransform")
(Metric "AdvancedMattesMutualInformation")
(AutomaticScalesEstimation "true")
(AutomaticTransformInitialization "true")
(AutomaticTransformInitializationMethod "CenterOfGravity")
(HowToCombineTransforms "Compose")
(NumberOfHistogramBins {int(settings.mi_bins)})
(ErodeMask "false")
(NumberOfResolutions {levels})
(ImagePyramidSchedule {pyr})
(MaximumNumberOfIterations {int(settings.iterations)})
(NumberOfSpatialSamples {n_samples})
(NewSamplesEveryIteration "true")
(ImageSampler "RandomCoordinate")
(RandomSeed {int(settings.seed) + 1})
(CheckNumberOfSamples "false")
(DefaultPixelValue 0)
(WriteResultImage "true")
(ResultImageFormat "nii")
(WriteTransformParametersEachIteration "false")
(WriteTransformParametersEachResolution "false")
(ShowExactMetricValue "false")
"""


_NUM = r"[-+0-9.eE]+"


def parse_transform_parameters(path: str | Path) -> sitk.AffineTransform:
    """Read an elastix ``TransformParameters.*.txt`` of an ``AffineTransform`` into a SimpleITK AffineTransform."""
    text = Path(path).read_text()

    def values(key: str) -> list[float]:
        m = re.search(r"\(" + key + r"((?:\s+" + _NUM + r")+)\s*\)", text)
        if m is None:
            raise RuntimeError(f"elastix: no {key} in {path}")
        return [float(v) for v in m.group(1).split()]

    m = re.search(r'\(Transform\s+"(\w+)"\)', text)
    if m is None or m.group(1) != "AffineTransform":
        raise RuntimeError(f"elastix: expected an AffineTransform in {path}, got {m.group(1) if m else None}")
    if re.search(r'\(InitialTransformParametersFileName\s+"NoInitialTransform"\)', text) is None:
        raise RuntimeError(f"elastix: {path} depends on an initial transform; not supported")
    p = values("TransformParameters")
    if len(p) != 12:
        raise RuntimeError(f"elastix: expected 12 affine parameters in {path}, got {len(p)}")
    center = values("CenterOfRotationPoint")
    return affine_from_matrix(np.array(p[:9]).reshape(3, 3), np.array(p[9:]), np.array(center))


def register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Affine MR->CT registration with elastix; see :func:`ct2mr.preprocess.registration.register_affine`."""
    check_available()
    from nipype.interfaces.elastix import Registration

    t0 = time.perf_counter()
    fixed, moving, fmask, mmask = backend_inputs(fixed, moving, fixed_mask, moving_mask, settings)
    n_fixed = int(sitk.GetArrayViewFromImage(fmask).sum()) if fmask is not None else int(np.prod(fixed.GetSize()))
    tmp = Path(tempfile.mkdtemp(prefix="ct2mr_elastix_"))
    try:
        write_scratch_image(fixed, str(tmp / "fixed.nii.gz"))
        write_scratch_image(moving, str(tmp / "moving.nii.gz"))
        param = tmp / "affine.txt"
        write_text(param, parameter_file_text(settings, n_fixed))  # verified (size)
        reg = Registration()
        reg.inputs.fixed_image = str(tmp / "fixed.nii.gz")
        reg.inputs.moving_image = str(tmp / "moving.nii.gz")
        reg.inputs.parameters = [str(param)]
        reg.inputs.output_path = str(tmp)
        if fmask is not None:
            write_scratch_image(fmask, str(tmp / "fixed_mask.nii.gz"))
            reg.inputs.fixed_mask = str(tmp / "fixed_mask.nii.gz")
        if mmask is not None:
            write_scratch_image(mmask, str(tmp / "moving_mask.nii.gz"))
            reg.inputs.moving_mask = str(tmp / "moving_mask.nii.gz")
        if settings.threads is not None:
            reg.inputs.num_threads = int(settings.threads)
        reg.terminal_output = "allatonce"
        try:
            res = reg.run(cwd=str(tmp))
        except Exception as exc:  # nipype wraps a failing elastix in RuntimeError/OSError
            log = (tmp / "elastix.log").read_text() if (tmp / "elastix.log").is_file() else ""
            raise RuntimeError(f"elastix failed: {exc}\n{log[-3000:]}") from exc
        tp = tmp / "TransformParameters.0.txt"
        transform = parse_transform_parameters(tp)
        log = (tmp / "elastix.log").read_text() if (tmp / "elastix.log").is_file() else str(res.runtime.stdout)
        log += "\n" + tp.read_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RegistrationResult(transform=transform, runtime_s=time.perf_counter() - t0, backend="elastix", log=log)
