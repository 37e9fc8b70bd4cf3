"""Static checks of the conda environments (envs/*.yaml) and of the rules using them.

No conda is needed: the env files are parsed as YAML, and the workflow's rules are
read through Snakemake's API (in a subprocess, so the Snakefile's changes to
``os.environ`` do not leak into the test process).

What is checked:

* every env file has ``name``, ``channels`` (conda-forge first) and
  ``dependencies``, pins Python 3.11, and pins every package to one exact version
  (conda ``name=1.2.3`` / ``name==1.2.3``, pip ``name==1.2.3``);
* a package pinned both in an env and in pyproject.toml has the same version
  there (names normalised: case, ``-``/``_``/``.``, ``pytorch`` = ``torch``);
* every rule that runs ``python -m ct2mr <command>`` has a ``conda:`` env from
  envs/, and that env lists the distribution of every third-party module that
  the command can import: the imports of ``ct2mr.__main__``, ``ct2mr.cli`` and the
  command's module (``ct2mr.cli.COMMANDS``), followed through ``ct2mr``'s own
  modules with ``ast``; standard-library modules (``sys.stdlib_module_names``),
  imports under ``if TYPE_CHECKING:`` and imports guarded by
  ``try: ... except ImportError`` are left out; import names are mapped to
  distributions with the installed metadata (``SimpleITK`` -> ``simpleitk``,
  ``ants`` -> ``antspyx``, ``yaml`` -> ``pyyaml``, ``skimage`` -> ``scikit-image``...);
* every rule that runs something declares ``log:``, ``benchmark:``, ``conda:``,
  ``threads:`` and a ``mem_mb`` resource (a ``run:`` rule no ``conda:``: it runs in
  the Snakemake process, where Snakemake allows none).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV_DIR = REPO / "envs"
SRC = REPO / "src"
#: the workflow's main file
SNAKEFILE = REPO / "Snakefile"
EXPECTED_ENVS = ("preprocess", "train", "evaluate")
PYTHON_SERIES = "3.11"

#: import name -> distribution, for modules the running interpreter does not have
IMPORT_TO_DIST_FALLBACK = {
    "SimpleITK": "simpleitk",
    "ants": "antspyx",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "torch": "torch",
    "torchvision": "torchvision",
    "cv2": "opencv-python",
    "nipype": "nipype",
    "nibabel": "nibabel",
    "pydicom": "pydicom",
    "jsonschema": "jsonschema",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "snakemake": "snakemake",
    "pygments": "pygments",
}
#: conda package names that are another name of a PyPI distribution
DIST_ALIASES = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "matplotlib-base": "matplotlib",
    "py-opencv": "opencv-python",
}
#: characters that make a version spec a range or a pattern rather than one version
LOOSE = re.compile(r"[*<>!~,|^ ]")


# --------------------------------------------------------------------------------
# helpers (also exercised on synthetic input below)
# --------------------------------------------------------------------------------
def normalise(name: str) -> str:
    """Distribution name in one spelling: lower case, ``-`` for ``_``/``.``, aliases folded."""
    n = re.sub(r"[-_.]+", "-", name.strip().lower())
    return DIST_ALIASES.get(n, n)


def parse_conda_spec(spec: str) -> tuple[str, str | None]:
    """``[channel::]name[=|==]version[=build]`` -> (normalised name, version or None)."""
    spec = spec.split("::")[-1].strip()
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:(==|=)\s*(\S+))?", spec)
    if m is None:
        # a range such as "numpy >=2" or "numpy<3"
        name = re.split(r"[\s<>=!~]", spec, maxsplit=1)[0]
        return normalise(name), None
    name, _, rest = m.groups()
    if rest is None:
        return normalise(name), None
    version = rest.split("=")[0]  # drop a build string
    return normalise(name), None if LOOSE.search(version) else version


def parse_pip_spec(spec: str) -> tuple[str, str | None] | None:
    """``name[extras]==version`` -> (normalised name, version or None); None for option lines."""
    spec = spec.split("#")[0].strip()
    if not spec or spec.startswith("-"):
        return None
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;,]+)(\s*;.*)?", spec)
    if m is None or LOOSE.search(m.group(3)):
        name = re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]
        return normalise(name), None
    return normalise(m.group(1)), m.group(3)


def env_packages(env: Mapping) -> dict[str, str | None]:
    """All packages of an env (conda and pip sections) -> pinned version (None: not exact)."""
    out: dict[str, str | None] = {}
    for dep in env.get("dependencies") or []:
        if isinstance(dep, str):
            name, version = parse_conda_spec(dep)
            out[name] = version
        elif isinstance(dep, Mapping) and "pip" in dep:
            for line in dep["pip"] or []:
                parsed = parse_pip_spec(str(line))
                if parsed is not None:
                    out[parsed[0]] = parsed[1]
        else:
            raise ValueError(f"unexpected dependency entry {dep!r}")
    return out


def pyproject_pins(path: Path = REPO / "pyproject.toml") -> dict[str, str | None]:
    """pyproject.toml [project] dependencies (+ optional ones) -> pinned version."""
    project = tomllib.loads(path.read_text())["project"]
    specs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    out: dict[str, str | None] = {}
    for spec in specs:
        parsed = parse_pip_spec(spec)
        if parsed:
            out[parsed[0]] = parsed[1]
    return out


def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _guarded_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` or ``try/except ImportError``."""
    skip: set[int] = set()

    def mark(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
                mark(node.body)
        elif isinstance(node, ast.Try):
            caught = set()
            for h in node.handlers:
                if h.type is not None:
                    caught |= set(re.findall(r"\w+", ast.unparse(h.type)))
            if caught & {"ImportError", "ModuleNotFoundError"}:
                mark(node.body)
    return skip


def import_closure(
    roots: Iterable[str],
    src: Path = SRC,
    package: str = "ct2mr",
    no_string_refs: frozenset[str] = frozenset({"ct2mr.cli"}),
) -> set[str]:
    """Top-level third-party import names reachable from ``roots`` through ``package``'s modules.

    Follows absolute and relative imports of ``package`` modules (and the
    ``__init__`` of every package on the way), plus string constants that name an
    existing ``package`` module (``importlib.import_module("ct2mr.x")`` tables),
    except in ``no_string_refs``: ``ct2mr.cli`` names every command's module but
    imports only the one it runs (pass that one in ``roots``).
    Standard-library names and guarded imports (see module docstring) are skipped.
    """
    stdlib = set(sys.stdlib_module_names)
    seen: set[str] = set()
    third: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # parent packages' __init__ run first
            todo.append(".".join(parts[:i]))
        path = _module_file(module, src)
        if path is None:
            raise FileNotFoundError(f"module {module} not found under {src}")
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _guarded_nodes(tree)

        def visit(name: str) -> None:
            top = name.split(".")[0]
            if top == package:
                # longest prefix that is a module of ours
                bits = name.split(".")
                for k in range(len(bits), 0, -1):
                    if _module_file(".".join(bits[:k]), src):
                        todo.append(".".join(bits[:k]))
                        break
            elif top not in stdlib and top != "__future__":
                third.add(top)

        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and id(node) not in skip:
                for alias in node.names:
                    visit(alias.name)
            elif isinstance(node, ast.ImportFrom) and id(node) not in skip:
                if node.level:
                    pkg_parts = parts if is_pkg else parts[:-1]
                    base_parts = pkg_parts[: len(pkg_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                visit(base)
                if base.split(".")[0] == package:
                    for alias in node.names:  # `from ct2mr import atomic`: a submodule
                        if _module_file(f"{base}.{alias.name}", src):
                            todo.append(f"{base}.{alias.name}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and module not in no_string_refs:
                if re.fullmatch(rf"{package}(\.\w+)+", node.value) and _module_file(node.value, src):
                    todo.append(node.value)
    return third


@functools.lru_cache(maxsize=1)
def _installed_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def import_to_dist(name: str) -> str:
    """Normalised distribution name providing top-level import ``name``."""
    dists = _installed_distributions().get(name)
    if dists:
        return normalise(dists[0])
    return normalise(IMPORT_TO_DIST_FALLBACK.get(name, name))


def missing_from_env(imports: Iterable[str], env: Mapping) -> set[str]:
    """Distributions needed by ``imports`` that ``env`` does not list."""
    have = set(env_packages(env))
    return {import_to_dist(i) for i in imports} - have


_RULE_DUMP = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
snakefile, workdir = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=snakefile, workdir=workdir)
    for r in wf._workflow.rules:
        info = r.ruleinfo
        conda = None
        if r.conda_env is not None:
            conda = str(r.conda_env)
            if not callable(r.conda_env) and not Path(conda).is_absolute():
                conda = str((Path(str(r.basedir)) / conda).resolve())
        res = info.resources[1] if info.resources else {}
        rows.append(dict(
            name=r.name, snakefile=str(r.snakefile), lineno=r.lineno,
            runs=bool(r.is_shell or r.is_run or r.is_script or r.is_notebook or r.is_wrapper),
            in_snakemake=bool(r.is_run),
            shell=r.shellcmd if r.is_shell else None,
            conda=conda, log=[str(x) for x in r.log], benchmark=str(r.benchmark) if r.benchmark else None,
            threads=None if info.threads is None else repr(info.threads),
            resources=sorted(res),
        ))
print("RULES_JSON=" + json.dumps(rows))
"""


def workflow_rules(snakefile: Path = SNAKEFILE, workdir: Path = REPO) -> list[dict]:
    """Rules of a workflow as dicts (name, shell, conda (absolute path), log, benchmark,
    threads (repr or None), resources (declared names), runs)."""
    res = subprocess.run(
        [sys.executable, "-c", _RULE_DUMP, str(snakefile), str(workdir)],
        capture_output=True, text=True, timeout=120, cwd=workdir,
    )
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RULES_JSON=")), None)
    if res.returncode != 0 or line is None:
        raise AssertionError(f"could not load {snakefile}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(line.removeprefix("RULES_JSON="))


def ct2mr_commands(shell: str | None) -> list[str]:
    """Sub-commands in ``python -m ct2mr <command>`` calls of a shell command."""
    found = []
    for m in re.finditer(r"-m\s+ct2mr\s+(.*)", shell or ""):
        # skip global options and their values (`--threads {threads}`, `-v`)
        cmd = next((t for t in m.group(1).split() if re.fullmatch(r"[a-z][a-z0-9-]*", t)), None)
        if cmd:
            found.append(cmd)
    return found


def load_env(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_files() -> list[Path]:
    return sorted(ENV_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------------
# the env files
# --------------------------------------------------------------------------------
def test_expected_env_files_exist() -> None:
    names = {p.stem for p in env_files()}
    assert set(EXPECTED_ENVS) <= names, f"missing env files: {set(EXPECTED_ENVS) - names}"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_file_structure(path: Path) -> None:
    env = load_env(path)
    assert isinstance(env, dict), f"{path.name}: not a mapping"
    assert {"name", "channels", "dependencies"} <= set(env), f"{path.name}: keys {sorted(env)}"
    assert isinstance(env["name"], str) and env["name"].startswith("ct2mr-")
    assert env["channels"][0] == "conda-forge", f"{path.name}: conda-forge must come first"
    assert "defaults" not in env["channels"], f"{path.name}: the defaults channel is not free for all users"
    pkgs = env_packages(env)
    assert "python" in pkgs, f"{path.name}: python is not listed"
    assert (pkgs["python"] or "").startswith(PYTHON_SERIES + "."), f"{path.name}: python {pkgs['python']}"
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    if pip_lists:
        assert "pip" in pkgs, f"{path.name}: a pip: section needs pip itself in the conda dependencies"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_every_package_pinned_exactly(path: Path) -> None:
    loose = {n for n, v in env_packages(load_env(path)).items() if v is None}
    assert not loose, f"{path.name}: packages without one exact version: {sorted(loose)}"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_versions_agree_with_pyproject(path: Path) -> None:
    pins = pyproject_pins()
    env = env_packages(load_env(path))
    differ = {n: (v, pins[n]) for n, v in env.items() if n in pins and v != pins[n]}
    assert not differ, f"{path.name}: (env, pyproject) versions differ: {differ}"


def test_pin_parsers_known_answers() -> None:
    assert parse_conda_spec("numpy=2.3.5") == ("numpy", "2.3.5")
    assert parse_conda_spec("conda-forge::pytorch==2.13.0=cuda126_h1") == ("torch", "2.13.0")
    assert parse_conda_spec("SimpleITK=2.5.7") == ("simpleitk", "2.5.7")
    assert parse_conda_spec("numpy") == ("numpy", None)
    assert parse_conda_spec("numpy=2.*") == ("numpy", None)
    assert parse_conda_spec("numpy>=2") == ("numpy", None)
    assert parse_conda_spec("numpy >=2,<3") == ("numpy", None)
    assert parse_pip_spec("PyYAML==6.0.3") == ("pyyaml", "6.0.3")
    assert parse_pip_spec("scikit_image==0.26.0") == ("scikit-image", "0.26.0")
    assert parse_pip_spec("torch>=2") == ("torch", None)
    assert parse_pip_spec("antspyx") == ("antspyx", None)
    assert ct2mr_commands("python -m ct2mr --threads {threads} train --variant x > {log}") == ["train"]
    assert ct2mr_commands("python -m ct2mr -v skull-mask --ct {input}") == ["skull-mask"]
    assert ct2mr_commands("echo hi") == []
    assert parse_pip_spec("--index-url https://example.invalid/simple") is None
    env = {"dependencies": ["python=3.11.14", "pip=25.3", {"pip": ["numpy==2.3.5", "scipy~=1.15"]}]}
    assert env_packages(env) == {"python": "3.11.14", "pip": "25.3", "numpy": "2.3.5", "scipy": None}


# --------------------------------------------------------------------------------
# import analysis, on a synthetic package with a known answer
# --------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    _write(src / "ct2mr" / "__init__.py", '"""pkg"""\nimport logging\n')
    _write(src / "ct2mr" / "cli.py", "import argparse\nimport importlib\nCOMMANDS = {'o': ('ct2mr.other', 'help')}\n")
    _write(src / "ct2mr" / "stage.py", (
        "from __future__ import annotations\n"
        "import os, json\n"
        "from typing import TYPE_CHECKING\n"
        "import numpy as np\n"
        "from . import helpers\n"
        "from ct2mr.sub import deep\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "try:\n    import fancy_optional\nexcept ImportError:\n    fancy_optional = None\n"
        "BACKENDS = {'x': 'ct2mr.sub.plugin'}\n"
        "def run():\n    import yaml\n    return yaml\n"
    ))
    _write(src / "ct2mr" / "helpers.py", "import SimpleITK as sitk\n")
    _write(src / "ct2mr" / "sub" / "__init__.py", "")
    _write(src / "ct2mr" / "sub" / "deep.py", "from ..helpers import *\nfrom skimage import morphology\n")
    _write(src / "ct2mr" / "sub" / "plugin.py", "import ants\n")
    _write(src / "ct2mr" / "other.py", "import torch\n")  # not reachable from stage
    return src


def test_import_closure_known_answer(fake_src: Path) -> None:
    got = import_closure(["ct2mr.cli", "ct2mr.stage"], src=fake_src)
    assert got == {"numpy", "yaml", "SimpleITK", "skimage", "ants"}


def test_import_to_dist_known_answers() -> None:
    assert import_to_dist("yaml") == "pyyaml"
    assert import_to_dist("skimage") == "scikit-image"
    assert import_to_dist("SimpleITK") == "simpleitk"
    assert import_to_dist("ants") == "antspyx"
    assert import_to_dist("PIL") == "pillow"
    assert import_to_dist("torch") == "torch"


def test_env_lacking_an_import_is_caught(fake_src: Path) -> None:
    """Adding ``import yaml`` to a stage whose env lacks pyyaml must be reported."""
    imports = import_closure(["ct2mr.stage"], src=fake_src)
    env_ok = {"dependencies": ["python=3.11.14", "pip=25.3", {"pip": [
        "numpy==2.3.5", "PyYAML==6.0.3", "SimpleITK==2.5.7", "scikit-image==0.26.0", "antspyx==0.6.3"]}]}
    assert missing_from_env(imports, env_ok) == set()
    env_no_yaml = {"dependencies": ["python=3.11.14", "pip=25.3", {"pip": [
        "numpy==2.3.5", "SimpleITK==2.5.7", "scikit-image==0.26.0", "antspyx==0.6.3"]}]}
    assert missing_from_env(imports, env_no_yaml) == {"pyyaml"}


def test_real_envs_cover_real_stage_modules() -> None:
    """Each env covers the modules its family runs, independent of the rule files.

    (The same check as the workflow test below, driven by the family table in
    DEVELOPING.md instead of the rules.)
    """
    from ct2mr.cli import COMMANDS

    families = {
        "preprocess": ["phantom", "ingest", "resample", "skull-mask", "register", "window",
                       "slices", "slices-png", "slices-pool", "prepare", "normalise-slices"],
        "train": ["train"],
        "evaluate": ["synthesize", "evaluate", "figures"],
    }
    problems = {}
    for env_name, commands in families.items():
        env = load_env(ENV_DIR / f"{env_name}.yaml")
        for cmd in commands:
            module = COMMANDS[cmd][0]
            assert _module_file(module, SRC) is not None, f"ct2mr {cmd}: module {module} not found"
            missing = missing_from_env(import_closure(["ct2mr.__main__", "ct2mr.cli", module]), env)
            if missing:
                problems[f"{env_name}/{cmd}"] = sorted(missing)
    assert not problems, f"env lacks distributions the command imports: {problems}"


# --------------------------------------------------------------------------------
# the workflow's rules
# --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return workflow_rules()


def test_workflow_has_rules_calling_ct2mr(rules: list[dict]) -> None:
    called = {c for r in rules for c in ct2mr_commands(r["shell"])}
    assert {"prepare", "register", "normalise-slices", "train", "evaluate"} <= called, f"commands called: {sorted(called)}"


def test_every_rule_declares_log_benchmark_conda_threads_mem(rules: list[dict]) -> None:
    problems = {}
    for r in rules:
        if not r["runs"]:
            continue  # target-only rules such as `all`
        # a `run:` rule executes inside the Snakemake process, where Snakemake allows no conda env
        needed = ("log", "benchmark", "threads") if r["in_snakemake"] else ("log", "benchmark", "conda", "threads")
        lacks = [k for k in needed if not r[k]]
        if "mem_mb" not in r["resources"]:
            lacks.append("resources: mem_mb")
        if lacks:
            problems[f"{r['name']} ({Path(r['snakefile']).name}:{r['lineno']})"] = lacks
    assert not problems, f"rules lacking declarations: {problems}"


def test_rules_use_env_files_from_envs(rules: list[dict]) -> None:
    used = {Path(r["conda"]) for r in rules if r["conda"]}
    outside = {str(p) for p in used if p.parent != ENV_DIR.resolve() or not p.is_file()}
    assert not outside, f"conda envs that are not files in envs/: {outside}"
    unused = {p.name for p in env_files()} - {p.name for p in used}
    assert not unused, f"env files no rule uses: {unused}"


def test_every_rule_env_covers_its_imports(rules: list[dict]) -> None:
    from ct2mr.cli import COMMANDS

    problems = {}
    for r in rules:
        for cmd in ct2mr_commands(r["shell"]):
            assert cmd in COMMANDS, f"rule {r['name']} calls unknown command {cmd!r}"
            assert r["conda"], f"rule {r['name']} runs ct2mr {cmd} without a conda env"
            module = COMMANDS[cmd][0]
            imports = import_closure(["ct2mr.__main__", "ct2mr.cli", module])
            missing = missing_from_env(imports, load_env(Path(r["conda"])))
            if missing:
                problems[f"{r['name']} -> {Path(r['conda']).name}"] = sorted(missing)
    assert not problems, f"envs lack distributions their rules import: {problems}"
