"""TensorBoard events of a training run, and training without the tensorboard package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ct2mr.training.settings import PRESETS, settings_from_dict
from ct2mr.training.train import train
from tests.test_train import make_slices


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("tb_slices")
    return [
        make_slices(d / "p1.npz", "paired_train", size=32, seed=1),
        make_slices(d / "c1.npz", "ct_only", size=32, seed=2),
        make_slices(d / "m1.npz", "mr_only", size=32, seed=3),
    ]


def read_events(folder: Path):  # noqa: ANN201
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("variant", ["paired", "mrgan"])
def test_event_files_hold_losses_lr_and_images(variant: str, files: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    s = settings_from_dict({**PRESETS["tiny"], "tensorboard": True})  # 8 its, log_every 2, image_log_every 4
    out = tmp_path / variant
    train(s, files, out, variant)
    tb = out / "tensorboard"
    assert list(tb.glob("events.out.tfevents.*"))
    acc = read_events(tb)
    tags = set(acc.Tags()["scalars"])
    expected = {"lr", "loss/G_total", "speed/iterations_per_s"}
    expected |= {"loss/adv_mr_paired", "loss/l1_mr_paired", "loss/dis_mr_paired", "loss/D_total"}
    if variant == "mrgan":
        expected |= {"loss/cyc_ct_unpaired", "loss/adv_ct_unpaired", "loss/l1_ct_paired", "loss/dis_ct_unpaired"}
    assert expected <= tags, expected - tags
    steps = [e.step for e in acc.Scalars("loss/G_total")]
    assert steps == [2, 4, 6, 8]
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([2e-4, 2e-4, 1.5e-4, 5e-5], abs=1e-9)  # lr of the last iteration of each interval
    images = set(acc.Tags()["images"])
    assert "images/translation" in images
    assert ("images/cycles" in images) == (variant == "mrgan")
    trans = acc.Images("images/translation")
    assert [e.step for e in trans] == [4, 8]
    # CT | Syn_MR | MR, 32 px each with 1 px separators
    assert (trans[-1].width, trans[-1].height) == (3 * 32 + 2, 32)


def test_resumed_run_continues_the_same_event_folder(files: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    s = settings_from_dict({**PRESETS["tiny"], "tensorboard": True})
    out = tmp_path / "paired"
    train(s, files, out, "paired", max_iterations_this_run=4)
    train(s, files, out, "paired")
    acc = read_events(out / "tensorboard")
    assert [e.step for e in acc.Scalars("loss/G_total")] == [2, 4, 6, 8]


def test_settings_can_turn_tensorboard_off(files: list[Path], tmp_path: Path) -> None:
    assert PRESETS["tiny"]["tensorboard"] is False  # test preset: run-to-run comparisons need no event files
    s = settings_from_dict({**PRESETS["tiny"], "tensorboard": False})
    train(s, files, tmp_path / "m", "paired")
    assert not (tmp_path / "m" / "tensorboard").exists()
    assert (tmp_path / "m" / "syn_mr.pt").is_file()


def test_training_works_without_tensorboard_installed(files: list[Path], tmp_path: Path, repo_root: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        for name in ("tensorboard", "torch.utils.tensorboard"):
            sys.modules[name] = None  # import of it raises ImportError
        from pathlib import Path
        from ct2mr.training.train import train
        from ct2mr.training.settings import PRESETS, settings_from_dict
        from ct2mr.training.tensorboard_log import tensorboard_available
        assert not tensorboard_available()
        out = Path({str(tmp_path / 'm')!r})
        train(settings_from_dict({{**PRESETS["tiny"], "tensorboard": True}}), {[str(f) for f in files]!r}, out, "mrgan")
        assert (out / "syn_mr.pt").is_file() and not (out / "tensorboard").exists()
        print("ok")
        """
    )
    env = {"PYTHONPATH": str(repo_root / "src"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
