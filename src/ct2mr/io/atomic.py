"""Atomic, verified output writing: a file under its final name is always complete.

Each helper writes to a temporary file in the destination folder, makes sure the
bytes reached the disk and read back, then renames it into place with
:func:`os.replace` (atomic on POSIX), so a reader sees either the old file, no
file, or the complete new file. :func:`atomic_path` is the one place this
happens; every writer of the package goes through it (directly or through the
helpers below).

Why a read-back: some libraries hide a short write. SimpleITK's NIfTI writer
prints ``** ERROR: NWAD: wrote only ...`` and returns normally on a full disk
(``EFBIG``/``ENOSPC``), and ITK's text transform writer says nothing at all.
torch, numpy, matplotlib and PIL raise, but a verify step is cheap insurance.

A failed write raises :class:`ct2mr.errors.OutputError` (one line naming the
file); the temporary file is removed and nothing appears under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ct2mr.errors import OutputError

#: ``verify(tmp)`` raises (any exception) when the temporary file is not what was written
Verifier = Callable[[Path], None]


@contextlib.contextmanager
def atomic_path(
    dest: str | os.PathLike[str], suffix: str | None = None, verify: Verifier | None = None,
    allow_empty: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; check it and rename it to ``dest`` on success.

    The temporary name keeps ``dest``'s full suffix (e.g. ``.nii.gz``) so writers
    that infer the format from the name work. After the ``with`` body:

    1. the temporary file must exist and be non-empty (unless ``allow_empty``);
    2. it is fsync'ed (data on disk; a delayed ``ENOSPC`` shows up here);
    3. ``verify(tmp)``, when given, must return without raising (a read-back);
    4. it is renamed to ``dest`` and the folder is fsync'ed (the rename is durable).

    An ``OSError`` raised by the body (the writer: ``EFBIG``, ``ENOSPC``, ``EIO``)
    or any failure of steps 1-3 becomes an :class:`OutputError` naming ``dest``;
    a library that reports write errors as ``RuntimeError`` (ITK, torch) is
    wrapped with :func:`library_write`. On any exception the temporary file is
    removed and ``dest`` is left untouched (the old file survives).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if suffix is None:
            suffix = "".join(dest.suffixes) or ".tmp"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(dest, _os_problem(exc)) from exc
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise OutputError(dest, f"write failed: {_problem(exc)}") from exc
        _finish(tmp, dest, verify, allow_empty)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _finish(tmp: Path, dest: Path, verify: Verifier | None, allow_empty: bool = False) -> None:
    """Steps 1-4 of :func:`atomic_path`."""
    try:
        if not tmp.is_file():
            raise OutputError(dest, "the writer produced no file")
        if tmp.stat().st_size == 0 and not allow_empty:
            raise OutputError(dest, "the writer produced an empty file (disk full or file-size limit?)")
        fsync_file(tmp)
    except OSError as exc:
        raise OutputError(dest, _os_problem(exc)) from exc
    if verify is not None:
        try:
            verify(tmp)
        except Exception as exc:  # noqa: BLE001 - any failure to read back means an incomplete file
            if isinstance(exc, OutputError):
                raise
            raise OutputError(dest, f"written file does not read back ({_problem(exc)}; disk full or file-size limit?)") from exc
    try:
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual umask-based mode
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        raise OutputError(dest, _os_problem(exc)) from exc


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest`` (usual umask permissions); on success it
    replaces ``dest`` whole (a previous ``dest`` is moved aside, then removed) and the
    rename is fsync'ed. On any exception the temporary folder is removed and ``dest`` is
    left as it was. Files written into it are the caller's to verify before the block ends.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
    try:
        yield tmp
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to the disk (``fsync``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable; a no-op where folders cannot be fsync'ed."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _os_problem(exc: OSError) -> str:
    return f"write failed: {exc.strerror or exc}" + (" (disk full or file-size limit?)" if exc.errno in (
        errno.EFBIG, errno.ENOSPC, errno.EDQUOT) else "")


def _problem(exc: BaseException) -> str:
    """One informative line for an exception (ITK messages span many lines)."""
    if isinstance(exc, OSError) and exc.strerror:
        return _os_problem(exc).removeprefix("write failed: ")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


@contextlib.contextmanager
def library_write(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a ``RuntimeError`` of a library's writer (ITK, torch) into an :class:`OutputError` naming ``dest``."""
    try:
        yield
    except RuntimeError as exc:
        raise OutputError(dest, f"write failed: {_problem(exc)} (disk full or file-size limit?)") from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------- writers by file kind


def write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically; verified by size."""
    data = text.encode("utf-8")
    write_bytes(dest, data)


def write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically; verified by size."""

    def same_size(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise ValueError(f"{tmp.stat().st_size} bytes on disk, {len(data)} written")

    with atomic_path(dest, verify=same_size, allow_empty=not data) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()


def write_json(dest: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``dest`` atomically; verified by size and by parsing it back."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    data = text.encode("utf-8")

    def parses(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise ValueError(f"{tmp.stat().st_size} bytes on disk, {len(data)} written")
        json.loads(tmp.read_text(encoding="utf-8"))

    with atomic_path(dest, verify=parses) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays without importing numpy at module import time
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npz(dest: str | os.PathLike[str], arrays: Mapping[str, Any], compressed: bool = True) -> None:
    """Write ``arrays`` as an ``.npz`` atomically; verified by loading every array back (zip CRCs)."""
    import numpy as np  # noqa: PLC0415

    def loads(tmp: Path) -> None:
        with np.load(tmp, allow_pickle=False) as z:
            if set(z.files) != set(arrays):
                raise ValueError(f"keys {sorted(z.files)} on disk, {sorted(arrays)} written")
            for key in z.files:
                z[key]  # noqa: B018 - reading checks the member's CRC

    save = np.savez_compressed if compressed else np.savez
    with atomic_path(dest, suffix=".npz", verify=loads) as tmp, open(tmp, "wb") as fh:
        save(fh, **arrays)
        fh.flush()


def verify_png(tmp: Path) -> None:
    """Decode a PNG fully (a truncated file raises)."""
    from PIL import Image  # noqa: PLC0415

    with Image.open(tmp) as im:
        im.load()


def write_figure(fig: Any, dest: str | os.PathLike[str], **savefig_kwargs: Any) -> None:
    """``fig.savefig`` (a matplotlib figure) to a PNG atomically; verified by decoding it back."""
    with atomic_path(dest, suffix=".png", verify=verify_png) as tmp:
        fig.savefig(tmp, format="png", **savefig_kwargs)


def verify_zip(tmp: Path) -> None:
    """Check every member of a zip file against its CRC (``torch.save``'s format: see
    :func:`ct2mr.models.model_folder.save_torch`, kept there so this module never imports torch)."""
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(tmp) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise ValueError(f"member {bad} is corrupt")

