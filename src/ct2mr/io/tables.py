"""Reading the project's tab-separated tables (metrics, comparisons, losses).

Every TSV the pipeline writes (``per_patient.tsv``, ``summary.tsv``,
``comparisons.tsv``, ``losses.tsv``, ...) has one header line and one row per
record; :func:`read_tsv` is the one reader, so a missing or broken table gives
the same one-line :class:`ct2mr.errors.InputError` wherever it is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ct2mr.errors import InputError


def read_tsv(path: str | Path, what: str = "table", dtype: Any = None) -> pd.DataFrame:
    """The tab-separated table at ``path`` (``dtype`` as in :func:`pandas.read_csv`).

    Raises :class:`InputError` naming the file when it is missing ("{what} not
    found") or is not a readable table (bad encoding, ragged rows, empty file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"{what} not found")
    try:
        return pd.read_csv(path, sep="\t", dtype=dtype)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split())  # pandas' parser messages end in a newline: keep one line
        raise InputError(path, None, f"not a readable TSV table ({detail})") from None
