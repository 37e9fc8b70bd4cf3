"""Run every benchmark in bench/ (``make bench``); each writes bench/results/<topic>.md/.json.

Usage: ``python -m bench.run_all [--only NAME ...]``. GPU parts run only where
CUDA is available (they record that they were not measured otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (bench_<name>.py)")
    args = parser.parse_args()
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    for script in scripts:
        start = time.perf_counter()
        print(f"== {script.stem}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"== {script.stem}: exit {proc.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
        if proc.returncode:
            failed.append(script.stem)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
