"""The true-affine JSON format: what ``ct2mr register --truth`` reads and ``ct2mr phantom --truth`` writes.

One affine maps a fixed (CT) physical point to the moving (MR) physical point
(mm, LPS), ITK semantics ``q = matrix @ (p - center) + center + translation``;
``sitk.Resample(mr, ct, transform)`` then puts the MR onto the CT anatomy.
Keys: ``matrix`` (row-major 3x3), ``translation`` (3), ``center`` (3) and
``convention`` (:data:`TRUTH_CONVENTION`); a writer may add more keys (the
phantom adds ``patient``, ``seed``, ``params``), readers ignore them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ct2mr.errors import InputError
from ct2mr.preprocess.registration.base import as_affine

#: text stored in the truth JSON
TRUTH_CONVENTION = (
    "ITK AffineTransform: maps a fixed (CT) physical point p (mm, LPS) to the moving (MR) point "
    "q = matrix @ (p - center) + center + translation; registered_MR(p) = MR(q), i.e. "
    "sitk.Resample(mr, ct, transform)"
)


def truth_to_json(transform: sitk.Transform) -> dict[str, Any]:
    """JSON-ready dict of an affine (CT/fixed point -> MR/moving point, mm, LPS).

    Keys: ``matrix`` (row-major 3x3), ``translation`` (3), ``center`` (3), all mm,
    and ``convention`` (text). ITK semantics:
    ``q = matrix @ (p - center) + center + translation``.
    """
    aff = sitk.AffineTransform(transform) if isinstance(transform, sitk.AffineTransform) else as_affine(transform)
    return {
        "matrix": np.asarray(aff.GetMatrix()).reshape(3, 3).tolist(),
        "translation": list(aff.GetTranslation()),
        "center": list(aff.GetCenter()),
        "convention": TRUTH_CONVENTION,
    }


def truth_from_json(path: str | os.PathLike[str]) -> sitk.AffineTransform:
    """Read a truth JSON written by :func:`truth_to_json` (CT point -> MR point).

    Raises InputError naming the file and the key when it is missing or malformed.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, None, "does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(p, None, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(p, None, "expected a JSON object with matrix, translation, center")
    shapes = {"matrix": (3, 3), "translation": (3,), "center": (3,)}
    vals: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key not in data:
            raise InputError(p, key, "missing")
        try:
            arr = np.asarray(data[key], dtype=float)
        except (TypeError, ValueError):
            raise InputError(p, key, f"expected numbers of shape {shape}") from None
        if arr.shape != shape or not np.all(np.isfinite(arr)):
            raise InputError(p, key, f"expected finite numbers of shape {shape}, got shape {arr.shape}")
        vals[key] = arr
    t = sitk.AffineTransform(3)
    t.SetCenter([float(v) for v in vals["center"]])
    t.SetMatrix([float(v) for v in vals["matrix"].ravel()])
    t.SetTranslation([float(v) for v in vals["translation"]])
    return t
