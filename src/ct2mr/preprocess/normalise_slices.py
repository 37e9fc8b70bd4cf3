"""Intensities and slices of one volume patient, in one process: CT window, MR normalisation, slices.

The workflow's ``slices`` job for a patient with 3D scans. The three stages
always run together (the windowed CT and normalised MR are read by slice
extraction only), so they share a process while keeping their outputs and logs:

* CT window (:func:`ct2mr.preprocess.window.window_ct`, W/L in HU) -> ``--ct-window`` (uint8);
* MR normalisation (:func:`ct2mr.preprocess.window.normalise_mr`, percentiles inside the
  head mask ``--mr-mask``, which must be on the MR's grid) -> ``--mr-norm`` (uint8);
* slices (:func:`ct2mr.preprocess.slices.extract_slices`) of the images just made, with the
  reference grid's head and brain masks -> ``--output`` (results/slices/{patient}.npz).

Outputs and slices are the same as running ``ct2mr window`` (per modality) and
``ct2mr slices`` one after another: the uint8 images are handed over in memory,
with the geometry their input files gave.

CLI (``ct2mr normalise-slices``)::

    ct2mr normalise-slices --patient ID --role ROLE --head-mask F --brain-mask F --output OUT.npz
        [--ct CT_1MM_HU --ct-window OUT_U8 [--width-hu 80 --level-hu 40]]
        [--mr MR --mr-mask HEAD_MASK_ON_MR_GRID --mr-norm OUT_U8 [--percentiles 1 99]]
        [--size 256 --min-brain-voxels 500 --min-slices 5]
        [--log-window F] [--log-slices F]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ct2mr.errors import InputError
from ct2mr.preprocess.stage_log import stage_log

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ct2mr.preprocess.slices import add_slice_arguments  # noqa: PLC0415

    parser.add_argument("--ct", type=Path, help="CT in HU on the reference grid (1 mm)")
    parser.add_argument("--ct-window", type=Path, help="output: the windowed CT, uint8 (with --ct)")
    parser.add_argument("--width-hu", type=float, default=80.0, help="CT window width in HU (default 80)")
    parser.add_argument("--level-hu", type=float, default=40.0, help="CT window level/centre in HU (default 40)")
    parser.add_argument("--mr", type=Path, help="MR (registered onto the CT grid when --ct is given)")
    parser.add_argument("--mr-mask", type=Path, help="head mask on the MR's grid (with --mr)")
    parser.add_argument("--mr-norm", type=Path, help="output: the normalised MR, uint8 (with --mr)")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(1.0, 99.0), metavar=("LOW", "HIGH"),
                        help="MR percentiles inside the head mask mapped to 0 and 255 (default 1 99)")
    add_slice_arguments(parser)
    parser.add_argument("--log-window", type=Path, default=None, help="log file of the window stage")
    parser.add_argument("--log-slices", type=Path, default=None, help="log file of the slices stage")


def run(args: argparse.Namespace) -> None:
    from ct2mr.io.imageio import read_image, write_image  # noqa: PLC0415
    from ct2mr.preprocess.slices import check_slice_arguments, write_slices  # noqa: PLC0415
    from ct2mr.preprocess.window import normalise_mr_file, window_ct  # noqa: PLC0415

    check_slice_arguments(args)
    for given, needed in ((args.ct, ("ct_window",)), (args.mr, ("mr_mask", "mr_norm"))):
        for name in needed:
            if given is not None and getattr(args, name) is None:
                raise InputError(None, f"--{name.replace('_', '-')}", "required with its image")

    ct_u8 = mr_u8 = None
    with stage_log(args.log_window, "window"):
        if args.ct is not None:
            ct_u8 = window_ct(read_image(args.ct), args.width_hu, args.level_hu)
            write_image(ct_u8, args.ct_window)
            log.info("wrote %s (W%g/L%g HU)", args.ct_window, args.width_hu, args.level_hu)
        if args.mr is not None:
            mr_u8 = normalise_mr_file(args.mr, args.mr_mask, tuple(args.percentiles))
            write_image(mr_u8, args.mr_norm)
            log.info("wrote %s (percentiles %s)", args.mr_norm, tuple(args.percentiles))

    with stage_log(args.log_slices, "slices"):
        write_slices(args, ct_u8, mr_u8, args.ct_window, args.mr_norm)
