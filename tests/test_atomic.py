"""Atomic writes: complete file or nothing; usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ct2mr.io.atomic import atomic_path, write_json, write_text


def test_complete_file_or_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "image.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == dest.parent
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_old_file_survives_a_failed_rewrite(tmp_path: Path) -> None:
    dest = tmp_path / "table.tsv"
    write_text(dest, "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest) as tmp:
            tmp.write_text("new, partial")
            raise KeyboardInterrupt
    assert dest.read_text() == "old\n"


def test_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_verify_failure_leaves_nothing_and_names_the_file(tmp_path: Path) -> None:
    from ct2mr.errors import OutputError

    dest = tmp_path / "x.bin"
    write_text(dest, "old\n")

    def never(_tmp: Path) -> None:
        raise ValueError("short")

    with pytest.raises(OutputError, match=r"x\.bin: written file does not read back \(short"):
        with atomic_path(dest, verify=never) as tmp:
            tmp.write_bytes(b"new")
    assert dest.read_text() == "old\n"  # the old file survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_empty_output_is_an_error_but_empty_text_is_allowed(tmp_path: Path) -> None:
    from ct2mr.errors import OutputError

    with pytest.raises(OutputError, match="empty file"):
        with atomic_path(tmp_path / "a.nii.gz"):
            pass  # a writer that wrote nothing (a full disk)
    assert list(tmp_path.iterdir()) == []
    write_text(tmp_path / "empty.txt", "")
    assert (tmp_path / "empty.txt").read_text() == ""
