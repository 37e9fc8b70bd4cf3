"""File lists (ct2mr.pipeline.file_lists): thousands of paths reach a job as @FILE, never on its command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ct2mr.cli import COMMANDS, build_parser
from ct2mr.errors import InputError
from ct2mr.pipeline.file_lists import FROMFILE_PREFIX, write_file_list
from tests.workflow_helpers import make_planning_project, snakemake

#: Linux's limit on one argument (MAX_ARG_STRLEN): a shell command is one argument of bash -c
MAX_ARG_STRLEN = 128 * 1024


def test_list_round_trip_through_every_command(tmp_path: Path) -> None:
    """Every ct2mr command reads @FILE as the file's lines, one argument each, in order."""
    paths = [f"results/slices/P{i:05d}.npz" for i in range(6000)]
    listed = tmp_path / "lists" / "train_mrgan.txt"
    write_file_list(paths, listed)
    assert listed.read_text().splitlines() == paths
    for command in COMMANDS:  # the property holds for every command, not only the ones the workflow uses today
        sub = build_parser(command)._subparsers._group_actions[0].choices[command]  # noqa: SLF001
        assert sub.fromfile_prefix_chars == FROMFILE_PREFIX, command
    args = build_parser("train").parse_args(
        ["train", "--variant", "mrgan", "--out-dir", "m", "--settings", "{}", "--slices", f"@{listed}"]
    )
    assert [str(p) for p in args.slices] == paths
    # more than one shell argument may carry
    assert sum(len(p) + 1 for p in paths) > MAX_ARG_STRLEN


def test_empty_list_and_bad_paths(tmp_path: Path) -> None:
    write_file_list([], tmp_path / "empty.txt")
    assert (tmp_path / "empty.txt").read_text() == ""
    for bad in ("", "a\nb", "@other.txt"):
        with pytest.raises(InputError, match=r"bad\.txt: file list: cannot list the path"):
            write_file_list(["ok.npz", bad], tmp_path / "bad.txt")
        assert not (tmp_path / "bad.txt").exists()  # nothing half-written


def test_paths_with_spaces_and_any_letter_survive_the_list(tmp_path: Path) -> None:
    """Issue 22 item 1: one path per line, read back as one argument each (spaces, quotes, non-ASCII kept)."""
    paths = ["proj ü/results/slices/P1.npz", " lead and trail ", "O'Brien \"scan\" #1.npz", "tab\there.npz", "ünï/çødé.npz"]
    listed = tmp_path / "lists ü" / "train.txt"
    write_file_list(paths, listed)
    args = build_parser("train").parse_args(
        ["train", "--variant", "mrgan", "--out-dir", "m", "--settings", "{}", "--slices", f"@{listed}"]
    )
    assert [str(p) for p in args.slices] == [str(Path(p)) for p in paths]


@pytest.mark.parametrize("bad", ["a\x0bb", "a\x0cb", "a\x1cb", "a\x85b", "a\u2028b", "-rf.npz"])
def test_paths_the_reader_would_split_or_take_as_an_option_are_refused(tmp_path: Path, bad: str) -> None:
    """The reader splits lines as str.splitlines does (more breaks than \\n and \\r), and a line starting
    with '-' would be read as an option: such a path is refused when the list is written."""
    with pytest.raises(InputError, match="cannot list the path"):
        write_file_list(["ok.npz", bad], tmp_path / "bad.txt")


def test_missing_list_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser("train").parse_args(
            ["train", "--variant", "mrgan", "--out-dir", "m", "--settings", "{}", "--slices", f"@{tmp_path}/nope.txt"]
        )
    assert exc.value.code == 2
    assert "nope.txt" in capsys.readouterr().err


def _cohort(root: Path, n: int) -> None:
    """A planning-only project of ``n`` paired patients (empty raw placeholders; 1 in 5 held out), two seeds."""
    roles = {f"P{i:05d}": "paired_test" if i % 5 == 0 else "paired_train" for i in range(1, n + 1)}
    make_planning_project(root, roles, seeds=[0, 1])


def _longest_command_per_rule(root: Path) -> dict[str, int]:
    text = snakemake(root, "-n", "-p").stdout
    longest: dict[str, int] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        cmd = re.search(r"^Shell command: (.*)$", block, re.M)
        if m and cmd:
            longest[m.group(1)] = max(longest.get(m.group(1), 0), len(cmd.group(1)))
    return longest


def test_no_command_line_grows_with_the_cohort(tmp_path: Path) -> None:
    """Planned for 10 and for 40 patients, every rule's longest shell command is the same length:
    so none can pass the 128 KiB limit of one argument however large the cohort."""
    small, large = tmp_path / "n10", tmp_path / "n40"
    _cohort(small, 10)
    _cohort(large, 40)
    a, b = _longest_command_per_rule(small), _longest_command_per_rule(large)
    assert {"train", "evaluate", "registration_table", "fig_difference", "prepare_ct", "synthesize"} <= set(a)
    assert set(a) == set(b)
    grows = {rule: (a[rule], b[rule]) for rule in a if b[rule] != a[rule]}
    assert not grows, f"shell commands that grow with the cohort (10 -> 40 patients): {grows}"
    assert max(b.values()) < MAX_ARG_STRLEN / 16
