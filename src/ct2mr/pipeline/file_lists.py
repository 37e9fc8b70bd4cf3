"""File lists: how a job that reads thousands of files gets their names.

A shell command is one argument of ``bash -c``, and Linux limits one argument to
128 KiB (``MAX_ARG_STRLEN``; beyond it ``execve`` fails with ``E2BIG``, "Argument list
too long"). A training job of 5 000 patients (``results/slices/P01234.npz`` is 26
bytes with its space), the registration table of 3 000 patients or the evaluation of
a few thousand test patients would pass that limit if their inputs were spelled out
on the command line. Snakemake also compares each consumer's input with the whole
input list of a job that has thousands of inputs (the training job, once per
synthesis job), which made planning quadratic in the cohort.

So the workflow's ``file_list`` job writes such an input list once, to
``results/lists/{name}.txt``, and the command reads it as ``@results/lists/{name}.txt``:
every ``ct2mr`` command replaces an argument ``@FILE`` with FILE's lines, one argument
per line (argparse ``fromfile_prefix_chars``; see ``ct2mr --help``).

Format: UTF-8 text, one path per line, in the order given (the patient table's),
relative to the job's working directory or absolute. A line is one argument exactly as
written (argparse's default ``convert_arg_line_to_args``): spaces, quotes and non-ASCII
letters need no quoting. The reader splits lines as :meth:`str.splitlines` does and reads
the file in the locale's encoding (UTF-8 under the C, C.UTF-8 and POSIX locales Python 3.11
runs jobs with; the workflow's lists hold only ``results/...`` paths of patient ids, ASCII).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ct2mr.errors import InputError
from ct2mr.io.atomic import write_text

#: the prefix that makes a ct2mr command argument a file of arguments
FROMFILE_PREFIX = "@"


def write_file_list(paths: Iterable[str | os.PathLike[str]], dest: str | os.PathLike[str]) -> None:
    """Write ``paths`` to ``dest``, one per line, atomically (an empty list writes an empty file).

    A path that the reader would not get back as one argument is refused with a one-line
    :class:`InputError`: an empty one, one holding a line break (any that :meth:`str.splitlines`
    splits at), one starting with ``@`` (read as another file of arguments) or ``-`` (read as an option).
    """
    lines = [os.fspath(p) for p in paths]
    for line in lines:
        if not line.strip() or line.splitlines() != [line] or line.startswith((FROMFILE_PREFIX, "-")):
            raise InputError(dest, "file list",
                             f"cannot list the path {line!r} (empty, a line break, or a leading @ or -)")
    write_text(dest, "".join(f"{line}\n" for line in lines))
