"""ct2mr.io.tables: the one TSV reader and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct2mr.errors import InputError
from ct2mr.io.tables import read_tsv


def test_reads_a_table_with_the_given_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "per_patient.tsv"
    path.write_text("patient\tvariant\tmae\n007\tmrgan\t12.5\n", encoding="utf-8")
    df = read_tsv(path, dtype={"patient": str})
    assert df["patient"].tolist() == ["007"]  # kept as text: no leading zero lost
    assert df["mae"].tolist() == [12.5]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "loss table not found"),
        (b"", "not a readable TSV table"),
        (b"a\tb\n1\t2\n1\t2\t3\t4\n", "not a readable TSV table"),
        (b"a\tb\n\xff\xfe\x00\n", "not a readable TSV table"),
    ],
)
def test_a_missing_or_broken_table_is_one_input_error_naming_the_file(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "losses.tsv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_tsv(path, "loss table")
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "\n" not in message
