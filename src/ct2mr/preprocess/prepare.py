"""Prepare one scan: ingest -> resample to 1 mm -> skull masking, in one process.

The workflow's ``prepare_ct`` / ``prepare_mr`` jobs run these three stages of one
patient's CT or MR together: they always run in this order, each reads only the
previous one's image, and a process per stage re-imported SimpleITK and passed
each volume through a gzipped NIfTI file (bench/results/chain.md measures the
difference). Each stage is the same library code as its own command
(``ct2mr ingest`` / ``resample`` / ``skull-mask``, which stay available), keeps its
log file (:mod:`ct2mr.preprocess.stage_log`) and writes the same outputs:

* ingest (:func:`ct2mr.preprocess.ingest.ingest`): the raw scan read and checked, LPS, CT as
  int16 HU, MR float32 >= 0. Not written: it is handed to resampling in memory,
  through an uncompressed NIfTI round trip in the job's temporary folder so that
  the geometry is exactly what a file in between gave (NIfTI stores origin,
  spacing and direction in single precision);
* resample (:func:`ct2mr.preprocess.resample.resample_isotropic`, linear): ``--output``, the
  scan on the ``--spacing`` grid (CT background -1024 HU, MR 0);
* skull masking (:func:`ct2mr.preprocess.skull_mask.ct_masks` / ``mr_masks``): head, brain
  (and CT skull) masks, the skull-stripped image, the QA image (and MR QA JSON).

CLI (``ct2mr prepare``)::

    ct2mr prepare --modality ct|mr --input RAW [--series SEL] --output SCAN_1MM.nii.gz
        [--spacing 1 1 1] --head-mask F --brain-mask F --stripped F --qa-png F
        [--skull-mask F] [--qa-json F] [--skull-threshold-hu 300] [--head-threshold-hu -400]
        [--brain-erosion-mm 3] [--brain-opening-mm 5] [--method auto|deepbet|morphology]
        (the masking flags are ``ct2mr skull-mask``'s)
        [--log-ingest F] [--log-resample F] [--log-skull-mask F]

Bad input fails with the stage's own one-line error naming the file; outputs are
written atomically, so a failed job leaves none of them looking complete.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import SimpleITK as sitk

from ct2mr.preprocess.stage_log import stage_log

log = logging.getLogger(__name__)

#: background of the resampled scan (outside the input), per modality
BACKGROUND = {"ct": -1024.0, "mr": 0.0}


def nifti_round_trip(img: sitk.Image) -> sitk.Image:
    """``img`` as it reads back from a NIfTI file (single-precision geometry; same voxels).

    Written uncompressed to a private temporary folder and read back: what the
    per-stage chain did through ``*_ingested.nii.gz``, so results stay bit-identical.
    """
    from ct2mr.io.imageio import write_scratch_image  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="ct2mr-prepare-") as tmp:
        path = Path(tmp) / "ingested.nii"
        write_scratch_image(img, path)
        out = sitk.ReadImage(str(path))
        out.GetSize()  # the image is read now, before the folder goes
        return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ct2mr.preprocess.skull_mask import add_mask_arguments  # noqa: PLC0415

    parser.add_argument("--modality", choices=("ct", "mr"), required=True, help="what the raw scan is")
    parser.add_argument("--input", required=True, type=Path,
                        help="raw scan: DICOM folder or file, .nii/.nii.gz/.mha/.mhd/.nrrd")
    parser.add_argument("--series", default=None, help="DICOM folder: the series to read (see `ct2mr ingest`)")
    parser.add_argument("--output", required=True, type=Path, help="the scan resampled to --spacing (NIfTI)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("X", "Y", "Z"),
                        help="output spacing in mm (default 1 1 1)")
    add_mask_arguments(parser)
    for stage in ("ingest", "resample", "skull-mask"):
        parser.add_argument(f"--log-{stage}", type=Path, default=None, help=f"log file of the {stage} stage")


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import require_write_suffix, write_image  # noqa: PLC0415
    from ct2mr.preprocess.ingest import ingest  # noqa: PLC0415
    from ct2mr.preprocess.resample import resample_isotropic  # noqa: PLC0415
    from ct2mr.preprocess.skull_mask import check_mask_arguments, write_masks  # noqa: PLC0415

    require_write_suffix(args.output)
    check_mask_arguments(args)

    with stage_log(args.log_ingest, "ingest"):
        ingested = nifti_round_trip(ingest(args.input, args.modality, args.series))

    with stage_log(args.log_resample, "resample"):
        img = resample_isotropic(ingested, tuple(args.spacing), "linear", BACKGROUND[args.modality])
        del ingested
        write_image(img, args.output)
        log.info("resampled %s to %s mm: size %s -> %s", args.input, tuple(args.spacing), img.GetSize(), args.output)

    with stage_log(args.log_skull_mask, "skull masking"):
        write_masks(img, args, args.output)
