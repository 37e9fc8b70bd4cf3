"""A model folder ``results/models/{variant}/seed{seed}/``: save a trained model, load its generators.

A model folder is the output of one training run (one variant, one seed). A
variant folder ``results/models/{variant}/`` holding ``seed*/`` subfolders is not a
model: it is refused with a one-line error listing its seed folders (choosing one
silently would hide which model produced a result).

A model folder holds (see DEVELOPING.md "Models"):

* ``model.json``: at least ``variant`` and the architecture (an
  ``architecture`` object with ``ngf``, ``n_blocks``, ``image_size``, optional
  ``norm``; the same keys at the top level are accepted too).
* ``syn_mr.pt``: Syn_MR (CT -> MR) state_dict, loaded with
  ``torch.load(weights_only=True)`` (no pickled code is ever executed).
* ``syn_ct.pt``: Syn_CT (MR -> CT), for the variants that train one
  (``unpaired``, ``mrgan``); optional here: absent means no cycle output.

Every problem a user can cause (missing folder or file, unreadable JSON,
weights that do not fit the declared architecture) raises
:class:`ct2mr.errors.InputError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ct2mr.errors import InputError

#: variants whose training produces a Syn_CT (MR -> CT) network
VARIANTS_WITH_SYN_CT = ("unpaired", "mrgan")


@dataclass
class LoadedModel:
    """Generators of one trained variant, in eval mode on ``device``.

    ``syn_mr`` maps CT slices to MR slices, ``syn_ct`` MR to CT (None when the
    folder has no ``syn_ct.pt``). Both take (N, 1, S, S) float tensors in
    [-1, 1] with S = ``image_size`` and return the same shape in [-1, 1].
    ``info`` is the parsed ``model.json``.
    """

    syn_mr: nn.Module
    syn_ct: nn.Module | None
    info: dict[str, Any]
    device: torch.device
    model_dir: Path
    image_size: int = 256
    architecture: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.info.get("variant", self.model_dir.name))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> the CUDA device with the most free memory, else the CPU;
    otherwise ``torch.device(device)``.

    Picking the emptiest GPU lets jobs that Snakemake runs side by side (``--resources
    gpu=N``) spread over N GPUs instead of all landing on ``cuda:0``; under SLURM each
    job sees only its own GPU(s) (``CUDA_VISIBLE_DEVICES``). Raises InputError when
    CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        n = torch.cuda.device_count()
        if n <= 1:
            return torch.device("cuda:0")
        free = [torch.cuda.mem_get_info(i)[0] for i in range(n)]
        return torch.device(f"cuda:{max(range(n), key=lambda i: (free[i], -i))}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(None, "device", f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device", f"{device!r} requested but CUDA is not available on this machine")
    return dev


def architecture_of(info: dict[str, Any], path: Path) -> dict[str, Any]:
    """The generator architecture from a parsed model.json (``architecture`` or top level)."""
    arch = info.get("architecture", info)
    if not isinstance(arch, dict):
        raise InputError(path, "architecture", "must be an object with ngf, n_blocks, image_size")
    out = dict(arch)
    for key in ("ngf", "n_blocks"):
        if key not in out:
            raise InputError(path, f"architecture.{key}", "missing (needed to rebuild the generator)")
        if not isinstance(out[key], int) or isinstance(out[key], bool) or out[key] < (1 if key == "ngf" else 0):
            raise InputError(path, f"architecture.{key}", f"expected a positive integer, got {out[key]!r}")
    size = out.get("image_size", info.get("image_size", 256))
    if not isinstance(size, int) or isinstance(size, bool) or size < 4 or size % 4:
        raise InputError(path, "architecture.image_size", f"expected an integer multiple of 4, got {size!r}")
    out["image_size"] = size
    return out


def numbered_folders(parent: str | Path, prefix: str) -> list[Path]:
    """The ``{prefix}{N}`` subfolders of ``parent`` (``seed``: a variant's seeds, ``fold``: its
    cross-validation folds), by number (empty when none)."""
    found = [p for p in Path(parent).glob(f"{prefix}*") if p.is_dir() and p.name[len(prefix):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix):]))


def seed_folders(variant_dir: str | Path) -> list[Path]:
    """The ``seed{N}`` subfolders of a variant folder, by seed number (empty when none)."""
    return numbered_folders(variant_dir, "seed")


def read_model_json(model_dir: str | Path) -> dict[str, Any]:
    """Parse ``model_dir/model.json`` with clear errors."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(model_dir, None, "model folder not found (expected results/models/{variant}/ from `ct2mr train`)")
    path = model_dir / "model.json"
    if not path.is_file():
        seeds = seed_folders(model_dir)
        if seeds:
            raise InputError(
                model_dir, None,
                f"a variant folder with one model per training seed ({', '.join(p.name for p in seeds)}), "
                f"not a model folder: give one seed's folder, e.g. {seeds[0]}",
            )
        folds = numbered_folders(model_dir, "fold")
        if folds:
            raise InputError(
                model_dir, None,
                f"a variant folder of cross-validation folds ({', '.join(p.name for p in folds)}), not a model "
                f"folder: give one "
                f"fold's seed folder, or several for their ensemble, e.g. {model_dir}/fold*/seed0",
            )
        raise InputError(path, None, f"model folder {model_dir} is missing its model.json")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise InputError(path, None, "expected a JSON object")
    return info


