"""Errors raised for bad user input (config, patient table, images, checkpoints).

Every message names the file, the field (or key) and what is wrong, so a user
can fix the input without reading a traceback.
"""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad user input: ``<file>: <field>: <problem>``.

    Parameters
    ----------
    path:
        The file or folder at fault (a config file, patient table, image,
        checkpoint...). ``None`` when the input is not a file.
    field:
        The key, column, row or property at fault (e.g. ``"registration.backend"``,
        ``"row 3, column ct"``, ``"voxel values"``). ``None`` for the file as a whole.
    problem:
        What is wrong, in plain words, ideally with what was expected.
    """

    def __init__(self, path: str | PathLike[str] | None, field: str | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.field = field
        self.problem = problem
        parts = [p for p in (self.path, field, problem) if p]
        super().__init__(": ".join(parts))


class OutputError(RuntimeError):
    """An output could not be written completely: ``<file>: <problem>``.

    Raised by :mod:`ct2mr.io.atomic` when a write fails or the written file does not
    read back (disk full, quota, file-size limit, I/O error); nothing is left
    under the final name. The CLI prints it on one line and exits with status 3.
    """

    def __init__(self, path: str | PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # always one line
        super().__init__(f"{self.path}: {self.problem}")
