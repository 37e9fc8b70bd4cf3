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

Probe first, patch only then. Only Snakemake 9.27.1 was checked by hand, so each
patch first asks the installed Snakemake whether its bug (or speed-up opportunity) is
there: :func:`fix_list_changes_params` builds two ``ParamsChange`` objects and looks
whether an unchanged one still iterates its files; :func:`cache_function_params`
checks that ``get_function_params`` exists with the one-argument signature and the
forced-parameter attribute it wraps, answers as expected, and does not cache
already. A patch whose probe finds the bug fixed, an internal renamed or a changed
behaviour is skipped with one ``logging`` warning per process (the patch, the
Snakemake version and why), and nothing here ever raises: a failed import or probe
must not stop the workflow from loading (the patches are a fix of a listing and a
speed-up, not something a run depends on).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: the Snakemake modules that imported ``get_function_params`` by name (they are patched too)
_IMPORTERS = ("snakemake.common", "snakemake.rules", "snakemake.jobs")

#: (patch, reason) pairs already warned about in this process: each skip warns once
_WARNED: set[tuple[str, str]] = set()


def snakemake_version() -> str:
    """The installed Snakemake's version, or ``"unknown"`` (never raises)."""
    try:
        import importlib.metadata  # noqa: PLC0415

        return importlib.metadata.version("snakemake")
    except Exception:  # noqa: BLE001 - a version is only for the message
        return "unknown"


def _skip(patch: str, why: str) -> bool:
    """Warn (once per process and reason) that ``patch`` is not applied, and why; returns False."""
    if (patch, why) not in _WARNED:
        _WARNED.add((patch, why))
        log.warning("ct2mr Snakemake patch %s not applied (Snakemake %s): %s", patch, snakemake_version(), why)
    return False


# --------------------------------------------------------------------------- get_function_params cache


def _probe_function_params(common: Any) -> str | None:
    """None when ``snakemake.common.get_function_params`` is the uncached lookup this patch wraps,
    else why not (renamed, other signature, other answers, or already cached upstream)."""
    original = getattr(common, "get_function_params", None)
    if original is None or not callable(original):
        return "snakemake.common.get_function_params is gone (renamed internal?)"
    overwrite = getattr(common, "FUNC_OVERWRITE_PARAMS_ATTR", None)
    if not isinstance(overwrite, str):
        return "snakemake.common.FUNC_OVERWRITE_PARAMS_ATTR is gone: forced parameters could be cached wrongly"
    try:
        sig = inspect.signature(original)
    except (TypeError, ValueError) as exc:
        return f"get_function_params has no readable signature ({exc})"
    positional = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(sig.parameters) != 1 or len(positional) != 1:
        return f"get_function_params{sig} is not the expected get_function_params(func)"
    if hasattr(original, "cache_info") or hasattr(original, "cache_clear"):
        return "get_function_params is already cached upstream"

    def probe(wildcards, input):  # noqa: ANN001, ANN202, A002
        return wildcards, input

    def forced(*args):  # noqa: ANN002, ANN202
        return args

    setattr(forced, overwrite, ["wildcards"])
    try:
        first, second = original(probe), original(probe)
        forced_answer = original(forced)
    except Exception as exc:  # noqa: BLE001 - any failure only means: do not patch
        return f"get_function_params failed on a probe function ({type(exc).__name__}: {exc})"
    if not isinstance(first, Mapping) or list(first) != ["wildcards", "input"]:
        return f"get_function_params answers {first!r}, not the parameters mapping this patch caches"
    if list(forced_answer) != ["wildcards"]:
        return f"get_function_params ignores {overwrite} (answers {forced_answer!r}): forced parameters changed"
    if first is second:
        return "get_function_params already returns a cached answer upstream"
    return None


