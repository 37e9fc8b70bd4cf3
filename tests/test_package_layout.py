"""The package's shape (DEVELOPING.md "Where each stage lives"): stage-family
subpackages, no import circles, no private names imported across modules.

Imports are read from the source (``ast``), lazy imports inside functions
included: a circle closed by a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ct2mr"

#: the only modules at the top of the package; everything else lives in a stage-family package
TOP_LEVEL = {"__init__", "__main__", "cli", "errors"}
#: stage-family packages, lowest first: each imports only packages before it (and ``ct2mr.errors``);
#: DEVELOPING.md maps each to its stages and rule files
LAYERS = ["io", "preprocess", "models", "training", "cohort", "inference", "evaluation", "phantom", "pipeline"]
FAMILIES = set(LAYERS)


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import of a package module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    root = name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, None) if sub in known else (target, alias.name)


def import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module -> modules it imports, and every (importer, module, private name) import."""
    mods = modules(package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for m, path in mods.items():
        for target, imported in imports_of(path, m, set(mods)):
            if target != m:
                graph[m].add(target)
            if imported is not None and imported.startswith("_") and target != m:
                private.append((m, target, imported))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_only_the_entry_points_sit_at_the_top() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == FAMILIES


def test_every_package_says_what_it_holds() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(SRC)} has no docstring"


def test_no_import_circles() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == []


def package_of(module: str) -> str:
    """``ct2mr.preprocess.registration.base`` -> ``preprocess``; top-level modules -> their own name."""
    return module.split(".")[1] if module.count(".") else module


def layer_violations(graph: dict[str, set[str]], layers: list[str]) -> list[str]:
    """Imports of a package by a package at a lower layer, as text."""
    rank = {name: i for i, name in enumerate(layers)}
    bad = []
    for module, targets in sorted(graph.items()):
        here = package_of(module)
        for target in sorted(targets):
            there = package_of(target)
            if here in rank and there in rank and rank[there] > rank[here]:
                bad.append(f"{module} ({here}) imports {target} ({there}), a higher layer")
    return bad


def test_packages_import_only_downward() -> None:
    """io < preprocess < models < training < cohort < inference < evaluation, phantom < pipeline:
    the generator networks, the model-folder format and the forward pass on slices (models/) sit
    below both training and inference; the config check (cohort/) above the training settings it
    validates."""
    graph, _ = import_graph()
    assert layer_violations(graph, LAYERS) == []
    assert layer_violations({"ct2mr.io.x": {"ct2mr.training.y"}}, LAYERS) != []  # the check can fail


def test_no_private_name_is_imported_from_another_module() -> None:
    _, private = import_graph()
    assert private == []


def test_pipeline_code_never_imports_the_phantom() -> None:
    """The phantom is demo and test data: only its own package imports it (the CLI
    names ``ct2mr.phantom.command`` as a string, imported when `ct2mr phantom` runs)."""
    graph, _ = import_graph()
    users = {m for m, targets in graph.items() if any(t.startswith("ct2mr.phantom") for t in targets)}
    assert {m for m in users if not m.startswith("ct2mr.phantom")} == set()


def test_every_cli_command_module_exists_and_has_add_arguments_and_run() -> None:
    from ct2mr.cli import COMMANDS

    mods = modules()
    for command, (module, _) in COMMANDS.items():
        assert module in mods, f"ct2mr {command}: module {module} not found"
        tree = ast.parse(mods[module].read_text(encoding="utf-8"))
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "run"} <= functions, f"ct2mr {command}: {module} lacks add_arguments/run"


@pytest.mark.parametrize(
    ("files", "expected_cycles", "expected_private"),
    [
        # a -> b -> a through a lazy import inside a function: a circle
        ({"a.py": "from pkg.b import f\n", "b.py": "def f():\n    from pkg import a\n"}, [["pkg.a", "pkg.b"]], []),
        # a private helper imported from a sibling module
        ({"a.py": "from pkg.b import _helper\n", "b.py": "def _helper(): ...\n"}, [], [("pkg.a", "pkg.b", "_helper")]),
        # relative import of a subpackage module, downward only
        ({"a.py": "from .sub import c\n", "sub/__init__.py": "", "sub/c.py": "X = 1\n"}, [], []),
    ],
)
def test_the_checks_find_what_they_look_for(
    tmp_path: Path, files: dict[str, str], expected_cycles: list[list[str]], expected_private: list[tuple[str, str, str]]
) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph, private = import_graph(pkg)
    assert cycles(graph) == expected_cycles
    assert private == expected_private
