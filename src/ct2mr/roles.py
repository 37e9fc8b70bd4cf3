"""Patient roles used by training, in a module with no third-party imports.

``ct2mr.patients`` (which needs pandas and jsonschema) re-exports
:data:`TRAIN_ROLES`; the training modules import it from here so that they run
on a GPU machine that has only torch, numpy, scipy, pandas, matplotlib and
PyYAML (see ``bench/gpu_check.py``).
"""

from __future__ import annotations

#: roles whose slices train the networks (paired_test is held out)
TRAIN_ROLES: tuple[str, ...] = ("paired_train", "ct_only", "mr_only")
