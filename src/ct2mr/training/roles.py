"""Patient roles used by training, in a module with no third-party imports.

``ct2mr.cohort.patients`` (which needs pandas and jsonschema) re-exports
:data:`TRAIN_ROLES`; the training modules import it from here so that they run
on a GPU machine that has only torch, numpy, scipy, pandas, matplotlib and
PyYAML (see ``bench/gpu_check.py``).
"""

from __future__ import annotations

#: roles whose slices train the networks (paired_test is held out)
TRAIN_ROLES: tuple[str, ...] = ("paired_train", "ct_only", "mr_only")

#: data pools each training variant draws from each iteration (torch-free copy of
#: :func:`ct2mr.training.losses.data_for`; ``tests/test_config.py`` checks they agree)
VARIANT_POOLS: dict[str, tuple[str, ...]] = {
    "paired": ("paired",),
    "unpaired": ("ct_unpaired", "mr_unpaired"),
    "mrgan": ("ct_unpaired", "mr_unpaired", "paired"),
    "regression": ("paired",),
}


def pool_roles(unpaired_includes_paired: bool) -> dict[str, tuple[str, ...]]:
    """Patient roles whose slices fill each data pool (``training.unpaired_includes_paired``
    adds the paired_train patients to the unpaired CT and MR pools)."""
    extra = ("paired_train",) if unpaired_includes_paired else ()
    return {
        "paired": ("paired_train",),
        "ct_unpaired": ("ct_only", *extra),
        "mr_unpaired": ("mr_only", *extra),
    }


def variant_roles(variant: str, unpaired_includes_paired: bool) -> set[str]:
    """Patient roles whose slices a variant trains on (the union of its pools' roles)."""
    roles = pool_roles(unpaired_includes_paired)
    return {r for pool in VARIANT_POOLS[variant] for r in roles[pool]}
