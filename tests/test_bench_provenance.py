"""Every result under bench/results records the git commit it measured (bench/provenance.py).

``.json``: a top-level ``"commit"``; ``.md``: a ``Commit: <sha>`` line right below the
title; every file (PNG and TSV included) is listed in bench/results/INDEX.md with its
commit, which for the ``.json`` / ``.md`` files must be the one they record.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
INDEX = RESULTS / "INDEX.md"
#: a recorded commit: short (or full) sha, "+dirty" when tracked files had changed
SHA = r"[0-9a-f]{7,40}(?:\+dirty\??)?"
COMMIT_LINE = re.compile(rf"^Commit: ({SHA})(?:\s|$)")
INDEX_ROW = re.compile(rf"^\| `([^`]+)` \| ({SHA}) \| (.+) \|$")
#: a Markdown file's Commit line comes within its first lines (title, blank, Commit)
TOP_LINES = 5


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def provenance() -> ModuleType:
    return _load("bench_provenance_under_test", REPO / "bench" / "provenance.py")


def result_files(suffix: str | None = None) -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*")
                  if p.is_file() and p != INDEX and (suffix is None or p.suffix == suffix))


def rel(p: Path) -> str:
    return p.relative_to(RESULTS).as_posix()


def json_commit(p: Path) -> str | None:
    data = json.loads(p.read_text(encoding="utf-8"))
    return data.get("commit") if isinstance(data, dict) else None


def md_commit(p: Path) -> str | None:
    for line in p.read_text(encoding="utf-8").splitlines()[:TOP_LINES]:
        m = COMMIT_LINE.match(line)
        if m:
            return m.group(1)
    return None


def index_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        m = INDEX_ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"INDEX.md lists {m.group(1)} twice"
            rows[m.group(1)] = m.group(2)
    return rows


# --------------------------------------------------------------------------- the recorded results


def test_every_json_result_records_its_commit() -> None:
    files = result_files(".json")
    assert files, "no JSON results found"
    bad = [f"{rel(p)}: {json_commit(p)!r}" for p in files
           if not re.fullmatch(SHA, str(json_commit(p)))]
    assert not bad, ("JSON results without a top-level \"commit\" (a short sha; rerun with --commit / "
                     "CT2MR_COMMIT where git is missing): " + "; ".join(bad))


def test_every_markdown_result_records_its_commit_below_its_title() -> None:
    files = result_files(".md")
    assert files, "no Markdown results found"
    bad = [rel(p) for p in files
           if not p.read_text(encoding="utf-8").startswith("# ") or md_commit(p) is None]
    assert not bad, f"Markdown results without a title and a 'Commit: <sha>' line below it: {bad}"


def test_index_lists_every_result_with_the_commit_it_records() -> None:
    rows = index_rows()
    files = {rel(p): p for p in result_files()}
    missing = sorted(set(files) - set(rows))
    assert not missing, f"bench/results/INDEX.md lacks: {missing}"
    stale = sorted(set(rows) - set(files))
    assert not stale, f"bench/results/INDEX.md lists files that do not exist: {stale}"
    disagree = []
    for name, p in files.items():
        recorded = json_commit(p) if p.suffix == ".json" else md_commit(p) if p.suffix == ".md" else None
        if recorded is not None and recorded != rows[name]:
            disagree.append(f"{name}: file {recorded}, INDEX.md {rows[name]}")
    assert not disagree, "INDEX.md disagrees with the files: " + "; ".join(disagree)


def test_every_result_writing_script_records_the_commit() -> None:
    scripts = sorted((REPO / "bench").glob("bench_*.py")) + [REPO / "bench" / "gpu_check.py"]
    bad = [s.name for s in scripts
           if "from provenance import" not in (text := s.read_text(encoding="utf-8")) or "commit_line(" not in text]
    assert not bad, f"bench scripts that do not record their commit (bench/provenance.py): {bad}"


def test_gpu_check_report_records_the_commit(tmp_path: Path) -> None:
    gpu_check = _load("gpu_check_provenance_under_test", REPO / "bench" / "gpu_check.py")
    gpu_check.Report(tmp_path, {"smoke": True}, "abc1234").write()
    assert json.loads((tmp_path / "gpu_check.json").read_text())["commit"] == "abc1234"
    assert (tmp_path / "gpu_check.md").read_text().splitlines()[:3] == ["# GPU check (CPU smoke rehearsal)", "",
                                                                        "Commit: abc1234"]


# --------------------------------------------------------------------------- the helper


def _git(cwd: Path, *args: str) -> str:
    home = cwd.parent / "home"  # no user or system git configuration (signing, hooks) in the way
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above tmp_path
    monkeypatch.delenv("CT2MR_COMMIT", raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "code.py").write_text("x = 1\n")
    (root / "bench" / "results").mkdir(parents=True)
    (root / "bench" / "results" / "r.json").write_text("{}\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_git_commit_clean_is_the_short_sha(provenance: ModuleType, repo: Path) -> None:
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    assert provenance.git_commit(repo) == sha
    (repo / "new_untracked.py").write_text("y = 2\n")  # untracked files do not count
    (repo / "bench" / "results" / "r.json").write_text('{"a": 1}\n')  # nor the benchmarks' own outputs
    assert provenance.git_commit(repo) == sha


def test_git_commit_modified_tracked_file_is_dirty(provenance: ModuleType, repo: Path) -> None:
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    (repo / "code.py").write_text("x = 2\n")
    assert provenance.git_commit(repo) == f"{sha}+dirty"
    _git(repo, "add", "code.py")  # staged, not committed: still dirty
    assert provenance.git_commit(repo) == f"{sha}+dirty"


def test_git_commit_outside_a_checkout_is_unknown(provenance: ModuleType, repo: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert provenance.git_commit(plain) == "unknown"
    assert provenance.git_commit(repo / "bench") == "unknown"  # inside a checkout, but not its top folder
    monkeypatch.setenv("PATH", str(plain))  # no git at all (the GPU machine)
    assert provenance.git_commit(repo) == "unknown"


def test_commit_given_or_from_the_environment_wins(provenance: ModuleType, repo: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    assert provenance.current_commit(None, repo) == sha
    monkeypatch.setenv("CT2MR_COMMIT", "feedbee")
    assert provenance.current_commit(None, repo) == "feedbee"
    assert provenance.current_commit("abc1234", repo) == "abc1234"
    record = provenance.provenance("abc1234", repo)
    assert record["commit"] == "abc1234" and set(record) == {"commit", "recorded", "host"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["recorded"])
    assert record["host"]["cpus"] == os.cpu_count()
