"""Issue 22 item 1: paths with spaces, quotes and non-ASCII letters reach every job as one argument.

A space in a patient table path used to pass check-config and then fail every prepare and
register job with argparse's "unrecognized arguments" (`{input}` and the --truth flag were not
quoted). Every path in every rule's shell line is now quoted (`{input:q}`, or shlex.quote in a
param function that builds a flag).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np

from tests.workflow_helpers import REPO, make_tiny_workdir, snakemake

#: a folder name with a space, a quote and a non-ASCII letter
ODD = "raw scans ü O'Brien"


def test_every_path_in_a_shell_line_is_quoted() -> None:
    """Every {input}, {output} and {log} placeholder (and the path params) of the rule files carries :q;
    flags built in Python quote with shlex.quote (the dry run below checks them)."""
    unquoted = re.compile(r"\{+(?:input|output|log|params\.(?:model_dir|out_dir))(?:\.\w+)?\}+")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if unquoted.search(line)
    ]
    assert not found, "unquoted paths in shell lines:\n" + "\n".join(found)


def _tokens_after(command: str, flag: str) -> list[str]:
    words = shlex.split(command)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == flag]


def test_dry_run_commands_carry_odd_paths_as_one_argument(tmp_path: Path) -> None:
    """Planned from a project folder "proj ü" whose table names scans, a truth file, 2D slice pairs
    and a pool under a folder with a space, a quote and a non-ASCII letter: each reaches its
    command as exactly one argument (placeholder files: a dry run reads no image)."""
    project = tmp_path / "proj ü"
    make_tiny_workdir(project)
    raw = project / ODD
    (raw / "pairs ü").mkdir(parents=True)
    (raw / "pool ü").mkdir()
    for name in ("ct scan.nii.gz", "mr scan.nii.gz", "truth file.json"):
        (raw / name).write_text(name)  # distinct non-empty contents: no leakage between placeholders
    for name in ("1001.png", "1002.png"):
        (raw / "pairs ü" / name).write_text(name)
        (raw / "pool ü" / name).write_text("pool " + name)
    rows = [
        f"S1\tpaired_test\t{raw}/ct scan.nii.gz\t{ODD}/mr scan.nii.gz\t{ODD}/truth file.json",
        f"S2\tpaired_test\t{ODD}/pairs ü\t{ODD}/pairs ü/1???.png\t",
        f"S3\tct_only\t{ODD}/pool ü/*.png\t\t",
    ]
    table = project / "patients.tsv"
    table.write_text(table.read_text() + "\n".join(rows) + "\n")
    text = snakemake(project, "-n", "-p", "--forceall", timeout=300).stdout
    commands = [line.split(": ", 1)[1] if line.startswith("Shell command: ") else line
                for line in text.splitlines() if "python -m ct2mr" in line]

    def command(*words: str) -> str:
        hits = [c for c in commands if all(w in c for w in words)]
        assert len(hits) == 1, (words, hits)
        return hits[0]

    assert _tokens_after(command("prepare --modality ct", "/S1/"), "--input") == [f"{raw}/ct scan.nii.gz"]
    assert _tokens_after(command("prepare --modality mr", "/S1/"), "--input") == [f"{ODD}/mr scan.nii.gz"]
    assert _tokens_after(command("register", "/S1/"), "--truth") == [f"{ODD}/truth file.json"]
    png = command("slices-png", "--patient S2")
    assert _tokens_after(png, "--ct") == [f"{ODD}/pairs ü"] and _tokens_after(png, "--mr") == [f"{ODD}/pairs ü/1???.png"]
    assert _tokens_after(command("slices-pool", "--patient S3"), "--images") == [f"{ODD}/pool ü/*.png"]
    # every command of the plan still splits into words without error (quotes balanced)
    for c in commands:
        shlex.split(c)


def test_the_workflow_runs_from_an_odd_project_folder(tiny_run: Path, tmp_path: Path) -> None:
    """The finished tiny run, copied into "proj ü"; the test patient T3's CT, MR and truth moved under
    a folder with a space, a quote and a non-ASCII letter (the CT by an absolute path): its
    preprocessing and synthesis rerun and succeed."""
    project = tmp_path / "proj ü"
    shutil.copytree(tiny_run, project, symlinks=True)
    raw = project / ODD
    raw.mkdir()
    for name, new in (("ct.mha", "T3 ct.mha"), ("mr.nrrd", "T3 mr.nrrd"), ("truth.json", "T3 truth.json")):
        shutil.copy2(project / "results" / "phantom" / "T3" / name, raw / new)
    table = project / "patients.tsv"
    rows = table.read_text().splitlines()
    rows = [f"T3\tpaired_test\t{raw}/T3 ct.mha\t{ODD}/T3 mr.nrrd\t{ODD}/T3 truth.json" if r.startswith("T3\t") else r
            for r in rows]
    table.write_text("\n".join(rows) + "\n")
    synth = str(sorted(project.glob("results/synth/*/seed*/T3_mr.nii.gz"))[0].relative_to(project))
    before = (project / "results" / "slices" / "T3.npz").stat().st_mtime
    snakemake(project, "--cores", "2", "results/slices/T3.npz", synth, timeout=300)
    assert (project / "results" / "slices" / "T3.npz").stat().st_mtime > before  # remade from the moved scans
    qa = json.loads((project / "results" / "preprocessed" / "T3" / "registration_qa.json").read_text())
    assert qa["tre_mm"] is not None  # the truth file was read
    with np.load(project / "results" / "slices" / "T3.npz") as d:
        assert d["ct"].shape[0] > 0
    assert (project / synth).stat().st_size > 0
    log = (project / "results" / "logs" / "ingest" / "T3_ct.log").read_text()
    assert "T3 ct.mha" in log
