"""The environment Snakemake jobs run in (called from the Snakefile at start-up).

Jobs run ``python -m ct2mr ...``. Two things make that work everywhere without
an install step:

* ``PYTHONPATH`` gets the project's ``src/`` folder, so the package imports inside
  each rule's conda env (``--use-conda``) exactly as in the project venv. Jobs
  inherit the variable; SLURM jobs re-run the Snakefile and set it again.
* Without conda, the folder of the interpreter that runs Snakemake (the project
  venv's ``bin/``) is put first on ``PATH``, so ``python`` is that interpreter
  even when the venv is not activated (``.venv/bin/snakemake ...``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def export_job_environment(src_dir: str | Path, using_conda: bool) -> None:
    """Set ``PYTHONPATH`` (and, without conda, ``PATH``) for the jobs of this run."""
    src = str(Path(src_dir).resolve())
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *parts])
    if not using_conda:
        bindir = os.path.dirname(sys.executable)
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir]
        os.environ["PATH"] = os.pathsep.join([bindir, *path])
