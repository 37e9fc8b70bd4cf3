"""The ``ct2mr`` command line: one sub-command per pipeline stage.

Snakemake rules call these sub-commands (``python -m ct2mr <command> ...``), so
everything a rule does can also be run by hand. Each command lives in the module
named for its stage and provides two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> None: ...

Modules are imported lazily, so ``ct2mr ingest`` never imports torch.
Bad input raises :class:`ct2mr.errors.InputError`; it is printed as one line and
the command exits with status 2. An output that cannot be written completely
(disk full, file-size limit) raises :class:`ct2mr.errors.OutputError`: one line,
exit status 3, and no file under the output's name.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ct2mr.errors import InputError, OutputError
from ct2mr.pipeline.file_lists import FROMFILE_PREFIX

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("ct2mr.phantom.command", "write one synthetic phantom patient (CT in HU, T2-like MR, known affine)"),
    "ingest": ("ct2mr.preprocess.ingest", "read a DICOM series / NIfTI / MHA / NRRD, check it, write canonical LPS NIfTI"),
    "resample": ("ct2mr.preprocess.resample", "resample an image or mask to isotropic spacing (default 1 mm)"),
    "skull-mask": ("ct2mr.preprocess.skull_mask", "CT skull/brain/head masks from HU thresholds; MR head/brain masks"),
    "prepare": ("ct2mr.preprocess.prepare", "ingest + resample + skull-mask one raw scan in one process (a workflow job)"),
    "register": ("ct2mr.preprocess.register", "affine MR->CT registration driven by mutual information"),
    "window": ("ct2mr.preprocess.window", "CT window (W80/L40) and MR normalisation to uint8 [0, 255]"),
    "slices": ("ct2mr.preprocess.slices", "axial 256x256 brain slices of one patient -> results/slices/{patient}.npz"),
    "normalise-slices": ("ct2mr.preprocess.normalise_slices",
                         "CT window + MR normalisation + slices of one volume patient in one process (a workflow job)"),
    "slices-png": ("ct2mr.preprocess.png_slices", "pre-registered 2D PNG slice pairs -> results/slices/{patient}.npz"),
    "slices-pool": ("ct2mr.preprocess.image_pools", "an unpaired pool of 2D images (PNG/JPEG, any size) -> results/slices/{patient}.npz"),
    "train": ("ct2mr.training.command", "train MR-GAN or a baseline (paired / unpaired) on slice files"),
    "synthesize": ("ct2mr.inference.synthesize", "Syn_MR on a patient's CT slices, put back into the CT's 3D grid"),
    "evaluate": ("ct2mr.evaluation.evaluate", "MAE / PSNR / SSIM per patient and variant, summary and Wilcoxon tests"),
    "segment-tissues": ("ct2mr.evaluation.tissue_segmentation",
                        "CSF / GM / WM of an MR inside its brain mask on the kept slices (ANTs Atropos)"),
    "evaluate-volume": ("ct2mr.evaluation.volume_metrics",
                        "3D MAE / PSNR / MS-SSIM, slice jump and tissue Dice / HD95 of one synthetic MR volume"),
    "qc": ("ct2mr.evaluation.qc", "per-patient QC flags (MAE z, Dice drop, MR mask method) and image metric vs Dice correlation"),
    "compare": ("ct2mr.evaluation.comparisons", "mrgan vs each baseline: hierarchical bootstrap CI and sign-flip permutation p"),
    "figures": ("ct2mr.evaluation.figures", "the paper's figures (registration, synthesis, variants, cycle) from our data"),
    "predict": ("ct2mr.inference.predict", "synthesize an MR for a new raw CT on the CT's original grid"),
    "check-config": ("ct2mr.cohort.config",
                     "validate a config file and its patient table (--data: also open every input's header)"),
    "report-tables": ("ct2mr.evaluation.report_tables", "result tables (TSV, registration JSON) as HTML pages for the report"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Parser with every command listed; only ``command``'s module is imported."""
    parser = argparse.ArgumentParser(
        prog="ct2mr", description=__doc__.splitlines()[0],
        epilog=f"In every command an argument {FROMFILE_PREFIX}FILE is replaced by FILE's lines, one argument per "
        "line: how the workflow passes thousands of paths (ct2mr.pipeline.file_lists).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads for ITK filters and torch (default: the libraries' own choice)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, fromfile_prefix_chars=FROMFILE_PREFIX)
        if name == command:
            importlib.import_module(module_name).add_arguments(p)
    return parser


def set_threads(n: int) -> None:
    """Limit ITK filters and torch (read at its import) to ``n`` threads: the rule's ``threads``."""
    import os

    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads:
        set_threads(args.threads)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        module.run(args)
    except InputError as exc:
        print(f"ct2mr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"ct2mr {args.command}: error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
