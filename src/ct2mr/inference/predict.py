"""Synthesize an MR for a new patient's raw head CT, on the CT's original grid.

``ct2mr predict`` applies to one raw CT exactly the preprocessing of the
pipeline's CT branch, then a trained Syn_MR:

1. ``ingest(ct, "ct")``: read (DICOM folder, NIfTI, MHA, NRRD), check that it is
   a 3D head CT in Hounsfield units (air, bone, negative values), reorient to
   LPS, int16 HU;
2. ``resample_isotropic`` to ``resample.spacing_mm`` (default 1 mm, linear);
3. ``ct_masks`` (head / skull / brain masks; ``skull_mask.ct_*_threshold_hu``);
4. ``window_ct`` (``window.ct_width_hu`` / ``ct_level_hu``, default W80/L40);
5. ``extract_slices`` with CT only, role ``"predict"`` (``slices.size``,
   ``min_brain_voxels``, ``min_slices``);
6. Syn_MR on the slices (batched, bf16 autocast on CUDA; optional flip TTA);
7. slices back into the 1 mm grid (voxels outside the kept brain slices and the
   crop window = 0), then resampled (linear) onto the grid of the file as read
   by :func:`ct2mr.io.imageio.read_image`: same size, spacing, origin, direction
   (the input's own orientation, not LPS), outside the 1 mm volume = 0.

Output: uint8 grey levels 0..255 (the synthesized MR's 8-bit scale), written
atomically (``.nii.gz``, ``.nii``, ``.mha`` or ``.nrrd``).

Preprocessing settings (steps 2-5) come from the model: ``model.json``
``preprocessing``, which ``ct2mr train`` records (the ``resample``, ``skull_mask``,
``window`` and ``slices`` sections of the config it was trained with; see
:mod:`ct2mr.models.model_folder`), so a model trained at 2 mm and 32 px slices is
applied at 2 mm and 32 px. A ``--config`` that sets any of them otherwise is
refused, in one line naming the key, the config's value and the model's
(``cfg.yaml: resample.spacing_mm: [1.0, 1.0, 1.0] here, but model M was trained
with [2.0, 2.0, 2.0] ...``); the default ``config/config.yaml``, read when
``--config`` is not given, only gets a warning per differing key and the model's
value is used. The models of an ensemble must share their preprocessing
(:func:`ct2mr.models.model_folder.load_ensemble`). A model folder written before
the preprocessing was recorded takes it from ``--config`` (or the default
``config/config.yaml``) with a warning, and without either is refused: the
built-in defaults are never assumed for it. ``synthesis.batch_size`` and
``synthesis.tta`` still come from the config (default: the schema's).

CLI::

    ct2mr predict --model results/models/mrgan/seed0 [more model folders] --ct <DICOM folder or image> --out sMR.nii.gz
        [--series SEL] [--device auto] [--config config/config.yaml] [--batch-size 16] [--tta]

``--model`` is the folder of one trained model (one variant, one seed), or several
folders of one variant: their **ensemble** (the mean of their Syn_MR before rounding),
e.g. a variant's cross-validation fold models ``results/models/mrgan/fold*/seed0``
(bench/results/realdata_cv/ says what an ensemble gained on the real data). Given a
variant folder that holds ``seed*/`` folders (``results/models/mrgan``), predict
refuses with a one-line error listing them: which seed to use is the user's choice.
``--tta`` (or ``synthesis.tta: true`` in the config): horizontal-flip test-time
augmentation, as in ``ct2mr synthesize``.

Errors (InputError, exit status 2): missing/mismatched model folder (model.json
checks: :mod:`ct2mr.models.model_folder`); a ``--config`` contradicting the model's
preprocessing; a CT that is not a 3D head CT in HU (ingest's checks: 2D, 4D,
0..255 images...); a head with too few brain slices; an output path equal to the
input, or one that cannot be written (a file where a folder is needed, a folder
that is not writable): checked before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("config/config.yaml")


@dataclass(frozen=True)
class PredictSettings:
    """Preprocessing settings (units in the names), read from a config.

    The defaults are the config schema's (``workflow/schemas/config.schema.yaml``):
    :meth:`default` is what an empty config validates to.
    """

    spacing_mm: tuple[float, float, float]
    skull_threshold_hu: float
    head_threshold_hu: float
    window_width_hu: float
    window_level_hu: float
    slice_size: int
    min_brain_voxels: int
    min_slices: int
    batch_size: int
    tta: bool = False  # synthesis.tta: horizontal-flip test-time augmentation

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PredictSettings:
        """Read the relevant keys of a validated (default-filled) config dict."""
        rs, sm, wi, sl, sy = (config[k] for k in ("resample", "skull_mask", "window", "slices", "synthesis"))
        return cls(
            spacing_mm=tuple(float(v) for v in rs["spacing_mm"]),  # type: ignore[arg-type]
            skull_threshold_hu=float(sm["ct_skull_threshold_hu"]),
            head_threshold_hu=float(sm["ct_head_threshold_hu"]),
            window_width_hu=float(wi["ct_width_hu"]),
            window_level_hu=float(wi["ct_level_hu"]),
            slice_size=int(sl["size"]),
            min_brain_voxels=int(sl["min_brain_voxels"]),
            min_slices=int(sl["min_slices"]),
            batch_size=int(sy["batch_size"]),
            tta=bool(sy.get("tta", False)),
        )

    @classmethod
    def default(cls) -> PredictSettings:
        """The schema's defaults (an empty config)."""
        from ct2mr.cohort.config import validate_config

        return cls.from_config(validate_config({}))


