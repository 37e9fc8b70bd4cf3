"""Training data: slice files -> pools of uint8 slices, and the per-iteration sampler.

Input: ``results/slices/{patient}.npz`` files (contract in DEVELOPING.md: ``ct``
/ ``mr`` uint8 (N, 256, 256), ``role``, ``patient``...). Pools:

* ``paired``: (ct, mr) slices of role ``paired_train`` (both keys present);
* ``ct_unpaired``: ``ct`` of role ``ct_only`` (+ paired_train CT when
  ``unpaired_includes_paired``);
* ``mr_unpaired``: ``mr`` of role ``mr_only`` (+ paired_train MR likewise).

Files of other roles (e.g. ``paired_test``) are never used for training (logged).
Slices are resized to the model's ``image_size`` (area averaging when smaller,
bilinear when larger), rounded back to uint8, and kept as uint8 tensors; the
sampler turns a drawn slice into float ``x / 127.5 - 1`` in [-1, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ct2mr.errors import InputError
from ct2mr.models.apply import resize_uint8
from ct2mr.training.roles import TRAIN_ROLES

log = logging.getLogger(__name__)



def read_slice_file(path: Path) -> dict[str, Any]:
    """Load one slice file as a dict of numpy arrays (``role`` and ``patient`` as str).

    Uses :func:`ct2mr.preprocess.slices.load_slices` when available, else :func:`numpy.load`
    with the documented keys. Raises :class:`InputError` for a missing or
    unreadable file, a missing ``role`` or bad ``ct`` / ``mr`` arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "slice file not found")
    try:
        from ct2mr.preprocess.slices import load_slices
    except ImportError:  # pragma: no cover - slices.py is part of the package
        load_slices = None
    if load_slices is not None:
        data = dict(load_slices(path))
    else:  # pragma: no cover
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except Exception as exc:  # noqa: BLE001 - any read error is bad input
            raise InputError(path, None, f"cannot read slice file: {exc}") from None
    if "role" not in data:
        raise InputError(path, "role", "missing (expected paired_train, paired_test, ct_only or mr_only)")
    data["role"] = str(np.asarray(data["role"]))
    data["patient"] = str(np.asarray(data.get("patient", path.stem)))
    shape = None
    for key in ("ct", "mr"):
        if key in data:
            arr = np.asarray(data[key])
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] == 0:
                raise InputError(path, key, f"expected uint8 (N, S, S) with N >= 1, got {arr.dtype} {arr.shape}")
            if shape is not None and arr.shape != shape:
                raise InputError(path, key, f"shape {arr.shape} differs from ct {shape}")
            shape = arr.shape
            data[key] = arr
    return data


@dataclass
class SlicePools:
    """uint8 slice tensors per pool (at the model's image size) and where they came from."""

    paired_ct: torch.Tensor
    paired_mr: torch.Tensor
    ct_unpaired: torch.Tensor
    mr_unpaired: torch.Tensor
    patients: dict[str, list[str]] = field(default_factory=dict)

    def count(self, pool: str) -> int:
        return int({"paired": self.paired_ct, "ct_unpaired": self.ct_unpaired, "mr_unpaired": self.mr_unpaired}[pool].shape[0])

    def to(self, device: torch.device | str) -> SlicePools:
        return SlicePools(
            self.paired_ct.to(device),
            self.paired_mr.to(device),
            self.ct_unpaired.to(device),
            self.mr_unpaired.to(device),
            self.patients,
        )


def build_pools(
    slice_files: Sequence[Path],
    image_size: int,
    unpaired_includes_paired: bool = False,
    roles: Mapping[str, str] | None = None,
) -> SlicePools:
    """Read the slice files and fill the three pools (see module docstring).

    ``roles``: patient id -> the role its file takes in this training job, overriding the
    role stored in the file (k-fold cross-validation: :func:`ct2mr.training.folds.fold_roles`
    makes the other folds' paired patients ``paired_train``). A file of a patient whose
    role here is ``paired_test`` is refused: the workflow never lists a fold's own test
    patients in its training job, so one given is a leak, not something to skip.
    """
    empty = torch.zeros((0, image_size, image_size), dtype=torch.uint8)
    parts: dict[str, list[torch.Tensor]] = {"paired_ct": [], "paired_mr": [], "ct_unpaired": [], "mr_unpaired": []}
    patients: dict[str, list[str]] = {"paired": [], "ct_unpaired": [], "mr_unpaired": []}
    for path in slice_files:
        d = read_slice_file(Path(path))
        role, patient = d["role"], d["patient"]
        if roles is not None and patient in roles:
            if roles[patient] == "paired_test":
                raise InputError(path, "role", f"patient {patient} is a test patient of this fold: it must not be "
                                               "trained on (train/test leak)")
            role = roles[patient]
        if role not in TRAIN_ROLES:
            log.info("%s: role %s is not used for training; skipped", path, role)
            continue
        ct = resize_uint8(d["ct"], image_size) if "ct" in d else None
        mr = resize_uint8(d["mr"], image_size) if "mr" in d else None
        if role == "paired_train":
            if ct is None or mr is None:
                raise InputError(path, "ct" if ct is None else "mr", "missing: a paired_train file needs both ct and mr")
            parts["paired_ct"].append(ct)
            parts["paired_mr"].append(mr)
            patients["paired"].append(patient)
            if unpaired_includes_paired:
                parts["ct_unpaired"].append(ct)
                parts["mr_unpaired"].append(mr)
                patients["ct_unpaired"].append(patient)
                patients["mr_unpaired"].append(patient)
        elif role == "ct_only":
            if ct is None:
                raise InputError(path, "ct", "missing: a ct_only file needs ct")
            parts["ct_unpaired"].append(ct)
            patients["ct_unpaired"].append(patient)
        else:
            if mr is None:
                raise InputError(path, "mr", "missing: an mr_only file needs mr")
            parts["mr_unpaired"].append(mr)
            patients["mr_unpaired"].append(patient)
    cat = {k: torch.cat(v, 0) if v else empty.clone() for k, v in parts.items()}
    return SlicePools(cat["paired_ct"], cat["paired_mr"], cat["ct_unpaired"], cat["mr_unpaired"], patients)


def check_pools(pools: SlicePools, variant: str, needs: Sequence[str], slice_files: Sequence[Path], unpaired_includes_paired: bool) -> None:
    """Raise :class:`InputError` when a pool the variant needs is empty."""
    missing = [p for p in needs if pools.count(p) == 0]
    if not missing:
        return
    roles: list[str] = []
    for p in missing:
        if p == "paired":
            roles.append("paired_train (ct and mr)")
        else:
            kind = p.split("_")[0]
            roles.append(f"{kind}_only ({kind})" + (" or paired_train" if unpaired_includes_paired else ""))
    names = ", ".join(Path(f).name for f in slice_files) or "none"
    hint = "" if unpaired_includes_paired else " (set unpaired_includes_paired: true to use paired_train slices as unpaired data)"
    raise InputError(
        None,
        f"variant {variant}",
        f"needs slices of role {' and '.join(roles)}, but the slice files given ({names}) have none{hint}",
    )


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels -> float32 in [-1, 1] (x / 127.5 - 1)."""
    return x.float() / 127.5 - 1.0
