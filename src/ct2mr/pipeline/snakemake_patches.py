"""The workflow's patches of Snakemake's own process, all in one place (called from
workflow/rules/common.smk). Each returns whether it patched, and patches at most once.

:func:`fix_list_changes_params`: ``snakemake --list-changes params`` lists only the
outputs whose params really changed.

:func:`cache_function_params`: planning speed for large cohorts, without changing any
plan. Snakemake 9 (seen in 9.27.1) calls ``inspect.signature`` on every input, param
and resource function each time it evaluates one for one job
(``snakemake.common.get_function_params``): about ten calls per job, 7 % of a
2000-patient dry run under cProfile (bench/results/dag_scale.md). A function's
parameters never change, so they are looked up once per function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: the Snakemake modules that imported ``get_function_params`` by name (they are patched too)
_IMPORTERS = ("snakemake.common", "snakemake.rules", "snakemake.jobs")


def cache_function_params() -> bool:
    """Make Snakemake's ``get_function_params`` look each function up once.

    The cache is keyed by the function object (a bound method by its object and
    function); an unhashable callable, or one whose parameters Snakemake forces
    (``overwrite_function_params``), is looked up every time, as before. Returns
    whether it patched (False when Snakemake no longer has the function).
    """
    import importlib

    try:
        common = importlib.import_module("snakemake.common")
        original = common.get_function_params
    except (ImportError, AttributeError):  # pragma: no cover - another Snakemake layout
        return False
    if getattr(original, "_ct2mr_cached", False):
        return True
    cache: dict[Any, Mapping[str, Any]] = {}

    overwrite = getattr(common, "FUNC_OVERWRITE_PARAMS_ATTR", "_overwrite_params")

    def get_function_params(func: Callable[..., Any]) -> Mapping[str, Any]:
        if hasattr(func, overwrite):  # parameters forced by Snakemake (subpath, ...): never cached
            return original(func)
        try:
            return cache[func]
        except KeyError:
            params = cache[func] = original(func)
            return params
        except TypeError:  # unhashable callable
            return original(func)

    get_function_params._ct2mr_cached = True  # type: ignore[attr-defined]
    get_function_params.__wrapped__ = original  # type: ignore[attr-defined]
    for name in _IMPORTERS:
        module = importlib.import_module(name)
        if getattr(module, "get_function_params", None) is original:
            module.get_function_params = get_function_params  # type: ignore[attr-defined]
    return True


def fix_list_changes_params() -> bool:
    """Make ``snakemake --list-changes params`` list only outputs whose params changed.

    Snakemake 9 (seen in 9.27.1) records, for every job, a ``ParamsChange`` whose
    ``files`` names the job's last output even when nothing changed (its
    ``__or__`` returns the empty-but-named right operand), and ``--list-changes``
    iterates those files: on an up-to-date run it lists one output of every job
    (153 on the demo). Rerun decisions are not affected (they use the object's
    truth value). This makes iterating an unchanged ``ParamsChange`` yield
    nothing. Called from workflow/rules/common.smk; returns whether it patched
    (False when Snakemake no longer has the class, e.g. a fixed release).
    """
    try:
        from snakemake.persistence import ParamsChange
    except ImportError:  # pragma: no cover - another Snakemake layout
        return False
    if getattr(ParamsChange, "_ct2mr_fixed", False):
        return True

    def __iter__(self: Any) -> Iterator[str]:
        return iter(self.files if self else ())

    ParamsChange.__iter__ = __iter__  # type: ignore[method-assign]
    ParamsChange._ct2mr_fixed = True  # type: ignore[attr-defined]
    return True
