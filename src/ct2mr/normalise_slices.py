"""Intensities and slices of one volume patient, in one process: CT window, MR normalisation, slices.

The workflow's ``slices`` job for a patient with 3D scans. The three stages
always run together (the windowed CT and normalised MR are read by slice
extraction only), so they share a process while keeping their outputs and logs:

* CT window (:func:`ct2mr.window.window_ct`, W/L in HU) -> ``--ct-window`` (uint8);
* MR normalisation (:func:`ct2mr.window.normalise_mr`, percentiles inside the
  head mask ``--mr-mask``, which must be on the MR's grid) -> ``--mr-norm`` (uint8);
* slices (:func:`ct2mr.slices.extract_slices`) of the images just made, with the
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
from ct2mr.stage_log import stage_log

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--patient", required=True, help="patient id")
    parser.add_argument("--role", required=True, help="patient role (from the patient table)")
    parser.add_argument("--ct", type=Path, help="CT in HU on the reference grid (1 mm)")
    parser.add_argument("--ct-window", type=Path, help="output: the windowed CT, uint8 (with --ct)")
    parser.add_argument("--width-hu", type=float, default=80.0, help="CT window width in HU (default 80)")
    parser.add_argument("--level-hu", type=float, default=40.0, help="CT window level/centre in HU (default 40)")
    parser.add_argument("--mr", type=Path, help="MR (registered onto the CT grid when --ct is given)")
    parser.add_argument("--mr-mask", type=Path, help="head mask on the MR's grid (with --mr)")
    parser.add_argument("--mr-norm", type=Path, help="output: the normalised MR, uint8 (with --mr)")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(1.0, 99.0), metavar=("LOW", "HIGH"),
                        help="MR percentiles inside the head mask mapped to 0 and 255 (default 1 99)")
    parser.add_argument("--head-mask", required=True, type=Path, help="head mask on the reference grid")
    parser.add_argument("--brain-mask", required=True, type=Path, help="brain mask on the reference grid")
    parser.add_argument("--output", required=True, type=Path, help="results/slices/{patient}.npz")
    parser.add_argument("--size", type=int, default=256, help="slice side in pixels (default 256)")
    parser.add_argument("--min-brain-voxels", type=int, default=500,
                        help="keep axial slices with at least this many brain voxels (default 500)")
    parser.add_argument("--min-slices", type=int, default=5, help="fail below this many kept slices (default 5)")
    parser.add_argument("--log-window", type=Path, default=None, help="log file of the window stage")
    parser.add_argument("--log-slices", type=Path, default=None, help="log file of the slices stage")


def run(args: argparse.Namespace) -> None:
    from ct2mr.imageio import grid_difference, read_image, write_image  # noqa: PLC0415
    from ct2mr.slices import _check_counts, extract_slices, save_slices  # noqa: PLC0415
    from ct2mr.window import normalise_mr, window_ct  # noqa: PLC0415

    if args.ct is None and args.mr is None:
        raise InputError(None, "--ct/--mr", "give at least one of --ct and --mr")
    for given, needed in ((args.ct, ("ct_window",)), (args.mr, ("mr_mask", "mr_norm"))):
        for name in needed:
            if given is not None and getattr(args, name) is None:
                raise InputError(None, f"--{name.replace('_', '-')}", "required with its image")
    try:
        _check_counts(size=args.size, min_slices=args.min_slices)
    except InputError as exc:
        raise InputError(None, f"--{(exc.field or '').replace('_', '-')}", exc.problem) from None

    ct_u8 = mr_u8 = None
    with stage_log(args.log_window, "window"):
        if args.ct is not None:
            ct_u8 = window_ct(read_image(args.ct), args.width_hu, args.level_hu)
            write_image(ct_u8, args.ct_window)
            log.info("wrote %s (W%g/L%g HU)", args.ct_window, args.width_hu, args.level_hu)
        if args.mr is not None:
            mr, mask = read_image(args.mr), read_image(args.mr_mask)
            diff = grid_difference(mask, mr)
            if diff is not None:  # another grid: the mask's voxels would not be the MR's
                raise InputError(args.mr_mask, "grid", f"not on the MR's grid: {diff} (mask vs MR)")
            try:
                mr_u8 = normalise_mr(mr, mask, tuple(args.percentiles))
            except InputError as exc:
                raise InputError(args.mr, exc.field, exc.problem) from exc
            write_image(mr_u8, args.mr_norm)
            log.info("wrote %s (percentiles %s)", args.mr_norm, tuple(args.percentiles))

    with stage_log(args.log_slices, "slices"):
        paths = {"ct": args.ct_window, "mr": args.mr_norm, "head_mask": args.head_mask,
                 "brain_mask": args.brain_mask}
        head, brain = read_image(args.head_mask), read_image(args.brain_mask)
        try:
            d = extract_slices(ct_u8, mr_u8, head, brain, patient=args.patient, role=args.role, size=args.size,
                               min_brain_voxels=args.min_brain_voxels, min_slices=args.min_slices)
        except InputError as exc:
            culprit = paths.get(exc.field or "") or paths["ct"] or paths["mr"]
            raise InputError(culprit, exc.field, exc.problem) from exc
        save_slices(args.output, d)
        log.info("wrote %s (%d slices)", args.output, len(d["z_index"]))
