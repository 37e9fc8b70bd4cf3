"""Every writer under a full disk: a one-line OutputError, no file under the final name, no temp file.

A full disk is simulated with ``RLIMIT_FSIZE`` in a subprocess: Python ignores
SIGXFSZ, so a write past the limit fails with ``EFBIG`` -- or, for libraries that
hide it (SimpleITK's NIfTI writer, ITK's text transform writer), leaves a short
file that only the read-back check in :mod:`ct2mr.io.atomic` can catch.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: prints the OutputError on one line and exits 3; any other exception is a traceback (exit 1)
HARNESS = """
import sys
from pathlib import Path
from ct2mr.errors import OutputError
dest = Path(sys.argv[1])
{setup}
try:
{write}
except OutputError as exc:
    print("OUTPUTERROR", exc)
    sys.exit(3)
print("WROTE", dest)
"""

#: setup code: a 32^3 float32 image ``img`` (random, fixed seed)
FLOAT_IMAGE = ("import numpy as np, SimpleITK as sitk\n"
               "img = sitk.GetImageFromArray(np.random.default_rng(0).random((32, 32, 32)).astype('f4'))")
#: name -> (file-size limit in bytes, destination file name, setup code, write code)
WRITERS: dict[str, tuple[int, str, str, str]] = {
    "write_image .nii.gz": (4096, "img.nii.gz", FLOAT_IMAGE,
                            "from ct2mr.io.imageio import write_image\nwrite_image(img, dest)"),
    "write_image .nii": (4096, "img.nii", FLOAT_IMAGE,
                         "from ct2mr.io.imageio import write_image\nwrite_image(img, dest)"),
    "write_image .mha": (4096, "img.mha", FLOAT_IMAGE,
                         "from ct2mr.io.imageio import write_image\nwrite_image(img, dest)"),
    "write_image .nrrd": (4096, "img.nrrd", FLOAT_IMAGE,
                          "from ct2mr.io.imageio import write_image\nwrite_image(img, dest)"),
    "write_dicom_series": (4096, "series", "import numpy as np, SimpleITK as sitk\n"
                           "img = sitk.GetImageFromArray((np.random.default_rng(0).random((3, 64, 64)) * 1000).astype('i2'))",
                           "from ct2mr.io.imageio import write_dicom_series\nwrite_dicom_series(img, dest, uid_seed='x')"),
    "write_scratch_image (registration backends)": (
        4096, "scratch.nii", FLOAT_IMAGE,
        "from ct2mr.io.imageio import write_scratch_image\nwrite_scratch_image(img, dest)"),
    "register.write_transform (.tfm)": (
        100, "transform.tfm", "import SimpleITK as sitk\nt = sitk.AffineTransform([1.1, 0.1, 0, 0, 0.9, 0.2, 0, 0, 1], [1.5, 2, 3])",
        "from ct2mr.preprocess.register import write_transform\nwrite_transform(t, dest)"),
    "slices.save_slices (.npz)": (
        4096, "P01.npz", "import sys; sys.path.insert(0, '.'); from tests.test_synthesize import fake_slices\nd = fake_slices(3)",
        "from ct2mr.preprocess.slices import save_slices\nsave_slices(dest, d)"),
    "synthesize.write_slices_npz": (
        4096, "synth.npz", "import numpy as np\na = {'mr': np.random.default_rng(0).integers(0, 255, (3, 64, 64)).astype('u1')}",
        "from ct2mr.inference.synthesize import write_slices_npz\nwrite_slices_npz(dest, a)"),
    "figures png": (
        4096, "fig.png", "import numpy as np\nfrom ct2mr.evaluation.figures import _figure\nfig = _figure(4, 4)\n"
        "fig.add_subplot().imshow(np.random.default_rng(0).random((200, 200)))",
        "from ct2mr.evaluation.figures import _save\n_save(fig, dest)"),
    "qa_images png": (
        4096, "qa.png", "import numpy as np\nimport matplotlib; matplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig = plt.figure()\nfig.add_subplot().imshow(np.random.default_rng(0).random((200, 200)))",
        "from ct2mr.preprocess.qa_images import _save\n_save(fig, dest, dpi=100)"),
    "train.plot_losses png": (
        4096, "loss_curve.png", "rows = [{'iteration': i, 'G_total': 1.0 / (i + 1), 'D_total': 0.5, 'lr': 1e-4, 'seconds': 0.1}"
        " for i in range(50)]",
        "from ct2mr.training.loss_log import plot_losses\nplot_losses(dest, ['G_total', 'D_total'], rows, 'losses')"),
    "train._save_state (weights .pt)": (
        4096, "syn_mr.pt", "import torch\nnet = torch.nn.Linear(100, 100)",
        "from ct2mr.training.train import _save_state\n_save_state(dest, net)"),
    "model_folder.save_torch (checkpoint.pt)": (
        4096, "checkpoint.pt", "import torch\nstate = {'trainer': {'w': torch.randn(10000)}, 'iteration': 3}",
        "from ct2mr.models.model_folder import save_torch\nsave_torch(state, dest, suffix='.pt.tmp')"),
    "model_folder.save_model_folder": (
        4096, "model/syn_mr.pt", "import torch\nnet = torch.nn.Linear(100, 100)",
        "from ct2mr.models.model_folder import save_model_folder\nsave_model_folder(dest.parent, net, {}, 'paired')"),
    "atomic.write_text (tsv, html, logs of results)": (
        4096, "table.tsv", "text = 'a\\tb\\n' * 10000", "from ct2mr.io.atomic import write_text\nwrite_text(dest, text)"),
    "atomic.write_json": (
        4096, "qa.json", "obj = {f'k{i}': i for i in range(2000)}", "from ct2mr.io.atomic import write_json\nwrite_json(dest, obj)"),
}


def _limit(nbytes: int):  # noqa: ANN202
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"}


def _run_writer(tmp_path: Path, limit: int | None, name: str) -> subprocess.CompletedProcess[str]:
    _, dest_name, setup, write = WRITERS[name]
    code = HARNESS.format(setup=setup, write=textwrap.indent(write, "    "))
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out" / dest_name)], cwd=REPO, env=_env(),
        capture_output=True, text=True, timeout=300, preexec_fn=None if limit is None else _limit(limit),
    )


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_under_a_file_size_limit_fails_cleanly(tmp_path: Path, name: str) -> None:
    limit, dest_name, *_ = WRITERS[name]
    res = _run_writer(tmp_path, limit, name)
    out = tmp_path / "out"
    assert res.returncode == 3, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("OUTPUTERROR")]
    assert len(lines) == 1 and dest_name in lines[0], res.stdout
    assert not (out / dest_name).exists()
    leftovers = [p for p in out.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers  # no temp file either


@pytest.mark.parametrize("name", ["write_image .nii.gz", "register.write_transform (.tfm)", "slices.save_slices (.npz)",
                                  "train.plot_losses png", "model_folder.save_torch (checkpoint.pt)", "write_dicom_series"])
def test_the_same_writers_succeed_without_a_limit(tmp_path: Path, name: str) -> None:
    """The verify step accepts a complete file (so the failure above is the limit, not the check)."""
    res = _run_writer(tmp_path, None, name)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / WRITERS[name][1]).exists()


def _cli_under_limit(args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ct2mr", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=600, preexec_fn=_limit(limit))


def _error_lines(stderr: str, command: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"ct2mr {command}: error:")]


def test_ingest_under_ulimit_exits_nonzero_and_leaves_no_file(tmp_path: Path) -> None:
    """Issue 8 item 3: `ulimit -f 100` (102400 bytes); ingest used to exit 0 with a truncated .nii.gz."""
    import numpy as np
    import SimpleITK as sitk

    src = tmp_path / "ct.mha"
    rng = np.random.default_rng(0)
    # a head-like CT (brain ~40 HU, skull 1200 HU, air -1000 HU, so it passes ingest's HU check on
    # the head) with noise, so its compressed output is far over the 100 KB limit
    z, y, x = np.ogrid[:40, :128, :128]
    r = np.hypot(y - 64, x - 64)
    arr = np.where(r < 50, 40, np.where(r < 56, 1200, -1000)) + rng.integers(-20, 21, (40, 128, 128))
    img = sitk.GetImageFromArray(arr.astype(np.int16))
    img.SetSpacing((0.9, 0.9, 2.5))
    sitk.WriteImage(img, str(src), useCompression=False)  # 1.3 MB: readable under the limit, not writable
    out = tmp_path / "out" / "ct_ingested.nii.gz"
    res = _cli_under_limit(["ingest", "--modality", "ct", "--input", str(src), "--output", str(out)], 100 * 1024)
    assert res.returncode == 3, res.stderr
    lines = _error_lines(res.stderr, "ingest")
    assert len(lines) == 1 and str(out) in lines[0], res.stderr
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_predict_under_ulimit_leaves_no_zero_byte_file(tmp_path: Path) -> None:
    """Issue 8 item 3: predict used to leave a 0-byte file under `ulimit -f 100`."""
    import SimpleITK as sitk

    from ct2mr.models.model_folder import make_untrained_model
    from ct2mr.phantom.patient import PhantomParams, make_patient

    ct = make_patient("P01", 1, PhantomParams(ct_spacing_mm=(1.6, 1.6, 3.0), fov_mm=(200.0, 230.0, 100.0))).ct
    src = tmp_path / "ct.nii"
    sitk.WriteImage(ct, str(src))
    model = make_untrained_model(tmp_path / "mrgan", "mrgan", image_size=32, ngf=4, n_blocks=1)
    out = tmp_path / "out" / "synth_mr.nii.gz"
    out.parent.mkdir()
    limit = 20 * 1024  # the synthetic MR (uint8, gzip) is larger; the model and CT are read, not written
    res = _cli_under_limit(["predict", "--model", str(model), "--ct", str(src), "--out", str(out), "--device", "cpu"],
                           limit)
    assert res.returncode == 3, res.stderr
    lines = _error_lines(res.stderr, "predict")
    assert len(lines) == 1 and str(out) in lines[0], res.stderr
    assert not out.exists() and list(out.parent.iterdir()) == []
