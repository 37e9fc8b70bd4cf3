"""The git commit a benchmark measured, recorded in every file it writes under bench/results.

Every result file records its commit: a top-level ``"commit"`` field in its JSON
and a line ``Commit: <sha>`` right below the title of its Markdown; files without
a place for it (PNG, TSV) are listed with theirs in ``bench/results/INDEX.md``
(checked by tests/test_bench_provenance.py).

The commit is the short sha of ``HEAD``, with ``+dirty`` when tracked files differ
from it (staged or not; untracked files and ``bench/results`` itself, which the
benchmarks write, do not count), or ``unknown`` outside a git checkout or where
there is no git (the GPU machine of ``gpu_check.py``). A commit given explicitly
(``gpu_check.py --commit``) or by the environment variable ``CT2MR_COMMIT`` wins
over git. Standard library only: ``gpu_check.py`` imports this on a machine with
torch, numpy, scipy, pandas, matplotlib and PyYAML alone.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: the environment variable that names the commit where git cannot (no git, a copied tree)
ENV_VAR = "CT2MR_COMMIT"
UNKNOWN = "unknown"
#: paths whose changes do not make the tree dirty: the benchmarks' own outputs
NOT_DIRTY = ("bench/results",)


def _git(repo: Path, *args: str) -> str | None:
    """stdout of ``git -C repo args`` (stripped), or None when git is missing or fails."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take index.lock (others may be running git here)
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, env=env,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_commit(repo: str | os.PathLike[str] = REPO, ignore: tuple[str, ...] = NOT_DIRTY) -> str:
    """Short sha of ``repo``'s HEAD, ``+dirty`` if tracked files changed, ``unknown`` if not a git checkout.

    ``repo`` must be the checkout's top folder: a folder inside some other
    repository (a copied tree under a checkout) is ``unknown``, not that repository's commit.
    ``ignore``: paths (relative to ``repo``) whose changes do not count as dirty.
    """
    repo = Path(repo).resolve()
    top = _git(repo, "rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != repo:
        return UNKNOWN
    sha = _git(repo, "rev-parse", "--short", "HEAD")
    if not sha:  # a repository without commits
        return UNKNOWN
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude){p}" for p in ignore))
    if status is None:
        return f"{sha}+dirty?"  # cannot tell: say so rather than claim a clean tree
    return f"{sha}+dirty" if status else sha


def current_commit(given: str | None = None, repo: str | os.PathLike[str] = REPO) -> str:
    """The commit to record: ``given``, else ``$CT2MR_COMMIT``, else :func:`git_commit`."""
    return given or os.environ.get(ENV_VAR) or git_commit(repo)


def provenance(given: str | None = None, repo: str | os.PathLike[str] = REPO) -> dict[str, Any]:
    """``{"commit", "recorded" (UTC, ISO 8601), "host": {"cpus", "load_average"}}`` of a run starting now."""
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "commit": current_commit(given, repo),
        "recorded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "load_average": load},
    }


def commit_line(commit: str) -> str:
    """The Markdown line that records ``commit`` (right below the title)."""
    return f"Commit: {commit}"
