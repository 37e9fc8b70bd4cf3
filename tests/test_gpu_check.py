"""bench/gpu_check.py: the modules it needs import without the imaging stack, and the
whole check runs end to end on the CPU at tiny sizes (--smoke), without it too."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from ct2mr.training.train import VARIANTS

#: absent on the GPU machine (it has torch, numpy, scipy, pandas, matplotlib, PyYAML only)
BLOCKED = ("SimpleITK", "skimage", "ants", "nipype", "snakemake", "jsonschema", "pydicom", "tensorboard")

POISON = "import sys\nfor _m in {blocked!r}:\n    sys.modules[_m] = None  # 'import _m' raises ImportError\n"


def run_python(code: str, repo_root: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(repo_root / "src"), "PATH": "/usr/bin:/bin", "HOME": "/tmp", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout, cwd=repo_root)


def test_training_modules_import_without_the_imaging_stack(repo_root: Path) -> None:
    code = POISON.format(blocked=BLOCKED) + textwrap.dedent(
        """
        import importlib, runpy
        for mod in ("ct2mr.training.train", "ct2mr.training.data", "ct2mr.training.device_data", "ct2mr.training.augment", "ct2mr.training.losses",
                    "ct2mr.models", "ct2mr.models.model_folder", "ct2mr.models.apply", "ct2mr.inference.synthesize",
                    "ct2mr.training.tensorboard_log", "ct2mr.training.settings", "ct2mr.training.checkpoint",
                    "ct2mr.training.loss_log", "ct2mr.training.command", "ct2mr.training.roles",
                    "ct2mr.training.validation"):
            importlib.import_module(mod)
        runpy.run_path("bench/gpu_check.py", run_name="gpu_check_import_only")
        bad = [m for m in ("SimpleITK", "skimage", "ants", "nipype", "snakemake", "jsonschema") if sys.modules.get(m) is not None]
        print("ok", bad)
        """
    )
    res = run_python(code, repo_root)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok []")


def test_poisoning_really_blocks(repo_root: Path) -> None:
    # the check above can fail: a module that imports SimpleITK at the top does
    code = POISON.format(blocked=BLOCKED) + "import ct2mr.preprocess.slices\n"
    res = run_python(code, repo_root)
    assert res.returncode != 0 and "SimpleITK" in res.stderr


# Slow (~10 s): the whole GPU check script end to end on the CPU (`--smoke`: every variant and
# mode a few iterations, synthesis, kill-and-resume) with the imaging stack blocked: the
# rehearsal that device time depends on.
def test_smoke_run_without_the_imaging_stack(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = POISON.format(blocked=BLOCKED) + textwrap.dedent(
        f"""
        import runpy
        sys.argv = ["bench/gpu_check.py", "--smoke", "--out", {str(out)!r}]
        try:
            runpy.run_path("bench/gpu_check.py", run_name="__main__")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """
    )
    res = run_python(code, repo_root, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert (out / "gpu_check.md").read_text().startswith("# GPU check (CPU smoke rehearsal)")
    assert data["errors"] == []
    sec = data["sections"]
    assert sec["environment"]["has_SimpleITK"] is False and sec["environment"]["torch"]
    speed = {(r["variant"], r["mode"]): r for r in sec["training_speed"]}
    for v in VARIANTS:  # every variant of the trainer's table, measured in fp32
        r = speed[(v, "fp32 (TF32)")]
        assert r["iterations_timed"] == 5 and r["median_ms"] > 0 and r["losses_finite"]
        assert "skipped" in speed[(v, "bf16 + torch.compile")]  # CUDA only
    assert [r["batch"] for r in sec["synthesis"]] == [1, 16, 64]
    assert all(r["forward_ms_per_slice"] > 0 for r in sec["synthesis"])
    agree = {r["variant"]: r for r in sec["bf16_agreement"]}
    assert set(agree) == set(VARIANTS)
    assert all(r["agree"] and r["rel_diff_max"] == 0 for r in agree.values())  # CPU: both runs fp32
    assert sec["resume"]["pass"] is True and sec["resume"]["identical"] is True
    real = sec["real_data"]["variants"]
    assert set(real) == {"paired", "mrgan"}
    for r in real.values():
        assert r["iterations"] >= 1 and 0 <= r["heldout_mae"] <= 255
    assert (out / "gpu_check_paired_example.png").is_file()


def test_time_guard_keeps_partial_results(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = POISON.format(blocked=BLOCKED) + textwrap.dedent(
        f"""
        import runpy
        sys.argv = ["bench/gpu_check.py", "--smoke", "--out", {str(out)!r}, "--budget-s", "8",
                    "--sections", "environment,speed,synthesis"]
        try:
            runpy.run_path("bench/gpu_check.py", run_name="__main__")
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """
    )
    res = run_python(code, repo_root)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    assert data["meta"]["wall_s"] < 8 + 15  # stopped near its budget (start-up and one iteration of slack)
    assert "environment" in data["sections"]
    assert "resume" not in data["sections"]  # not asked for


def test_time_guards_nest(repo_root: Path) -> None:
    import importlib.util
    import time

    spec = importlib.util.spec_from_file_location("gpu_check_mod", repo_root / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    t0 = time.perf_counter()
    try:
        with mod.time_guard(0.6):
            with mod.time_guard(0.2):
                pass  # the inner guard ends early: the outer one must still fire
            while True:
                time.sleep(0.01)
    except mod.SectionTimeout:
        pass
    assert 0.5 <= time.perf_counter() - t0 < 3