def cache_function_params() -> bool:
    """Make Snakemake's ``get_function_params`` look each function up once.

    The cache is keyed by the function object (a bound method by its object and
    function); an unhashable callable, or one whose parameters Snakemake forces
    (``overwrite_function_params``), is looked up every time, as before. Applied only
    when :func:`_probe_function_params` finds the uncached lookup it wraps; returns
    whether it patched (False, with one warning, when Snakemake is missing, renamed
    the function, changed it, or caches already). Never raises.
    """
    name = "cache_function_params"
    try:
        common = importlib.import_module("snakemake.common")
    except Exception as exc:  # noqa: BLE001 - the workflow must load without the speed-up
        return _skip(name, f"snakemake.common does not import ({type(exc).__name__}: {exc})")
    original = getattr(common, "get_function_params", None)
    if getattr(original, "_ct2mr_cached", False):
        return True
    why = _probe_function_params(common)
    if why is not None:
        return _skip(name, why)
    assert original is not None  # the probe found it
    cache: dict[Any, Mapping[str, Any]] = {}
    overwrite: str = common.FUNC_OVERWRITE_PARAMS_ATTR

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
    common.get_function_params = get_function_params
    for module_name in _IMPORTERS[1:]:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - the common module is patched; this one keeps the original
            log.debug("%s: %s not patched (%s)", name, module_name, exc)
            continue
        if getattr(module, "get_function_params", None) is original:
            module.get_function_params = get_function_params  # type: ignore[attr-defined]
    return True


# --------------------------------------------------------------------------- --list-changes params


def _iter_only_changes(self: Any) -> Iterator[str]:
    """``ParamsChange.__iter__`` as it should be: the files of a real change, nothing otherwise."""
    return iter(self.files if self else ())


def _probe_params_change(params_change: type) -> str | None:
    """None when ``ParamsChange`` has the bug (an unchanged one iterates its files), else why not."""
    try:
        unchanged = params_change() | params_change(files={"ct2mr-probe"})
        iterated = list(unchanged)
        changed = params_change(only_new={"'x'"}, files={"ct2mr-probe"})
        changed_truth = bool(changed)
    except Exception as exc:  # noqa: BLE001 - another ParamsChange: do not patch it
        return f"ParamsChange no longer builds as ParamsChange(only_new=..., files=...) ({type(exc).__name__}: {exc})"
    if not changed_truth:
        return "a ParamsChange with new params is false: its meaning changed, the patch would hide real changes"
    if bool(unchanged):
        return "an unchanged ParamsChange is true: its meaning changed"
    if not iterated:
        return "an unchanged ParamsChange already iterates nothing (fixed upstream)"
    if iterated != ["ct2mr-probe"]:
        return f"an unchanged ParamsChange iterates {iterated!r}, not its files: unknown behaviour"
    return None


def fix_list_changes_params() -> bool:
    """Make ``snakemake --list-changes params`` list only outputs whose params changed.

    Snakemake 9 (seen in 9.27.1) records, for every job, a ``ParamsChange`` whose
    ``files`` names the job's last output even when nothing changed (its
    ``__or__`` returns the empty-but-named right operand), and ``--list-changes``
    iterates those files: on an up-to-date run it lists one output of every job
    (153 on the demo). Rerun decisions are not affected (they use the object's
    truth value). This makes iterating an unchanged ``ParamsChange`` yield
    nothing. Called from workflow/rules/common.smk; applied only when
    :func:`_probe_params_change` shows the bug; returns whether it patched (False,
    with one warning, when the class is gone or changed, or the bug fixed). Never raises.
    """
    name = "fix_list_changes_params"
    try:
        from snakemake.persistence import ParamsChange  # noqa: PLC0415
    except Exception as exc:  # noqa: BLE001 - the workflow must load without the fix
        return _skip(name, f"snakemake.persistence.ParamsChange does not import ({type(exc).__name__}: {exc})")
    if getattr(ParamsChange, "_ct2mr_fixed", False):
        return True
    why = _probe_params_change(ParamsChange)
    if why is not None:
        return _skip(name, why)
    original = ParamsChange.__dict__.get("__iter__")
    ParamsChange.__iter__ = _iter_only_changes  # type: ignore[method-assign]
    if _probe_params_change(ParamsChange) is None or list(ParamsChange(only_new={"'x'"}, files={"f"})) != ["f"]:
        # the patched class still shows the bug, or hides a real change: undo
        if original is not None:
            ParamsChange.__iter__ = original  # type: ignore[method-assign]
        else:
            del ParamsChange.__iter__
        return _skip(name, "patching ParamsChange.__iter__ did not fix the probe: left as it was")
    ParamsChange._ct2mr_fixed = True  # type: ignore[attr-defined]
    return True
