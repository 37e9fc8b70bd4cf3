"""A model folder ``results/models/{variant}/seed{seed}/``: save a trained model, load its generators.

A model folder is the output of one training run (one variant, one seed). A
variant folder ``results/models/{variant}/`` holding ``seed*/`` subfolders is not a
model: it is refused with a one-line error listing its seed folders (choosing one
silently would hide which model produced a result).

A model folder holds (see DEVELOPING.md "Models"):

* ``model.json``: at least ``variant`` (one of :data:`KNOWN_VARIANTS`) and the
  architecture (an ``architecture`` object with ``ngf``, ``n_blocks``,
  ``image_size``, optional ``norm``; the same keys at the top level are accepted
  too), and, from ``ct2mr train`` on, ``preprocessing``: the preprocessing the
  model was trained with (:data:`PREPROCESSING_KEYS`, the config's own sections
  and keys), which ``ct2mr predict`` applies to a new CT, as nnU-Net's plans travel
  with its models. Checked on load: the variant is known; ``image_size`` at the
  top level and the training ``settings`` (``image_size``, ``ngf``, ``n_blocks``)
  agree with ``architecture``; ``ngf`` and ``n_blocks`` fit the weights' shapes;
  ``syn_ct.pt`` only for a variant with a Syn_CT; ``preprocessing`` is complete
  and typed. Each problem is a one-line InputError naming model.json and the field.
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
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ct2mr.errors import InputError

#: the variants ``ct2mr train`` trains (the same as ``ct2mr.training.losses.VARIANTS``; tests/test_models.py checks)
KNOWN_VARIANTS = ("paired", "unpaired", "mrgan", "regression")
#: variants whose training produces a Syn_CT (MR -> CT) network
VARIANTS_WITH_SYN_CT = ("unpaired", "mrgan")

#: ``model.json`` ``preprocessing``: config section -> its keys that made the model's training slices
#: (resampling spacing [mm, x y z], CT skull / head thresholds [HU], MR brain mask erosion [mm] and method,
#: CT window width / level [HU], MR normalisation percentiles [0-100], slice side [pixels] and the kept-slice
#: rule [brain voxels per slice, slices per patient]); the values are the config's, in its units
PREPROCESSING_KEYS: dict[str, tuple[str, ...]] = {
    "resample": ("spacing_mm",),
    "skull_mask": ("ct_skull_threshold_hu", "ct_head_threshold_hu", "mr_brain_erosion_mm", "mr_method"),
    "window": ("ct_width_hu", "ct_level_hu", "mr_percentiles"),
    "slices": ("size", "min_brain_voxels", "min_slices"),
}
#: key -> (kind, list length): "number", "count" (an integer >= 1), "text", or a list of numbers
_PREPROCESSING_KINDS: dict[str, tuple[str, int]] = {
    "resample.spacing_mm": ("numbers", 3),
    "skull_mask.ct_skull_threshold_hu": ("number", 0),
    "skull_mask.ct_head_threshold_hu": ("number", 0),
    "skull_mask.mr_brain_erosion_mm": ("number", 0),
    "skull_mask.mr_method": ("text", 0),
    "window.ct_width_hu": ("number", 0),
    "window.ct_level_hu": ("number", 0),
    "window.mr_percentiles": ("numbers", 2),
    "slices.size": ("count", 0),
    "slices.min_brain_voxels": ("count", 0),
    "slices.min_slices": ("count", 0),
}


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
    #: the checked ``model.json`` ``preprocessing`` (:func:`check_preprocessing`); None: a folder written
    #: before ``ct2mr train`` recorded it
    preprocessing: dict[str, dict[str, Any]] | None = None

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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _preprocessing_value(value: Any, kind: str, length: int, path: str | Path | None, where: str) -> Any:
    """One checked ``preprocessing`` value (see :data:`PREPROCESSING_KEYS`): numbers as float, counts as int."""
    if kind == "number" and _number(value):
        return float(value)
    if kind == "count" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if kind == "text" and isinstance(value, str) and value:
        return value
    positive = where.endswith("spacing_mm")
    if (kind == "numbers" and isinstance(value, list) and len(value) == length and all(_number(v) for v in value)
            and not (positive and min(value) <= 0)):
        return [float(v) for v in value]
    expected = {"number": "a number", "count": "an integer >= 1", "text": "a text",
                "numbers": f"a list of {length} numbers" + (" > 0" if positive else "")}[kind]
    raise InputError(path, where, f"expected {expected}, got {value!r}")


def check_preprocessing(record: Any, path: str | Path | None, prefix: str = "preprocessing") -> dict[str, dict[str, Any]]:
    """A checked copy of a preprocessing record (``model.json`` ``preprocessing``: :data:`PREPROCESSING_KEYS`).

    Every section and key must be present, none other (a typo'd key would be a setting silently not
    applied); numbers become float, counts stay int. Raises :class:`InputError` naming ``path`` and
    ``{prefix}.{section}.{key}``.
    """
    if not isinstance(record, dict):
        raise InputError(path, prefix, f"expected an object with {', '.join(PREPROCESSING_KEYS)}, got {record!r}")
    for section in record:
        if section not in PREPROCESSING_KEYS:
            raise InputError(path, f"{prefix}.{section}", f"unknown section; expected {', '.join(PREPROCESSING_KEYS)}")
    out: dict[str, dict[str, Any]] = {}
    for section, keys in PREPROCESSING_KEYS.items():
        values = record.get(section)
        if not isinstance(values, dict):
            raise InputError(path, f"{prefix}.{section}",
                             "missing" if values is None else f"expected an object with {', '.join(keys)}, got {values!r}")
        for key in values:
            if key not in keys:
                raise InputError(path, f"{prefix}.{section}.{key}", f"unknown key; expected {', '.join(keys)}")
        out[section] = {}
        for key in keys:
            where = f"{prefix}.{section}.{key}"
            if key not in values:
                raise InputError(path, where, "missing")
            out[section][key] = _preprocessing_value(values[key], *_PREPROCESSING_KINDS[f"{section}.{key}"], path, where)
    return out


def preprocessing_from_config(config: Any, source: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The preprocessing record of a validated (default-filled) config: its :data:`PREPROCESSING_KEYS`, checked.

    The workflow's ``train`` job passes these sections of its config whole as ``ct2mr train --preprocessing``
    (JSON); they hold exactly these keys (tests/test_models.py checks against the schema). A key the config
    lacks is an :class:`InputError` naming ``source`` and the key.
    """
    if not isinstance(config, dict):
        raise InputError(source, None, "expected a config mapping")
    record = {section: {key: config[section][key] for key in keys if key in (config.get(section) or {})}
              for section, keys in PREPROCESSING_KEYS.items() if isinstance(config.get(section), dict)}
    return check_preprocessing(record, source, "config")


