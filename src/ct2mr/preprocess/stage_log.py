"""Per-stage log files for commands that run several pipeline stages in one process.

A workflow job such as ``prepare_ct`` runs ingest, resample and skull masking in
one Python process (:mod:`ct2mr.preprocess.prepare`), but each stage keeps its own log file
where a user looks for it (``results/logs/ingest/{patient}_ct.log``, ...)::

    with stage_log("results/logs/ingest/P001_ct.log", "ingest"):
        img = ingest(...)

Inside the block every log record (of any logger) is also written to the
stage's file, with the same format as the command's own output; an exception
leaving the block is written there too (one line: what failed) before it
propagates, so a failed stage's log says why. INFO records always reach the file
(the root logger's level is lowered to INFO inside the block when it was higher). The file is replaced, not
appended to: it describes the stage's last run, like a shell ``> log``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def stage_log(path: str | os.PathLike[str] | None, stage: str) -> Iterator[None]:
    """Copy the log records of the block to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        yield
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(p, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    level = root.level
    if level == logging.NOTSET or level > logging.INFO:  # a stage log always has the INFO records
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    log = logging.getLogger("ct2mr.stage")
    log.info("stage %s", stage)
    try:
        yield
    except BaseException as exc:
        log.error("stage %s failed: %s", stage, exc)
        raise
    else:
        log.info("stage %s done", stage)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
