"""Training settings: presets (``tiny``, ``demo``, ``paper``), overrides, validation, hash.

The config's ``training:`` section chooses a preset and may override any field::

    training:
      preset: demo            # tiny | demo | paper
      variants: [paired, unpaired, mrgan, regression]
      device: auto            # auto | cpu | cuda | cuda:N  (-> settings.device)
      gpus: 1                 # Snakemake resource, not a training setting
      seeds: [0]              # one training run per seed, each -> settings.seed
      overrides: {}           # any TrainSettings field -> value

:func:`resolve_training_settings` turns that section into the full settings dict
that ``ct2mr train --settings`` takes (as JSON), for one seed (default: the first
of ``seeds``; the workflow resolves it once per seed). Every field of
:class:`TrainSettings` is documented there; iteration counts are optimizer
steps with batch size 1 (one unpaired CT, one unpaired MR and one pair per step).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ct2mr.errors import InputError


@dataclass(frozen=True)
class TrainSettings:
    """All settings of one training run (units in brackets).

    Architecture: ``image_size`` [pixels, multiple of 16, >= 32; slices are resized from
    256 when different], ``ngf`` / ``ndf`` [channels of the first generator /
    discriminator layer], ``n_blocks`` [residual blocks].
    Schedule: ``n_const`` [iterations at constant lr], ``n_decay`` [iterations of
    linear decay to 0]; total iterations = n_const + n_decay.
    Optimiser: Adam ``lr``, ``beta1``, ``beta2``.
    Objective: ``lambda_cycle`` (cycle weight), ``gamma_l1`` (voxel-wise L1
    weight), ``pool_size`` [past fakes per discriminator input kind, 0 = off],
    ``pool_paired`` (pool the paired fakes too; default False as in pix2pix,
    the unpaired fakes always go through the pool), ``unpaired_real_label``
    (target for real images in the LSGAN terms; 1.0 = paper text, 0.9 = the
    public code's one-sided label smoothing), ``init_gain`` (std of the N(0, g)
    weight init).
    Augmentation: ``augment`` (on/off), ``flip_prob``, ``pad_to`` [pixels; None =
    round(image_size * 286 / 256)], ``max_rotation_deg`` [degrees].
    Data: ``unpaired_includes_paired`` (add paired_train slices to the unpaired
    CT and MR pools; for data sets with paired patients only).
    Run: ``seed``, ``device`` (auto | cpu | cuda | cuda:N), ``amp`` (bf16 | fp32;
    bf16 autocast on CUDA only, ignored on CPU), ``compile`` (torch.compile the
    networks, CUDA only), ``compile_mode`` (torch.compile mode: default |
    reduce-overhead (CUDA graphs through torch.compile) | max-autotune |
    max-autotune-no-cudagraphs), ``channels_last`` (NHWC memory format for
    networks and inputs; default False: instance norm and reflection
    padding return the standard layout, so every generator layer pays layout
    copies; turn it on only where bench/gpu_check.py measures it faster),
    ``num_threads`` [CPU threads; None = torch default],
    ``log_every`` [iterations between losses.tsv rows / log lines / TensorBoard
    scalars; the losses stay on the device in between],
    ``checkpoint_every`` [iterations between checkpoints],
    ``val_every`` [iterations between validation scores on the ``paired_val``
    patients (``val_mae``, ``val_mae_head`` in losses.tsv, grey levels 0-255): on
    the first losses.tsv row at or after each multiple of it, and the last row;
    only when validation slices are given; never used to pick a checkpoint],
    ``tensorboard`` (write TensorBoard events under ``{model folder}/tensorboard/``
    when the tensorboard package is installed), ``image_log_every`` [iterations
    between TensorBoard image grids; 0 = none].
    """

    image_size: int = 256
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_const: int = 100_000
    n_decay: int = 200_000
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cycle: float = 10.0
    gamma_l1: float = 100.0
    pool_size: int = 50
    pool_paired: bool = False
    unpaired_real_label: float = 1.0
    init_gain: float = 0.02
    augment: bool = True
    flip_prob: float = 0.5
    pad_to: int | None = None
    max_rotation_deg: float = 5.0
    unpaired_includes_paired: bool = False
    seed: int = 0
    device: str = "auto"
    amp: str = "bf16"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    num_threads: int | None = None
    log_every: int = 100
    checkpoint_every: int = 5000
    val_every: int = 5000
    tensorboard: bool = True
    image_log_every: int = 1000

    @property
    def total_iterations(self) -> int:
        return self.n_const + self.n_decay

    @property
    def effective_pad_to(self) -> int:
        return self.pad_to if self.pad_to is not None else int(round(self.image_size * 286 / 256))

    def architecture(self) -> dict[str, Any]:
        """What is needed to rebuild the networks (``model.json`` ``architecture``)."""
        return {
            "image_size": self.image_size,
            "ngf": self.ngf,
            "ndf": self.ndf,
            "n_blocks": self.n_blocks,
            "norm": "instance",
            "in_channels": 1,
            "out_channels": 1,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: fields that do not change the trained weights (excluded from the settings hash,
#: so a run may be resumed with another device, thread count or log cadence)
NON_RESULT_FIELDS: frozenset[str] = frozenset(
    {
        "device", "compile", "compile_mode", "channels_last", "num_threads", "log_every", "checkpoint_every",
        "val_every", "tensorboard", "image_log_every",
    }
)

#: torch.compile modes accepted by ``compile_mode``
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

PRESETS: dict[str, dict[str, Any]] = {
    # unit tests: seconds on one CPU core
    "tiny": {
        "image_size": 32,
        "ngf": 8,
        "ndf": 8,
        "n_blocks": 1,
        "n_const": 4,
        "n_decay": 4,
        "pool_size": 4,
        "device": "cpu",
        "num_threads": 1,  # tiny tensors: extra threads only add overhead
        "log_every": 2,
        "checkpoint_every": 4,
        "val_every": 4,
        # no TensorBoard events in the test preset: their file names carry time, host and pid,
        # so two identical tiny runs (tests/test_slurm.py) would not compare equal
        "tensorboard": False,
        "image_log_every": 4,
    },
    # CPU demo: the three variants together train in about 4-5 minutes on 2 shared
    # cores (one thread per run, so Snakemake can run two at once; see
    # bench/results/training.md and training_harvard.md)
    "demo": {
        "image_size": 64,
        "ngf": 16,
        "ndf": 16,
        "n_blocks": 3,
        "n_const": 600,
        "n_decay": 600,
        "pool_size": 50,
        "device": "cpu",
        "num_threads": 1,
        "log_every": 10,
        "checkpoint_every": 100,
        "val_every": 100,
        "image_log_every": 200,
    },
    # Jin et al. 2018: 256 x 256, 9 blocks, 1e5 + 2e5 iterations, GPU
    "paper": {
        "image_size": 256,
        "ngf": 64,
        "ndf": 64,
        "n_blocks": 9,
        "n_const": 100_000,
        "n_decay": 200_000,
        "lr": 2e-4,
        "beta1": 0.5,
        "beta2": 0.999,
        "lambda_cycle": 10.0,
        "gamma_l1": 100.0,
        "pool_size": 50,
        "device": "auto",
        "log_every": 100,
        "checkpoint_every": 5000,
        "val_every": 5000,
    },
}

#: keys of the config's ``training:`` section (besides them: none allowed)
SECTION_KEYS: dict[str, str] = {
    "preset": "str, one of tiny | demo | paper (default demo)",
    "variants": "list of str, subset of paired | unpaired | mrgan | regression",
    "device": "str, auto | cpu | cuda | cuda:N (default auto; overrides the preset's device unless 'auto' keeps it)",
    "gpus": "int >= 0, Snakemake resource (not a training setting)",
    "seeds": "list of distinct ints >= 0 (default [0]): one training run per seed",
    "unpaired_includes_paired": "bool (default false): add paired_train slices to the unpaired pools",
    "overrides": "mapping TrainSettings field -> value (default {})",
}

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _check_type(name: str, value: Any, source: str | None) -> Any:
    field_types = {f.name: f.type for f in fields(TrainSettings)}
    ftype = field_types[name]
    bad = False
    if ftype == "int":
        bad = not isinstance(value, int) or isinstance(value, bool)
    elif ftype == "float":
        bad = not isinstance(value, (int, float)) or isinstance(value, bool)
        value = float(value) if not bad else value
    elif ftype == "bool":
        bad = not isinstance(value, bool)
    elif ftype == "str":
        bad = not isinstance(value, str)
    elif ftype == "int | None":
        bad = value is not None and (not isinstance(value, int) or isinstance(value, bool))
    if bad:
        raise InputError(source, name, f"expected {ftype}, got {value!r} ({type(value).__name__})")
    return value


def settings_from_dict(values: Mapping[str, Any], source: str | None = None) -> TrainSettings:
    """Validate a (possibly partial) settings mapping; missing fields take the defaults.

    Raises :class:`InputError` (naming ``source`` and the key) on an unknown key,
    a wrong type or a value out of range.
    """
    known = {f.name for f in fields(TrainSettings)}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise InputError(source, str(key), f"unknown training setting; known: {', '.join(sorted(known))}")
        clean[key] = _check_type(key, value, source)
    s = TrainSettings(**clean)
    checks: list[tuple[str, bool, str]] = [
        ("image_size", s.image_size >= 32 and s.image_size % 16 == 0, "must be a multiple of 16, >= 32"),
        ("ngf", s.ngf >= 1, "must be >= 1"),
        ("ndf", s.ndf >= 1, "must be >= 1"),
        ("n_blocks", s.n_blocks >= 0, "must be >= 0"),
        ("n_const", s.n_const >= 0, "must be >= 0"),
        ("n_decay", s.n_decay >= 0, "must be >= 0"),
        ("n_decay", s.n_const + s.n_decay >= 1, "n_const + n_decay must be >= 1"),
        ("lr", s.lr > 0, "must be > 0"),
        ("beta1", 0 <= s.beta1 < 1, "must be in [0, 1)"),
        ("beta2", 0 <= s.beta2 < 1, "must be in [0, 1)"),
        ("lambda_cycle", s.lambda_cycle >= 0, "must be >= 0"),
        ("gamma_l1", s.gamma_l1 >= 0, "must be >= 0"),
        ("pool_size", s.pool_size >= 0, "must be >= 0"),
        ("unpaired_real_label", 0 < s.unpaired_real_label <= 1, "must be in (0, 1]"),
        ("init_gain", s.init_gain > 0, "must be > 0"),
        ("flip_prob", 0 <= s.flip_prob <= 1, "must be in [0, 1]"),
        ("pad_to", s.pad_to is None or s.pad_to >= s.image_size, "must be >= image_size (or null)"),
        ("max_rotation_deg", 0 <= s.max_rotation_deg <= 180, "must be in [0, 180]"),
        ("device", bool(_DEVICE_RE.match(s.device)), "must be auto, cpu, cuda or cuda:N"),
        ("amp", s.amp in ("bf16", "fp32"), "must be bf16 or fp32"),
        ("compile_mode", s.compile_mode in COMPILE_MODES, f"must be one of {', '.join(COMPILE_MODES)}"),
        ("image_log_every", s.image_log_every >= 0, "must be >= 0"),
        ("num_threads", s.num_threads is None or s.num_threads >= 1, "must be >= 1 (or null)"),
        ("log_every", s.log_every >= 1, "must be >= 1"),
        ("checkpoint_every", s.checkpoint_every >= 1, "must be >= 1"),
        ("val_every", s.val_every >= 1, "must be >= 1"),
    ]
    for key, ok, problem in checks:
        if not ok:
            raise InputError(source, key, f"{problem}, got {getattr(s, key)!r}")
    return s


def preset_settings(name: str, source: str | None = None) -> TrainSettings:
    """The named preset (``tiny``, ``demo`` or ``paper``) as validated settings."""
    if name not in PRESETS:
        raise InputError(source, "training.preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return settings_from_dict(PRESETS[name], source)


def seeds_of(section: Mapping[str, Any], source: str | None = None) -> list[int]:
    """The ``training.seeds`` list (default ``[0]``), checked: distinct ints >= 0, at least one."""
    seeds = section.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in seeds)):
        raise InputError(source, "training.seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise InputError(source, "training.seeds", f"seeds must be distinct, got {seeds!r}")
    return list(seeds)


def resolve_training_settings(
    section: Mapping[str, Any], source: str | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The config's ``training:`` section -> the full settings dict for ``ct2mr train --settings``.

    preset values, then ``overrides``, then ``unpaired_includes_paired``, ``device``
    (``device: auto`` keeps the preset's device, so the ``demo`` preset stays on
    CPU) and the run's ``seed``: ``seed`` when given (one of ``seeds``; the
    workflow resolves once per seed), else the first of ``training.seeds``.
    Unknown keys in the section or in ``overrides`` raise :class:`InputError`;
    the former ``training.seed`` and ``overrides.seed`` point to ``training.seeds``.
    """
    for key in section:
        if key == "seed":
            raise InputError(source, "training.seed", "replaced by training.seeds, a list (e.g. seeds: [0])")
        if key not in SECTION_KEYS:
            raise InputError(source, f"training.{key}", f"unknown key; known: {', '.join(SECTION_KEYS)}")
    seeds = seeds_of(section, source)
    if seed is not None and seed not in seeds:
        raise InputError(source, "training.seeds", f"seed {seed} is not one of {seeds}")
    preset = section.get("preset", "demo")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InputError(source, "training.preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    overrides = section.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise InputError(source, "training.overrides", f"expected a mapping, got {type(overrides).__name__}")
    known = {f.name for f in fields(TrainSettings)}
    for key, value in overrides.items():
        if key == "seed":
            raise InputError(source, "training.overrides.seed", "set the seeds with training.seeds (a list)")
        if key not in known:
            raise InputError(source, f"training.overrides.{key}", f"unknown training setting; known: {', '.join(sorted(known))}")
        values[key] = value
    if "unpaired_includes_paired" in section:
        values["unpaired_includes_paired"] = section["unpaired_includes_paired"]
    values["seed"] = seeds[0] if seed is None else seed
    device = section.get("device", "auto")
    if device != "auto":
        values["device"] = device
    try:
        settings = settings_from_dict(values, source)
    except InputError as exc:
        raise InputError(source, f"training.{exc.field}", exc.problem) from None
    return settings.to_dict()


def settings_hash(settings: TrainSettings) -> str:
    """SHA-256 (hex, first 16 chars) of the fields that change the trained weights."""
    d = {k: v for k, v in settings.to_dict().items() if k not in NON_RESULT_FIELDS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_settings_arg(text: str) -> tuple[TrainSettings, str | None]:
    """``--settings`` value: a JSON object, or a path to a .json / .yaml file -> (settings, source)."""
    values, source = read_mapping_arg(text, "--settings")
    if "training" in values and isinstance(values["training"], Mapping) and "preset" in values["training"]:
        return settings_from_dict(resolve_training_settings(values["training"], source), source), source
    return settings_from_dict(values, source), source


def read_mapping_arg(text: str, flag: str) -> tuple[Mapping[str, Any], str | None]:
    """A command-line value that is a JSON object, or a path to a .json / .yaml file holding a mapping ->
    (the mapping, the file or None). Errors name ``flag`` (e.g. ``--settings``)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            values = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(None, flag, f"not valid JSON: {exc}") from None
        source = None
    else:
        path = Path(text)
        if not path.is_file():
            raise InputError(path, flag, "file not found (expected a JSON object or a .json/.yaml file)")
        source = str(path)
        raw = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(raw)
            else:
                values = json.loads(raw)
        except Exception as exc:  # noqa: BLE001 - any parse error is bad input
            raise InputError(path, None, f"cannot parse {flag}: {exc}") from None
    if not isinstance(values, Mapping):
        raise InputError(source, flag, f"expected a mapping, got {type(values).__name__}")
    return values, source
