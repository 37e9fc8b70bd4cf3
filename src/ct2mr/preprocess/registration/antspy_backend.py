"""ANTsPy backend: ``ants.registration(type_of_transform="Affine", aff_metric="mattes")``.

Images go to ANTs through :func:`ants.from_sitk` (same physical space: ITK
origin, spacing and direction, LPS). ANTs' forward transform
(``fwdtransforms[0]``, an ITK ``AffineTransform_float_3_3`` .mat file) maps
fixed points to moving points -- it is what ``ants.apply_transforms`` uses to
pull the moving image onto the fixed grid -- i.e. the same convention as ours;
it is read with :func:`SimpleITK.ReadTransform` and flattened to one
:class:`SimpleITK.AffineTransform`.

Initialisation: ANTs' own centre-of-mass alignment (``-r [fixed,moving,1]``,
by image intensities; the images are shifted to be >= 0 first). Seeding:
``ants.config._random_seed = settings.seed`` (passed as ``--random-seed``;
ANTs' metric sampling is "regular" with a random jitter) and
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` from ``settings.threads``. In our
tests repeated runs still differed slightly (TRE within ~0.2 mm): the
in-process ANTs library does not reliably honour the thread setting, so
antspy runs are not bit-reproducible.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import SimpleITK as sitk

from ct2mr.preprocess.registration.base import (
    BackendUnavailable,
    RegistrationResult,
    RegistrationSettings,
    as_affine,
    backend_inputs,
)


def check_available() -> None:
    """Raise :class:`BackendUnavailable` when antspyx cannot be imported."""
    try:
        import ants  # noqa: F401
    except ImportError as exc:  # pragma: no cover - antspyx is a pinned dependency
        raise BackendUnavailable("antspy", f"needs the antspyx package ({exc}); pip install antspyx, "
                                 "or choose simpleitk|elastix|afni") from exc


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    key = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
    old = os.environ.get(key)
    if n is not None:
        os.environ[key] = str(int(n))
    try:
        yield
    finally:
        if n is not None:
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def register(fixed: sitk.Image, moving: sitk.Image, settings: RegistrationSettings, *,
             fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None) -> RegistrationResult:
    """Affine MR->CT registration with ANTsPy; see :func:`ct2mr.preprocess.registration.register_affine`."""
    check_available()
    import ants

    t0 = time.perf_counter()
    fixed, moving, fmask, mmask = backend_inputs(fixed, moving, fixed_mask, moving_mask, settings)

    n_levels = len(settings.shrink_factors)
    n_vox = int(sitk.GetArrayViewFromImage(fmask).sum()) if fmask is not None else fixed.GetNumberOfPixels()
    # ANTs uses one sampling rate at every level, so the coarse levels get few samples:
    # the rate is the settings' fraction, or enough for 5 x min_samples at full resolution
    rate = min(1.0, max(float(settings.sampling_fraction), 5 * int(settings.min_samples) / max(n_vox, 1)))
    tmp = tempfile.mkdtemp(prefix="ct2mr_ants_")
    try:
        kwargs: dict[str, object] = {}
        if fmask is not None:
            kwargs["mask"] = ants.from_sitk(sitk.Cast(fmask, sitk.sitkFloat32))
        if mmask is not None:
            kwargs["moving_mask"] = ants.from_sitk(sitk.Cast(mmask, sitk.sitkFloat32))
        buf = io.StringIO()
        old_seed = ants.config._random_seed
        ants.config._random_seed = int(settings.seed)  # -> antsRegistration --random-seed
        try:
            with _threads(settings.threads), contextlib.redirect_stdout(buf):
                out = ants.registration(
                    fixed=ants.from_sitk(fixed),
                    moving=ants.from_sitk(moving),
                    type_of_transform="Affine",
                    aff_metric="mattes",
                    aff_sampling=int(settings.mi_bins),
                    aff_random_sampling_rate=rate,
                    aff_iterations=tuple([int(settings.iterations)] * n_levels),
                    aff_shrink_factors=tuple(settings.shrink_factors),
                    aff_smoothing_sigmas=tuple(settings.smoothing_sigmas()),
                    outprefix=os.path.join(tmp, "ants_"),
                    verbose=False,
                    **kwargs,
                )
        finally:
            ants.config._random_seed = old_seed
        fwd = out["fwdtransforms"]
        if len(fwd) != 1:
            raise RuntimeError(f"antspy: expected one affine forward transform, got {fwd}")
        tx = sitk.ReadTransform(fwd[0])
        transform = as_affine(tx)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return RegistrationResult(
        transform=transform,
        runtime_s=time.perf_counter() - t0,
        backend="antspy",
        log=buf.getvalue() + f"ants fwdtransform: {tx.GetName()} {tx.GetParameters()} fixed {tx.GetFixedParameters()}\n",
    )