def read_config(config_path: str | Path | None) -> tuple[dict[str, Any], Path | None]:
    """The validated (default-filled) config of ``config_path`` and its path; ``None`` -> ``config/config.yaml``
    if present, else the schema's defaults (path None)."""
    from ct2mr.cohort.config import load_config, validate_config

    if config_path is None:
        if not DEFAULT_CONFIG.is_file():
            return validate_config({}), None
        config_path = DEFAULT_CONFIG
    return load_config(config_path), Path(config_path)


def load_settings(config_path: str | Path | None) -> PredictSettings:
    """Settings from ``config_path`` alone; ``None`` -> ``config/config.yaml`` if present, else defaults."""
    return PredictSettings.from_config(read_config(config_path)[0])


def model_settings(models: Sequence[Any], config_path: str | Path | None) -> PredictSettings:
    """The settings to run ``models`` (:class:`ct2mr.models.model_folder.LoadedModel`, one or an ensemble) with:
    the preprocessing their ``model.json`` records, batch size and TTA from the config (see the module docstring
    for the rules: a contradicting ``--config`` is refused, a model folder without a record falls back to a
    config with a warning)."""
    from ct2mr.models.model_folder import preprocessing_differences

    config, path = read_config(config_path)
    record = models[0].preprocessing  # load_ensemble: every member's is the same
    where = models[0].model_dir
    if record is None:
        if path is None:
            raise InputError(where / "model.json", "preprocessing",
                             "missing (a model trained before ct2mr recorded its preprocessing) and no config to "
                             "take it from: give the config it was trained with, --config FILE")
        log.warning("%s: model.json records no preprocessing (a model trained before ct2mr recorded it): using "
                    "that of %s; if the model was trained with other settings, give its config with --config",
                    where, path)
        return PredictSettings.from_config(config)
    differences = preprocessing_differences(record, config) if path is not None else []
    if differences and config_path is not None:
        key, mine, theirs = differences[0]
        n = len(differences) - 1
        more = f"; {n} more key{'s differ' if n > 1 else ' differs'}" if n else ""
        raise InputError(path, key, f"{theirs!r} here, but model {where} was trained with {mine!r} (its "
                         f"model.json preprocessing{more}): predict applies the model's preprocessing; leave out "
                         "--config or give the config the model was trained with")
    for key, mine, theirs in differences:
        log.warning("%s: %s: %r here, but model %s was trained with %r: using the model's", path, key, theirs,
                    where, mine)
    return PredictSettings.from_config({**config, **record})