def _load_weights(net: nn.Module, path: Path, model_dir: Path) -> None:
    if not path.is_file():
        raise InputError(path, None, f"model folder {model_dir} is missing its weights {path.name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise InputError(path, None, f"cannot read weights (expected a torch state_dict): {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(path, None, f"expected a state_dict (dict of tensors), got {type(state).__name__}")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        key = missing[0] if missing else unexpected[0]
        first = f"missing key {key!r}" if missing else f"unexpected key {key!r}"
        raise InputError(
            path,
            key,
            f"weights do not fit the architecture in model.json ({first}; "
            f"{len(missing)} missing, {len(unexpected)} unexpected keys)",
        )
    for key, ref in expected.items():
        got = state[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ref.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise InputError(
                path,
                key,
                f"weights do not fit the architecture in model.json: shape {shape}, expected {tuple(ref.shape)}",
            )
    net.load_state_dict(state)


def load_generators(model_dir: str | Path, device: str | torch.device = "auto") -> LoadedModel:
    """Rebuild Syn_MR (and Syn_CT when ``syn_ct.pt`` exists) from a model folder.

    Weights are loaded with ``weights_only=True`` onto ``device`` ("auto": CUDA
    if available). Networks are returned in eval mode with gradients disabled.
    """
    from ct2mr.models import build_generator

    model_dir = Path(model_dir)
    info = read_model_json(model_dir)
    json_path = model_dir / "model.json"
    arch = architecture_of(info, json_path)
    dev = resolve_device(device)
    try:
        syn_mr = build_generator(arch)
    except ValueError as exc:
        raise InputError(json_path, "architecture", str(exc)) from exc
    _load_weights(syn_mr, model_dir / "syn_mr.pt", model_dir)
    syn_ct = None
    ct_path = model_dir / "syn_ct.pt"
    if ct_path.is_file():
        syn_ct = build_generator(arch)
        _load_weights(syn_ct, ct_path, model_dir)
    for net in (syn_mr, syn_ct):
        if net is not None:
            net.to(dev).eval().requires_grad_(False)
    return LoadedModel(
        syn_mr=syn_mr,
        syn_ct=syn_ct,
        info=info,
        device=dev,
        model_dir=model_dir,
        image_size=int(arch["image_size"]),
        architecture=arch,
    )


def save_torch(obj: Any, dest: str | Path, suffix: str | None = None) -> None:
    """``torch.save(obj)`` to ``dest`` through :func:`ct2mr.io.atomic.atomic_path`, verified by the
    zip container's CRCs; a failed write raises :class:`ct2mr.errors.OutputError` naming ``dest``."""
    from ct2mr.io.atomic import atomic_path, library_write, verify_zip

    with atomic_path(dest, suffix=suffix, verify=verify_zip) as tmp, library_write(dest):
        torch.save(obj, tmp)


def save_model_folder(
    model_dir: str | Path,
    syn_mr: nn.Module,
    architecture: dict[str, Any],
    variant: str,
    syn_ct: nn.Module | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.json`` + ``syn_mr.pt`` (+ ``syn_ct.pt``) atomically: the folder layout read above.

    For tests, benchmarks and exporting; ``ct2mr train`` writes the same layout.
    """
    from ct2mr.io.atomic import write_json

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, net in (("syn_mr.pt", syn_mr), ("syn_ct.pt", syn_ct)):
        if net is not None:
            save_torch({k: v.detach().cpu() for k, v in net.state_dict().items()}, model_dir / name)
    write_json(model_dir / "model.json", {"variant": variant, "architecture": dict(architecture), **(extra or {})})
    return model_dir


def make_untrained_model(
    model_dir: str | Path,
    variant: str = "mrgan",
    image_size: int = 256,
    ngf: int = 64,
    n_blocks: int = 9,
    seed: int = 0,
) -> Path:
    """A model folder with randomly initialised generators (N(0, 0.02) init): tests and benchmarks only."""
    from ct2mr.models import build_generator, init_weights

    arch = {"image_size": image_size, "ngf": ngf, "ndf": ngf, "n_blocks": n_blocks, "norm": "instance",
            "in_channels": 1, "out_channels": 1}
    g = torch.Generator().manual_seed(seed)
    nets = []
    for _ in range(2 if variant in VARIANTS_WITH_SYN_CT else 1):
        net = build_generator(arch)
        init_weights(net, generator=g)
        nets.append(net)
    return save_model_folder(model_dir, nets[0], arch, variant, syn_ct=nets[1] if len(nets) > 1 else None,
                             extra={"untrained": True})


def load_ensemble(model_dirs: Sequence[str | Path], device: str | torch.device = "auto") -> list[LoadedModel]:
    """Several model folders for an ensemble (:func:`ct2mr.models.apply.synthesize_slices`).

    They must be of one variant: averaging a paired and a cycle model would be a new method,
    not an ensemble; a folder given twice is refused (it would weigh double).
    """
    dirs = [Path(d) for d in model_dirs]
    seen: set[Path] = set()
    for d in dirs:
        if d.resolve() in seen:
            raise InputError(d, None, "model folder given twice (an ensemble member would weigh double)")
        seen.add(d.resolve())
    models = [load_generators(d, device=device) for d in dirs]
    variants = sorted({m.variant for m in models})
    if len(variants) > 1:
        raise InputError(dirs[0], "variant", f"an ensemble's models must be of one variant, got {', '.join(variants)}")
    return models
