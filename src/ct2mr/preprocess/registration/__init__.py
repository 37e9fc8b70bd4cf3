"""Affine MR -> CT registration driven by mutual information, with selectable backends.

:func:`register_affine` estimates the affine transform that maps **fixed (CT)
physical points (mm, LPS) to moving (MR) physical points** (ITK convention), so
the registered MR on the CT grid is::

    sitk.Resample(mr, ct, result.transform, sitk.sitkLinear, 0.0)

Backends (``BACKENDS``), all converted to one :class:`SimpleITK.AffineTransform`:

* ``simpleitk`` -- SimpleITK ImageRegistrationMethod, Mattes MI, rigid then affine (default).
* ``antspy``    -- ``ants.registration`` (antspyx), Mattes MI, Affine.
* ``elastix``   -- the ``elastix`` program through nipype, AdvancedMattesMutualInformation, AffineTransform.
* ``afni``      -- AFNI ``3dAllineate`` through nipype, cost ``nmi``, 12-parameter affine
  (the paper's tool; needs AFNI on PATH).

A backend whose program is missing raises :class:`BackendUnavailable`
(an :class:`ct2mr.errors.InputError`) naming what to install.
"""

from __future__ import annotations

import importlib

import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.preprocess.registration.base import (
    BackendUnavailable,
    RegistrationResult,
    RegistrationSettings,
    as_affine,
    check_image,
    crop_to_foreground,
    matrix_offset,
    prepare_intensities,
    prepare_mask,
)

#: backend name -> module implementing ``register(fixed, moving, settings, *, fixed_mask, moving_mask)``
BACKENDS: dict[str, str] = {
    "simpleitk": "ct2mr.preprocess.registration.simpleitk_backend",
    "antspy": "ct2mr.preprocess.registration.antspy_backend",
    "elastix": "ct2mr.preprocess.registration.elastix_backend",
    "afni": "ct2mr.preprocess.registration.afni_backend",
}

DEFAULT_BACKEND = "simpleitk"

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "BackendUnavailable",
    "RegistrationResult",
    "RegistrationSettings",
    "as_affine",
    "backend_available",
    "matrix_offset",
    "register_affine",
]


def _module(backend: str):  # noqa: ANN202
    if backend not in BACKENDS:
        raise InputError(None, "registration backend",
                         f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[backend])


def backend_available(backend: str) -> tuple[bool, str]:
    """(True, "") when ``backend`` can run here, else (False, why and how to install)."""
    mod = _module(backend)
    check = getattr(mod, "check_available", None)
    if check is None:
        return True, ""
    try:
        check()
    except BackendUnavailable as exc:
        return False, str(exc)
    return True, ""


def register_affine(
    fixed: sitk.Image,
    moving: sitk.Image,
    backend: str = DEFAULT_BACKEND,
    *,
    fixed_mask: sitk.Image | None = None,
    moving_mask: sitk.Image | None = None,
    settings: RegistrationSettings | None = None,
) -> RegistrationResult:
    """Estimate the affine transform aligning ``moving`` (MR) to ``fixed`` (CT) by mutual information.

    Parameters
    ----------
    fixed:
        Skull-stripped CT in HU (outside the brain -1024), 3-D, LPS, usually 1 mm.
    moving:
        Skull-stripped MR (any intensity scale, background 0), 3-D, its own grid.
    backend:
        One of :data:`BACKENDS`.
    fixed_mask, moving_mask:
        Optional 0/1 masks (e.g. the CT brain mask). They set the intensity
        range (``settings.clip_percentiles``) and, dilated by
        ``settings.mask_dilation_mm``, restrict where the metric is evaluated.
        Masks on another grid are resampled (nearest neighbour) onto their image's grid.
    settings:
        :class:`RegistrationSettings` (defaults when ``None``).

    Returns
    -------
    RegistrationResult
        ``transform`` maps CT physical points (mm) to MR physical points (mm);
        ``runtime_s`` wall-clock seconds; ``backend``; ``log`` the backend's log text.
    """
    mod = _module(backend)
    settings = settings or RegistrationSettings()
    fixed = check_image(fixed, "fixed")
    moving = check_image(moving, "moving")
    fmask = prepare_mask(fixed_mask, fixed, "fixed_mask")
    mmask = prepare_mask(moving_mask, moving, "moving_mask")
    # crop to the brain (+ margin): the cost then scales with the head, not the field of view
    fixed, fmask = crop_to_foreground(fixed, fmask, settings.mask_dilation_mm + 10.0, fmask)
    moving, mmask = crop_to_foreground(moving, mmask, settings.mask_dilation_mm + 20.0, mmask)
    fixed, moving = prepare_intensities(fixed, moving, fmask, mmask, settings.clip_percentiles)
    result: RegistrationResult = mod.register(fixed, moving, settings, fixed_mask=fmask, moving_mask=mmask)
    if not isinstance(result.transform, sitk.AffineTransform):  # pragma: no cover - backends already convert
        result.transform = as_affine(result.transform)
    return result
