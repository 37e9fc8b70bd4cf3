"""Docs that run: every command in README.md's code blocks is exercised here.

The commands are read from README.md's ```bash blocks (one per line, comments
stripped). Each must match exactly one entry of :data:`EXERCISES`, which says how
it is exercised; a command no entry knows fails
``test_every_readme_command_has_an_exercise``, so a new README command comes with
its coverage. How:

* ``snakemake ...``: on a copy of the finished tiny run (``tiny_run``), with the
  repo's Snakefile and the tiny config (``--configfile`` last). Queries
  (``--list-changes``, ``--summary``, ``--report``) run as written; anything that
  would run jobs gets ``-n`` (a dry run: the full run is what ``tiny_run`` and
  ``make demo`` do) and must find nothing to do on the finished run.
  ``--profile profiles/X`` uses the repo's profile. ``--use-conda`` is kept where
  ``conda`` is installed and dropped otherwise (the envs themselves are checked
  by tests/test_envs.py).
* ``.venv/bin/ct2mr check-config``: run as written, from the project root.
* ``.venv/bin/ct2mr predict``: run for real on the tiny run's model, with a DICOM
  CT of the tiny cohort in place of ``path/to/ct_dicom_folder``.
* ``make demo`` / ``make test``: ``make -n`` (what the target would run; the full
  targets take minutes and rebuild nothing here).
* The GPU install lines: their pins must be the project's (pyproject.toml) and the
  module they call must exist; they need the network, so they are not run.

Also: no Snakemake option in the README is unknown to the installed Snakemake
(``--reason`` is gone in Snakemake 9), and the rerun table in README.md is
``ct2mr.pipeline.rerun_scope.markdown_table()``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ct2mr.pipeline.rerun_scope import markdown_table
from tests.workflow_helpers import REPO, SNAKEFILE, SNAKEMAKE

README = REPO / "README.md"

#: (regex matched against a whole README command, exercise name)
EXERCISES: list[tuple[str, str]] = [
    (r"snakemake(?: .*)?", "snakemake"),
    (r"\.venv/bin/ct2mr check-config --config config/config\.yaml(?: --data)?", "check_config"),
    (r"\.venv/bin/ct2mr predict --model results/models/\S+ --ct path/to/ct_dicom_folder --out \S+\.nii\.gz", "predict"),
    (r"make (?:demo|test)", "make_dry_run"),
    (r"python3 -m venv \.venv", "venv_module"),
    (r"\.venv/bin/pip install torch==\S+ --index-url https://download\.pytorch\.org/whl/\w+", "torch_pin"),
    (r'\.venv/bin/pip install -e "\.\[\w+\]" && touch \.venv/\.installed', "project_extras"),
    (r"tensorboard --logdir results/models", "tensorboard"),
    (r"\.venv/bin/python bench/prep_gpu_data\.py", "prep_gpu_data"),
    (r'PYTHONPATH=src python bench/gpu_check\.py --out "\$OUT"', "gpu_check"),
]


def readme_commands(text: str | None = None) -> list[str]:
    """The commands of the ```bash / ```sh blocks of README.md (comments and blank lines dropped)."""
    text = README.read_text(encoding="utf-8") if text is None else text
    commands = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.M | re.S):
        pending = ""
        for line in block.splitlines():
            line = pending + line
            pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            cmd = re.sub(r"\s+#.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                commands.append(re.sub(r"\s+", " ", cmd))
    return commands


def exercise_of(command: str) -> list[str]:
    return [name for pattern, name in EXERCISES if re.fullmatch(pattern, command)]


def test_readme_commands_known_answer() -> None:
    text = "x\n```bash\nsnakemake -n   # why\n# a comment\n\nmake \\\n  demo\n```\n```\nnot a command\n```\n"
    assert readme_commands(text) == ["snakemake -n", "make demo"]
    assert exercise_of("snakemake -n") == ["snakemake"]
    assert exercise_of("rm -rf results") == []


def test_every_readme_command_has_an_exercise() -> None:
    commands = readme_commands()
    assert len(commands) >= 10, commands
    unknown = [c for c in commands if len(exercise_of(c)) != 1]
    assert not unknown, (
        "README.md commands that no test exercises (add a pattern and an exercise to EXERCISES in "
        "tests/test_docs.py): " + "; ".join(unknown)
    )


def test_readme_snakemake_options_exist() -> None:
    help_text = subprocess.run([*SNAKEMAKE, "--help"], capture_output=True, text=True, timeout=300).stdout
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", help_text))
    assert "--list-changes" in options and "--rerun-triggers" in options
    used = set()
    for cmd in readme_commands() + re.findall(r"`(snakemake [^`]*)`", README.read_text(encoding="utf-8")):
        if cmd.startswith(("snakemake", ".venv/bin/snakemake")):
            used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", cmd))
    assert used and not used - options, f"README uses Snakemake options this Snakemake lacks: {sorted(used - options)}"


def test_readme_rerun_table_is_the_code_table() -> None:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- rerun-scope[^>]*-->\n(.*?)\n<!-- /rerun-scope -->", text, re.S)
    assert m, "README.md lost its rerun-scope table markers"
    assert m.group(1).strip() == markdown_table(), (
        "README.md's rerun table differs from ct2mr.pipeline.rerun_scope.markdown_table(): paste its output "
        "between the rerun-scope markers"
    )


# --------------------------------------------------------------------------- the exercises


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{shlex.join(cmd)} (in {cwd}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def exercise_snakemake(command: str, run: Path, tmp: Path) -> None:
    args = shlex.split(command)[1:]
    args = [str(REPO / a) if a.startswith("profiles/") else a for a in args]
    if "--use-conda" in args and shutil.which("conda") is None:
        args.remove("--use-conda")
    query = any(a in args for a in ("--list-changes", "--lc", "--summary", "--report"))
    if "--report" in args:
        i = args.index("--report")
        args[i + 1] = str(tmp / Path(args[i + 1]).name)
    if not query and "-n" not in args:
        args.append("-n")
    cmd = [*SNAKEMAKE, "--snakefile", str(SNAKEFILE), "--directory", str(run), *args,
           "--configfile", str(run / "config.yaml")]
    proc = _run(cmd, REPO)
    out = proc.stdout + proc.stderr
    if "--report" in args:
        assert (tmp / "report.html").stat().st_size > 10_000 or (tmp / "report.zip").is_file()
    elif "--list-changes" in args or "--lc" in args:
        assert proc.stdout.strip() == "", f"{command}: the finished run lists changes:\n{proc.stdout[:2000]}"
    elif "--summary" in args:
        assert re.search(r"results/models/mrgan/\S*syn_mr\.pt", proc.stdout), proc.stdout[:2000]
    else:
        assert "Nothing to be done" in out, f"{command}: the finished run plans jobs:\n{out[-3000:]}"


def exercise_check_config(command: str, run: Path, tmp: Path) -> None:
    proc = _run([sys.executable, "-m", "ct2mr", *shlex.split(command)[1:]], REPO)
    assert "valid" in proc.stdout + proc.stderr


def exercise_predict(command: str, run: Path, tmp: Path) -> None:
    import SimpleITK as sitk

    args = shlex.split(command.replace("path/to/ct_dicom_folder", "results/phantom/T2/ct_dicom"))[1:]
    out = run / args[args.index("--out") + 1]
    _run([sys.executable, "-m", "ct2mr", *args, "--config", "config.yaml"], run)
    from ct2mr.io.imageio import read_image

    image, ct = sitk.ReadImage(str(out)), read_image(run / "results/phantom/T2/ct_dicom")  # the CT's own grid
    assert image.GetSize() == ct.GetSize() and image.GetPixelID() == sitk.sitkUInt8


def exercise_make_dry_run(command: str, run: Path, tmp: Path) -> None:
    target = command.split()[1]
    proc = _run(["make", "-n", target], REPO)
    expected = {"demo": "--report results/report.html", "test": "pytest tests"}[target]
    assert expected in proc.stdout, proc.stdout


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def exercise_venv_module(command: str, run: Path, tmp: Path) -> None:
    _run(["python3", "-m", "venv", "--help"], REPO)


def exercise_torch_pin(command: str, run: Path, tmp: Path) -> None:
    pin = re.search(r"torch==(\S+)", command).group(1)
    assert f"torch=={pin}" in _pyproject()["project"]["dependencies"]
    assert f"torch=={pin}" in (REPO / "Makefile").read_text()


def exercise_project_extras(command: str, run: Path, tmp: Path) -> None:
    extra = re.search(r"\[(\w+)\]", command).group(1)
    assert extra in _pyproject()["project"]["optional-dependencies"]
    assert "STAMP  := $(VENV)/.installed" in (REPO / "Makefile").read_text()


def exercise_tensorboard(command: str, run: Path, tmp: Path) -> None:
    """TensorBoard reads the event files a training run writes under results/models (the tiny
    preset writes none, so one model folder's events are written here the way ``train`` does)."""
    from ct2mr.training.tensorboard_log import log_scalars, open_writer

    models = tmp / "tb" / "results" / "models"
    writer = open_writer(models / "paired" / "seed0" / "tensorboard")
    assert writer is not None, "tensorboard is not installed in the project venv"
    log_scalars(writer, {"G_total": 1.5, "lr": 2e-4}, 10)
    writer.close()
    exe = Path(sys.executable).parent / "tensorboard"
    args = shlex.split(command)[1:]
    proc = _run([str(exe), "--inspect", *args], tmp / "tb", timeout=120)
    assert "scalars" in proc.stdout and "num_steps            1" in proc.stdout, proc.stdout[-2000:]


def exercise_prep_gpu_data(command: str, run: Path, tmp: Path) -> None:
    """Prepares the GPU check's slices from ../shared/data (skipped without it) into a scratch folder."""
    if not (REPO.parent / "shared" / "data" / "harvard_ctmr").is_dir():
        return
    out = tmp / "gpu_data"
    _run([sys.executable, *shlex.split(command)[1:], "--out", str(out)], REPO)
    assert list(out.glob("train/*.npz")) and list(out.glob("test/*.npz")), "prep_gpu_data wrote no slices"


def exercise_gpu_check(command: str, run: Path, tmp: Path) -> None:
    """The GPU command line parses and writes its results; its CPU rehearsal (``--smoke``, every
    section) is tests/test_gpu_check.py: here only the environment section, on the CPU."""
    out = tmp / "gpu_out"
    args = shlex.split(command.replace('"$OUT"', str(out)))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, *args[2:], "--smoke", "--sections", "environment"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "gpu_check.json").is_file() and (out / "gpu_check.md").is_file()


# Slow (~19 s): every command of README.md's code blocks, run for real or as the dry run its
# exercise says (a real `ct2mr predict` on the tiny model included), on a copy of the tiny run.
@pytest.mark.slow
def test_readme_commands_run(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)
    done = []
    for command in readme_commands():
        (name,) = exercise_of(command)
        globals()[f"exercise_{name}"](command, run, tmp_path)
        done.append(command)
    assert len(done) == len(readme_commands())
