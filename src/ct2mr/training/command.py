"""The ``ct2mr train`` command: its arguments (:func:`add_arguments`) and :func:`run`, which
calls :func:`ct2mr.training.train.train`.

CLI (``python -m ct2mr train``)::

    ct2mr train --variant mrgan --out-dir results/models/mrgan/seed0 \\
        --settings '{"image_size": 64, ...}'   # JSON object, or a .json/.yaml file
        --slices results/slices/p01.npz results/slices/p02.npz ...
        [--val-slices results/slices/v01.npz ...]
        [--folds results/metrics/folds.tsv --fold F]
        [--preprocessing '{"resample": {...}, "skull_mask": {...}, "window": {...}, "slices": {...}}']
        [--device auto|cpu|cuda|cuda:N] [--no-resume] [--max-iterations-this-run N]

``--settings``: the resolved training settings (``ct2mr.training.settings.
resolve_training_settings(config["training"])`` dumped as JSON), or a path to a
.json / .yaml file holding either such a dict or a whole config with a
``training:`` section. ``--slices``: slice files (roles read from each file's
``role``; roles other than paired_train / ct_only / mr_only are ignored).
``--val-slices``: the ``paired_val`` patients' slice files, scored every
``val_every`` iterations (:mod:`ct2mr.training.validation`; never trained on, never used
to pick the weights; a patient both here and in ``--slices`` is an error).
``--folds``/``--fold`` (k-fold cross-validation, :mod:`ct2mr.training.folds`): fold F's
patients are test patients of this model (a file of one is refused as a leak), every
other fold's paired patients train as ``paired_train`` whatever their table role.
``--preprocessing``: the preprocessing the slice files were made with (the config's
``resample``, ``skull_mask``, ``window`` and ``slices`` sections, every key of
:data:`ct2mr.models.model_folder.PREPROCESSING_KEYS`; a JSON object or a .json/.yaml file),
checked before training and recorded in ``model.json`` for ``ct2mr predict``; the workflow
passes it. Without it model.json records none (a warning), and ``predict`` then needs the
config the model was trained with.
``--device`` overrides ``settings.device``. ``--no-resume`` refuses to start when
a checkpoint exists (instead of continuing it). ``--max-iterations-this-run N``
stops after N iterations in this call, writing a checkpoint (for time-limited
batch jobs; rerun the same command to continue). Threads: ``settings.num_threads``
(1 in the tiny and demo presets), when set, wins over ``ct2mr --threads``.

Outputs in ``--out-dir``: see :mod:`ct2mr.training.train` (DEVELOPING.md "Models").
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ct2mr.errors import InputError
from ct2mr.models.model_folder import check_preprocessing
from ct2mr.training.folds import fold_roles, read_folds
from ct2mr.training.losses import VARIANTS
from ct2mr.training.settings import load_settings_arg, read_mapping_arg, settings_from_dict
from ct2mr.training.train import train

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", required=True, choices=VARIANTS, help="paired (pix2pix) | unpaired (CycleGAN) | mrgan | regression (L1 only)")
    parser.add_argument("--out-dir", required=True, type=Path, help="model folder, e.g. results/models/mrgan/seed0")
    parser.add_argument(
        "--settings", required=True,
        help="resolved training settings as a JSON object, or a .json/.yaml file (settings dict or a config with training:)",
    )
    parser.add_argument("--slices", required=True, nargs="+", type=Path,
                        help="slice files results/slices/{patient}.npz (or @FILE: a file naming them, one per line)")
    parser.add_argument("--val-slices", nargs="+", type=Path, default=[],
                        help="paired_val patients' slice files: validation MAE every val_every iterations in losses.tsv")
    parser.add_argument("--folds", type=Path, default=None,
                        help="k-fold cross-validation: results/metrics/folds.tsv (ct2mr.training.folds); with --fold")
    parser.add_argument("--fold", type=int, default=None,
                        help="the fold this model is tested on: its patients are never trained on, the other "
                             "folds' paired patients are paired_train whatever their role in the table")
    parser.add_argument("--preprocessing", default=None,
                        help="the preprocessing of the slices, recorded in model.json for `ct2mr predict`: the config's "
                             "resample, skull_mask, window and slices sections as a JSON object (or a .json/.yaml file)")
    parser.add_argument("--device", default="auto", help="auto (= settings.device) | cpu | cuda | cuda:N")
    parser.add_argument("--no-resume", action="store_true", help="error out instead of continuing an existing checkpoint")
    parser.add_argument(
        "--max-iterations-this-run", type=int, default=None, metavar="N",
        help="stop after N iterations (checkpoint written, no final outputs); rerun to continue",
    )


def run(args: argparse.Namespace) -> None:
    settings, _ = load_settings_arg(args.settings)
    if args.device != "auto":
        settings = settings_from_dict({**settings.to_dict(), "device": args.device})
    if args.max_iterations_this_run is not None and args.max_iterations_this_run < 1:
        raise InputError(None, "--max-iterations-this-run", "must be >= 1")
    if (args.folds is None) != (args.fold is None):
        raise InputError(None, "--fold" if args.fold is None else "--folds", "--folds and --fold go together")
    roles = fold_roles(read_folds(args.folds), args.fold) if args.folds is not None else None
    preprocessing = None
    if args.preprocessing is not None:
        values, source = read_mapping_arg(args.preprocessing, "--preprocessing")
        preprocessing = check_preprocessing(dict(values), source, "--preprocessing")
    if not logging.getLogger().handlers:  # called outside ct2mr.cli: log to stderr too
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    if preprocessing is None:
        log.warning("no --preprocessing: %s/model.json will not record the preprocessing of its slices, and "
                    "`ct2mr predict` will need the config the model was trained with (--config)", args.out_dir)
    train(
        settings, args.slices, args.out_dir, args.variant, device=settings.device,
        resume=not args.no_resume, max_iterations_this_run=args.max_iterations_this_run, val_files=args.val_slices,
        roles=roles, preprocessing=preprocessing,
    )
