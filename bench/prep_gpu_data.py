"""Prepare the real-data slices that bench/gpu_check.py trains on, on the CPU side.

Reads ``../shared/data/harvard_ctmr`` (paired 256 x 256 CT/MR PNG slices, 6 cases)
and ``../shared/data/harvard_mr_unpaired`` (MR-only slices of 13 other patients)
and writes ``.npz`` slice files of the DEVELOPING.md contract (``ct`` / ``mr``
uint8 (N, 256, 256), ``role``, ``patient``, masks, geometry; plain numpy
archives, which :func:`ct2mr.training.data.read_slice_file` reads without
SimpleITK) into ``bench/gpu_data/`` (git-ignored: the data are not the
project's and must not enter the repository)::

    bench/gpu_data/train/harvard{2,16,20,21}.npz     role paired_train
    bench/gpu_data/test/harvard{28,32}.npz           role paired_test (held out)
    bench/gpu_data/mr_only/harvard_mr{case}.npz      role mr_only (mrgan's unpaired MR)

Same patient split as bench/bench_training_harvard.py. Carry the folder with the
GPU command (it is about 10 MB)::

    .venv/bin/python bench/prep_gpu_data.py [--out bench/gpu_data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ct2mr.preprocess.png_slices import slices_from_png  # noqa: E402
from ct2mr.preprocess.slices import save_slices  # noqa: E402

DATA = REPO.parent / "shared" / "data"
TRAIN_CASES = ("2", "16", "20", "21")
TEST_CASES = ("28", "32")


def write(path: Path, d: dict) -> None:
    """The whole slice-file contract (DEVELOPING.md), so both readers take it: ct2mr.preprocess.slices.load_slices
    where SimpleITK is installed, the plain numpy fallback of read_slice_file where it is not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_slices(path, d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "gpu_data")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    paired = args.data / "harvard_ctmr"
    if not paired.is_dir():
        sys.exit(f"prep_gpu_data: {paired} not found (the shared real data sit beside the project)")
    for cases, sub, role in ((TRAIN_CASES, "train", "paired_train"), (TEST_CASES, "test", "paired_test")):
        for case in cases:
            pattern = case + "???.png"  # case id = file name without its last three digits
            d = slices_from_png(paired / "CT" / pattern, paired / "MR" / pattern, patient=f"harvard{case}", role=role)
            write(args.out / sub / f"harvard{case}.npz", d)
            print(f"{sub}/harvard{case}.npz: {d['ct'].shape[0]} slices")
    unpaired = args.data / "harvard_mr_unpaired"
    for case_dir in sorted(p for p in unpaired.glob("case*") if p.is_dir()):
        d = slices_from_png(None, case_dir, patient=f"harvard_mr_{case_dir.name}", role="mr_only")
        write(args.out / "mr_only" / f"harvard_mr_{case_dir.name}.npz", d)
        print(f"mr_only/harvard_mr_{case_dir.name}.npz: {d['mr'].shape[0]} slices")


if __name__ == "__main__":
    main()
