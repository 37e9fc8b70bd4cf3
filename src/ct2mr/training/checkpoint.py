"""Checkpoint identity and resume of a training run: what ``checkpoint.pt`` holds, whether it
belongs to this run, and what to do with one that does not.

``checkpoint.pt`` (in the model folder): full training state (written by
:func:`write_checkpoint` every ``checkpoint_every`` iterations and at the end;
atomic), carrying the variant, the settings hash and the training data's hash.
Do NOT declare it as a Snakemake output: Snakemake deletes a job's outputs before
rerunning it, which would throw the resume away. A run with the same variant,
settings and data resumes from it; any other run moves it to
``superseded/checkpoint.<variant>.<settings hash>.<data hash>.pt`` (logged, never
deleted) and starts over, or takes back a superseded checkpoint of exactly its own
run (:func:`checkpoint_to_resume`).

Exact resume: the checkpoint also holds the Python, numpy and torch global RNG
states (:func:`rng_state`, restored by :func:`set_rng_state`) and the sampler's RNG.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ct2mr.errors import InputError
from ct2mr.models.model_folder import save_torch
from ct2mr.training.settings import TrainSettings, settings_hash

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ct2mr-train-checkpoint/1"


class TrainerState(Protocol):
    """What :func:`write_checkpoint` reads of a :class:`ct2mr.training.train.Trainer`
    (a protocol, so this module never imports the loop)."""

    variant: str
    settings: TrainSettings

    def state_dict(self) -> dict[str, Any]: ...


class SamplerState(Protocol):
    """What :func:`write_checkpoint` reads of a :class:`ct2mr.training.train.Sampler` or
    :class:`ct2mr.training.device_data.BatchedSampler`: its numpy generator."""

    rng: np.random.Generator


def to_cpu(obj: Any) -> Any:
    """``obj`` (a tensor, or dicts / lists of them) with every tensor detached and on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """The global RNG states (Python, numpy, torch CPU and CUDA), as a checkpoint stores them."""
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"])}}
    out: dict[str, Any] = {"python": random.getstate(), "numpy_global": np_state, "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["torch_cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states saved by :func:`rng_state` (CUDA ones when the device count matches)."""
    random.setstate(state["python"])
    np_state = dict(state["numpy_global"])
    np_state["state"] = {"key": np_state["state"]["key"].numpy().astype(np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch_cpu"])
    cuda_states = state.get("torch_cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


# --------------------------------------------------------------------------- checkpoints


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``path`` as a ct2mr training checkpoint; InputError (file left in place) if it is not one."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt files raise various types
        raise InputError(
            path, None, f"checkpoint is unreadable (truncated or corrupt: {type(exc).__name__}); "
            "delete or move it to start training from scratch"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "format", f"not a ct2mr training checkpoint (expected {CHECKPOINT_FORMAT})")
    return ckpt


def data_hash(slice_files: Sequence[Path]) -> str:
    """Fingerprint (16 hex digits) of the training data: every array of every slice
    file (name, dtype, shape, bytes), in the given order (the order feeds the pools).

    Part of a checkpoint's identity: rerun with changed slices (a changed
    preprocessing setting, a new patient), a finished checkpoint of the old data
    must not be taken for the new model.
    """
    h = hashlib.sha256()
    for path in slice_files:
        with np.load(Path(path), allow_pickle=False) as npz:
            for name in sorted(npz.files):
                a = np.ascontiguousarray(npz[name])
                h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
                h.update(a.tobytes())
    return h.hexdigest()[:16]


def checkpoint_mismatch(
    ckpt: dict[str, Any], variant: str, settings: TrainSettings, data: str | None = None
) -> list[str]:
    """Why ``ckpt`` cannot continue this run (variant, architecture, settings hash, data); [] when it can.

    The identity of a run is ``(variant, settings_hash(settings), data_hash(slices))``:
    fields that do not change the weights (device, threads, log/checkpoint cadence)
    are not in the settings hash, so a run may resume on another device or with
    another log cadence. ``data`` None skips the data check.
    """
    diffs: list[str] = []
    if data is not None and ckpt.get("data_hash") != data:
        diffs.append(f"training data {ckpt.get('data_hash')!r} != {data!r}")
    if ckpt.get("variant") != variant:
        diffs.append(f"variant {ckpt.get('variant')!r} != {variant!r}")
    arch = settings.architecture()
    old_arch = ckpt.get("architecture", {})
    for k in arch:
        if old_arch.get(k) != arch[k]:
            diffs.append(f"architecture.{k} {old_arch.get(k)!r} != {arch[k]!r}")
    if ckpt.get("settings_hash") != settings_hash(settings):
        old = ckpt.get("settings", {})
        changed = [k for k, v in settings.to_dict().items() if old.get(k) != v and k in old]
        diffs.append("settings differ" + (f" ({', '.join(f'{k}: {old[k]!r} != {getattr(settings, k)!r}' for k in changed)})" if changed else ""))
    return diffs


def read_checkpoint(path: Path, variant: str, settings: TrainSettings) -> dict[str, Any]:
    """Load ``path`` and check it belongs to this run; InputError (file left in place) if not."""
    ckpt = _load_checkpoint(path)
    diffs = checkpoint_mismatch(ckpt, variant, settings)
    if diffs:
        raise InputError(
            path, "checkpoint",
            "belongs to another run: " + "; ".join(diffs) + ". Move or delete it to start over, or use matching settings",
        )
    return ckpt


#: folder (inside the model folder) where checkpoints of other settings are moved
SUPERSEDED_DIR = "superseded"


def _superseded_stem(path: Path, variant: str, settings_key: str, data: str) -> str:
    return f"{path.stem}.{variant}.{settings_key}.{data}"


def superseded_path(path: Path, ckpt: dict[str, Any]) -> Path:
    """Where a checkpoint of another run goes:
    ``superseded/checkpoint.<variant>.<settings hash>.<data hash>.pt`` beside ``path``
    (``.1``, ``.2``, ... appended when that name is taken)."""
    stem = _superseded_stem(
        path, ckpt.get("variant", "unknown"), ckpt.get("settings_hash", "nohash"), ckpt.get("data_hash", "nodata")
    )
    folder = path.parent / SUPERSEDED_DIR
    dest = folder / f"{stem}{path.suffix}"
    n = 0
    while dest.exists():
        n += 1
        dest = folder / f"{stem}.{n}{path.suffix}"
    return dest


def checkpoint_to_resume(
    path: Path, variant: str, settings: TrainSettings, resume: bool = True, data: str | None = None
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` to continue from, or None to start from scratch.

    * ``resume`` False and a file: InputError (left in place);
    * unreadable or not a ct2mr checkpoint: InputError (left in place: it may be
      a file the user put there; we never delete what we cannot identify);
    * a checkpoint of this run (same variant, settings hash and data hash): returned;
    * a checkpoint of another run (a changed setting, architecture, variant or
      training data): never trusted, never deleted: moved to
      :func:`superseded_path` with a warning naming the differences;
    * then, when ``superseded/`` holds a checkpoint of exactly this run (settings
      changed back), it is moved back to ``path`` and returned (a finished one
      just rewrites the model files), else None (train from scratch).
    """
    if path.exists():
        if not resume:
            raise InputError(path, None, "a checkpoint exists and resume is off; move or delete it to start over")
        ckpt = _load_checkpoint(path)
        diffs = checkpoint_mismatch(ckpt, variant, settings, data)
        if not diffs:
            return ckpt
        dest = superseded_path(path, ckpt)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        log.warning(
            "checkpoint %s is from another run (%s): moved to %s; training %s with settings %s",
            path, "; ".join(diffs), dest, variant, settings_hash(settings),
        )
    if data is None or not resume:
        return None
    stem = _superseded_stem(path, variant, settings_hash(settings), data)
    for old in sorted((path.parent / SUPERSEDED_DIR).glob(f"{stem}*{path.suffix}")):
        try:
            ckpt = _load_checkpoint(old)
        except InputError:
            continue
        if not checkpoint_mismatch(ckpt, variant, settings, data):
            os.replace(old, path)
            log.warning("checkpoint %s is of this run (same settings and data): moved back to %s", old, path)
            return ckpt
    return None


def write_checkpoint(path: Path, trainer: TrainerState, sampler: SamplerState, extra: dict[str, Any]) -> None:
    """Atomically write the full training state (see :func:`read_checkpoint`).

    Takes the trainer's ``variant``, ``settings`` and ``state_dict()``, the sampler's
    ``rng`` and the global RNG states (:func:`rng_state`); ``extra``: the loop's own
    state (data hash, loss history, accumulators, elapsed seconds).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "variant": trainer.variant,
        "architecture": trainer.settings.architecture(),
        "settings": trainer.settings.to_dict(),
        "settings_hash": settings_hash(trainer.settings),
        "trainer": trainer.state_dict(),
        "sampler_rng": sampler.rng.bit_generator.state,
        "rng": rng_state(),
        **extra,
    }
    save_torch(state, path, suffix=".pt.tmp")
