"""Atomic writes: complete file or nothing; usual permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ct2mr.atomic import atomic_path, write_json, write_text


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