def check_output_location(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be written: an existing folder under the output's name,
    a file where one of its folders should be, or a nearest existing folder without write permission."""
    if out.is_dir():
        raise InputError(out, None, "is a folder: give a file name such as sMR.nii.gz")
    for parent in out.parents:  # nearest first: the first one that exists decides
        if parent.exists():
            if not parent.is_dir():
                raise InputError(out, None, f"cannot be written: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(out, None, f"cannot be written: no permission to write in {parent}")
            return


def _reference_grid(original: sitk.Image, ingested: sitk.Image) -> sitk.Image:
    """The grid to write on: the file's own grid when it is 3D, else (4D singleton) the ingested one."""
    return original if original.GetDimension() == 3 else ingested


def predict_image(
    model: Any,
    ct_path: str | Path,
    settings: PredictSettings | None = None,
    series: str | None = None,
) -> sitk.Image:
    """Synthesized MR (uint8, 0..255) on the grid of ``ct_path`` as read by ``read_image``.

    ``model``: a :class:`ct2mr.models.model_folder.LoadedModel`, or a list of them (an ensemble). See the module
    docstring for the steps. ``settings``: None -> :func:`model_settings` without ``--config`` (the model's
    recorded preprocessing). ``series``: the DICOM series to use when ``ct_path``
    is a DICOM folder (see :func:`ct2mr.preprocess.ingest.ingest`; ``None`` = automatic rule).
    """
    from ct2mr.io.imageio import read_image
    from ct2mr.models.apply import synthesize_slices
    from ct2mr.models.model_folder import LoadedModel
    from ct2mr.preprocess.ingest import ingest
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.skull_mask import ct_masks
    from ct2mr.preprocess.slices import extract_slices, volume_from_slices
    from ct2mr.preprocess.window import window_ct

    s = settings or model_settings(model if isinstance(model, list) else [model], None)
    t0 = time.perf_counter()
    original = read_image(ct_path, series, "ct")  # read once: a DICOM folder is searched and chosen from once
    ct = ingest(ct_path, "ct", series, raw=original)  # checks: 3D, finite, head CT in HU
    ct1 = resample_isotropic(ct, s.spacing_mm, "linear")
    try:
        masks = ct_masks(ct1, s.skull_threshold_hu, s.head_threshold_hu)
        ct_u8 = window_ct(ct1, s.window_width_hu, s.window_level_hu)
        slices = extract_slices(ct_u8, None, masks.head, masks.brain, patient=Path(ct_path).name, role="predict",
                                size=s.slice_size, min_brain_voxels=s.min_brain_voxels, min_slices=s.min_slices)
    except InputError as exc:  # name the user's file
        raise InputError(ct_path, exc.field, exc.problem) from exc
    t1 = time.perf_counter()
    synth = synthesize_slices(model, slices["ct"], batch_size=s.batch_size, cycle=False, tta=s.tta)
    t2 = time.perf_counter()
    vol = volume_from_slices(synth["mr_slices"].astype(np.float32), slices, fill=0.0)
    mr1 = sitk.GetImageFromArray(vol.astype(np.float32))
    mr1.CopyInformation(ct1)
    ref = _reference_grid(original, ct)
    out = sitk.Resample(mr1, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    arr = np.clip(np.rint(sitk.GetArrayViewFromImage(out)), 0, 255).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    log.info("%s: %d slices; preprocessing %.1f s, synthesis %.2f s (%s), back to the input grid %.1f s",
             ct_path, len(synth["mr_slices"]), t1 - t0, t2 - t1,
             (model if isinstance(model, LoadedModel) else model[0]).device, time.perf_counter() - t2)
    return img


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, nargs="+",
                        help="model folder of one training seed, results/models/{variant}/seed{seed}/ (model.json, syn_mr.pt); "
                             "a variant folder holding seed*/ folders is refused with the list of its seeds; "
                             "several folders of one variant: their ensemble (mean Syn_MR)")
    parser.add_argument("--ct", required=True, help="raw head CT in HU: DICOM series folder, .nii/.nii.gz, .mha/.mhd, .nrrd")
    parser.add_argument("--out", required=True, help="synthesized MR on the CT's original grid (.nii.gz, .nii, .mha, .nrrd)")
    parser.add_argument("--series", default=None,
                        help="DICOM folder: the series to use (SeriesInstanceUID, SeriesNumber or a "
                             "SeriesDescription substring); default: the automatic rule (see ct2mr ingest)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available) | cpu | cuda | cuda:N")
    parser.add_argument("--config", default=None,
                        help="config file (default config/config.yaml when present): batch size and TTA; the "
                             "preprocessing comes from the model's model.json, and a config that contradicts it is "
                             "refused (a model folder without it takes the config's, with a warning)")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per forward pass (default: config synthesis.batch_size, 16)")
    parser.add_argument("--tta", action="store_true", default=None,
                        help="horizontal-flip test-time augmentation (default: config synthesis.tta, off)")


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import WRITE_SUFFIXES, write_image
    from ct2mr.models.model_folder import load_ensemble

    out = Path(args.out)
    if not any(out.name.lower().endswith(sfx) for sfx in WRITE_SUFFIXES):
        raise InputError(out, None, f"unknown output format; use one of {', '.join(WRITE_SUFFIXES)}")
    if out.exists() and out.resolve() == Path(args.ct).resolve():
        raise InputError(out, None, "the output would overwrite the input CT")
    check_output_location(out)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(None, "--batch-size", f"must be >= 1, got {args.batch_size}")
    models = load_ensemble(args.model, device=args.device)  # fail fast, before preprocessing
    settings = model_settings(models, args.config)
    if args.batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=args.batch_size)
    if args.tta:
        settings = dataclasses.replace(settings, tta=True)
    img = predict_image(models if len(models) > 1 else models[0], args.ct, settings, args.series)
    write_image(img, out)
    log.info("wrote %s (%s%s, size %s)", out, models[0].variant,
             f", ensemble of {len(models)} models" if len(models) > 1 else "", img.GetSize())
