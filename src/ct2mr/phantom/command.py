"""``ct2mr phantom``: write one synthetic phantom patient (:mod:`ct2mr.phantom.patient`).

Only what the requested outputs need is computed; each output is the same
whichever subset one call writes.

CLI (``ct2mr phantom``)::

    --patient P01              patient id (part of the random seed)       [required]
    --seed 2018                cohort seed                                 [default 2018]
    --ct PATH                  CT output: .nii.gz/.nii/.mha/.nrrd, or a path
                               without an image ending = DICOM series folder
    --mr PATH                  MR output, same rule
    --truth PATH.json          true affine (:mod:`ct2mr.preprocess.registration.truth`,
                               the format ``ct2mr register --truth`` reads)
    --labels PATH.nii.gz       label map on the CT grid (uint8, see
                               :data:`ct2mr.phantom.anatomy.LABELS`)
    --export FOLDER            the CT as a scanner's export: localizer, axial 5 /
                               2.5 mm, tilted and uneven axial series, a coronal
                               reformat, previews (:mod:`ct2mr.phantom.export`;
                               fixed geometry, not the --ct-spacing / --fov ones)
    --dicomdir                 with --export: a DICOMDIR index and nested folders
    --ct-spacing X Y Z         mm, default 0.8 0.8 2.5
    --mr-spacing X Y Z         mm, default 1.2 1.1 3.0
    --fov X Y Z                mm, default 210 240 120
    --max-rotation-deg D       default 8
    --max-translation-mm D     default 8
    --max-scale S              default 0.04 (scales in 1 +- S)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from typing import Literal

import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_json
from ct2mr.phantom.export import write_export
from ct2mr.phantom.patient import PhantomParams, anatomy_summary, make_ct, make_mr, make_truth
from ct2mr.preprocess.registration.truth import truth_to_json

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ct2mr phantom`` (see the module docstring)."""
    d = PhantomParams()
    parser.add_argument("--patient", required=True, help="patient id, e.g. P01 (part of the random seed)")
    parser.add_argument("--seed", type=int, default=2018, help="cohort seed (default 2018)")
    parser.add_argument("--ct", help="CT output (.nii.gz/.nii/.mha/.nrrd; no image ending = DICOM series folder)")
    parser.add_argument("--mr", help="MR output (same rule as --ct)")
    parser.add_argument("--truth", help="true affine JSON (CT point -> MR point)")
    parser.add_argument("--labels", help="label map on the CT grid (.nii.gz/.nii/.mha/.nrrd)")
    parser.add_argument("--export", help="folder: the CT as a scanner's export (several series, previews; "
                                         "see ct2mr.phantom.export)")
    parser.add_argument("--dicomdir", action="store_true", help="with --export: a DICOMDIR and nested folders")
    parser.add_argument("--ct-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.ct_spacing_mm)
    parser.add_argument("--mr-spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.mr_spacing_mm)
    parser.add_argument("--fov", type=float, nargs=3, metavar=("X", "Y", "Z"), default=d.fov_mm)
    parser.add_argument("--max-rotation-deg", type=float, default=d.max_rotation_deg)
    parser.add_argument("--max-translation-mm", type=float, default=d.max_translation_mm)
    parser.add_argument("--max-scale", type=float, default=d.max_scale)


def run(args: argparse.Namespace) -> None:
    """Generate one patient and write the requested outputs (only what they need is computed)."""
    from ct2mr.io.imageio import image_suffix, write_image

    if not (args.ct or args.mr or args.truth or args.labels or args.export):
        raise InputError(None, "outputs", "give at least one of --ct, --mr, --truth, --labels, --export")
    if args.dicomdir and not args.export:
        raise InputError(None, "--dicomdir", "applies only with --export")
    for name in ("ct_spacing", "mr_spacing", "fov"):
        if any(v <= 0 for v in getattr(args, name)):
            raise InputError(None, f"--{name.replace('_', '-')}", "must be > 0")
    if args.labels and image_suffix(args.labels) is None:
        raise InputError(args.labels, "--labels", "needs an image ending (.nii.gz, .nii, .mha, .nrrd)")
    params = PhantomParams(
        ct_spacing_mm=tuple(args.ct_spacing),
        mr_spacing_mm=tuple(args.mr_spacing),
        fov_mm=tuple(args.fov),
        max_rotation_deg=args.max_rotation_deg,
        max_translation_mm=args.max_translation_mm,
        max_scale=args.max_scale,
    )
    log.info("phantom %s (seed %d): %s", args.patient, args.seed, json.dumps(anatomy_summary(args.patient, args.seed)))
    uid_seed = f"{args.patient}-{args.seed}-{asdict(params)}"
    if args.ct or args.labels:
        t0 = time.perf_counter()
        ct, labels = make_ct(args.patient, args.seed, params)
        log.info("CT %s generated in %.2f s", "x".join(map(str, ct.GetSize())), time.perf_counter() - t0)
        if args.ct:
            _write(ct, args.ct, "CT", args.patient, uid_seed)
        if args.labels:
            write_image(labels, args.labels)
            log.info("wrote labels %s", args.labels)
    if args.mr:
        t0 = time.perf_counter()
        mr = make_mr(args.patient, args.seed, params)
        log.info("MR %s generated in %.2f s", "x".join(map(str, mr.GetSize())), time.perf_counter() - t0)
        _write(mr, args.mr, "MR", args.patient, uid_seed)
    if args.export:
        summary = write_export(args.export, args.patient, args.seed, dicomdir=args.dicomdir)
        log.info("wrote export %s: %s", args.export, json.dumps(summary))
    if args.truth:
        data = truth_to_json(make_truth(args.patient, args.seed, params))
        data.update(patient=args.patient, seed=args.seed, params=asdict(params))
        write_json(args.truth, data)
        log.info("wrote truth %s", args.truth)


def _write(img: sitk.Image, out: str, modality: Literal["CT", "MR"], patient: str, uid_seed: str) -> None:
    """Write to ``out``: a DICOM series folder when it has no image ending, else NIfTI/MHA/NRRD."""
    from ct2mr.io.imageio import image_suffix, write_dicom_series, write_image

    if image_suffix(out) is None:
        write_dicom_series(img, out, modality=modality, series_description=f"ct2mr phantom {modality}",
                           patient_id=patient, uid_seed=f"{uid_seed}-{modality}")
    else:
        write_image(img, out)
    log.info("wrote %s %s", modality, out)