def preprocessing_differences(
    record: dict[str, dict[str, Any]], other: Any
) -> list[tuple[str, Any, Any]]:
    """``(section.key, record's value, other's value)`` for every key of the checked ``record`` that ``other``
    (a config with the same sections, or another record) sets differently or lacks (value ``None``)."""
    out = []
    for section, keys in PREPROCESSING_KEYS.items():
        theirs = other.get(section) if isinstance(other, dict) else None
        for key in keys:
            mine = record[section][key]
            value = theirs.get(key) if isinstance(theirs, dict) else None
            same = (mine == [float(v) for v in value] if isinstance(mine, list) and isinstance(value, list)
                    and all(_number(v) for v in value) else mine == value)
            if not same:
                out.append((f"{section}.{key}", mine, value))
    return out


def check_model_json(info: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
    """The architecture (:func:`architecture_of`) and the checked preprocessing (None when absent) of a parsed
    model.json, after checking that its variant is known and that its records agree with each other:
    a top-level ``image_size`` and the training ``settings`` (``image_size``, ``ngf``, ``n_blocks``) must equal
    the architecture's (an edited size would run the network at a size it was never trained at)."""
    variant = info.get("variant")
    if variant not in KNOWN_VARIANTS:
        raise InputError(path, "variant", ("missing" if variant is None else f"unknown variant {variant!r}")
                         + f"; expected one of {', '.join(KNOWN_VARIANTS)}")
    arch = architecture_of(info, path)
    nested = info.get("architecture")
    if isinstance(nested, dict) and "image_size" in nested and "image_size" in info \
            and info["image_size"] != arch["image_size"]:
        raise InputError(path, "image_size", f"{info['image_size']!r} disagrees with architecture.image_size "
                         f"{arch['image_size']} (the slice size the network runs at)")
    settings = info.get("settings")
    if isinstance(settings, dict):
        for key in ("image_size", "ngf", "n_blocks"):
            if key in settings and settings[key] != arch[key]:
                raise InputError(path, f"architecture.{key}", f"{arch[key]!r} disagrees with settings.{key} "
                                 f"{settings[key]!r}, the value the model was trained with")
    prep = info.get("preprocessing")
    return arch, (None if prep is None else check_preprocessing(prep, path))


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


def weights_architecture(state: dict[str, Any]) -> dict[str, int] | None:
    """``ngf`` and ``n_blocks`` of a :class:`ct2mr.models.generator.ResnetGenerator` state_dict, read from its
    shapes (the first convolution's output channels; the residual blocks' ``model.{i}.body.*`` keys); None when
    the dict is not such a generator's."""
    first = state.get("model.1.weight")
    if not isinstance(first, torch.Tensor) or first.ndim != 4:
        return None
    blocks = {k.split(".")[1] for k in state if re.match(r"model\.\d+\.body\.", k)}
    return {"ngf": int(first.shape[0]), "n_blocks": len(blocks)}


def _load_weights(net: nn.Module, path: Path, model_dir: Path, arch: dict[str, Any] | None = None) -> None:
    if not path.is_file():
        raise InputError(path, None, f"model folder {model_dir} is missing its weights {path.name}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise InputError(path, None, f"cannot read weights (expected a torch state_dict): {exc}") from exc
    if not isinstance(state, dict):
        raise InputError(path, None, f"expected a state_dict (dict of tensors), got {type(state).__name__}")
    found = weights_architecture(state)
    if arch is not None and found is not None:
        for key in ("ngf", "n_blocks"):
            if found[key] != arch[key]:
                raise InputError(model_dir / "model.json", f"architecture.{key}",
                                 f"{arch[key]} does not fit the weights: {path.name} holds a generator with "
                                 f"{key} {found[key]}")
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
    arch, preprocessing = check_model_json(info, json_path)
    dev = resolve_device(device)
    try:
        syn_mr = build_generator(arch)
    except ValueError as exc:
        raise InputError(json_path, "architecture", str(exc)) from exc
    _load_weights(syn_mr, model_dir / "syn_mr.pt", model_dir, arch)
    syn_ct = None
    ct_path = model_dir / "syn_ct.pt"
    variant = info["variant"]
    if ct_path.is_file():
        if variant not in VARIANTS_WITH_SYN_CT:
            raise InputError(json_path, "variant", f"{variant!r} trains no Syn_CT, but the folder holds syn_ct.pt "
                             f"(the weights of {' or '.join(VARIANTS_WITH_SYN_CT)})")
        syn_ct = build_generator(arch)
        _load_weights(syn_ct, ct_path, model_dir, arch)
    elif isinstance(info.get("weights"), dict) and "syn_ct" in info["weights"]:
        raise InputError(ct_path, None, f"model folder {model_dir} is missing its weights syn_ct.pt (model.json names them)")
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
        preprocessing=preprocessing,
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
    preprocessing: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.json`` + ``syn_mr.pt`` (+ ``syn_ct.pt``) atomically: the folder layout read above.

    ``preprocessing``: the record ``ct2mr predict`` applies (:func:`check_preprocessing`; None: none, as
    in a folder from before it was recorded). For tests, benchmarks and exporting; ``ct2mr train``
    writes the same layout.
    """
    from ct2mr.io.atomic import write_json

    if preprocessing is not None:
        extra = {**(extra or {}), "preprocessing": check_preprocessing(preprocessing, None)}
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
    preprocessing: dict[str, Any] | None = None,
) -> Path:
    """A model folder with randomly initialised generators (N(0, 0.02) init): tests and benchmarks only.

    ``preprocessing``: as in :func:`save_model_folder`."""
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
                             extra={"untrained": True}, preprocessing=preprocessing)


def load_ensemble(model_dirs: Sequence[str | Path], device: str | torch.device = "auto") -> list[LoadedModel]:
    """Several model folders for an ensemble (:func:`ct2mr.models.apply.synthesize_slices`).

    They must be of one variant: averaging a paired and a cycle model would be a new method,
    not an ensemble; and of one preprocessing (``model.json`` ``preprocessing``, all recorded or
    none): their inputs must be the same slices. A folder given twice is refused (it would weigh double).
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
    first = models[0]
    for m in models[1:]:
        if (m.preprocessing is None) != (first.preprocessing is None):
            with_, without = (first, m) if m.preprocessing is None else (m, first)
            raise InputError(without.model_dir / "model.json", "preprocessing",
                             f"missing, but {with_.model_dir} records it: an ensemble's models must share their "
                             "preprocessing (retrain the older model)")
        if first.preprocessing is not None and m.preprocessing is not None:
            for key, mine, theirs in preprocessing_differences(first.preprocessing, m.preprocessing)[:1]:
                raise InputError(m.model_dir / "model.json", f"preprocessing.{key}",
                                 f"{theirs!r}, but {first.model_dir} was trained with {mine!r}: an ensemble's "
                                 "models must share their preprocessing")
    return models
