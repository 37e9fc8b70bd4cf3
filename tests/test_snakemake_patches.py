"""ct2mr.pipeline.snakemake_patches: each patch probes the installed Snakemake first and applies only where the
probe shows its bug; Snakemake looks each function's parameters up once, with the same answer."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("snakemake")

import snakemake.common as sm_common  # noqa: E402
import snakemake.jobs as sm_jobs  # noqa: E402
import snakemake.rules as sm_rules  # noqa: E402

from ct2mr.pipeline.snakemake_patches import cache_function_params  # noqa: E402


def test_parameters_are_looked_up_once_and_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_function_params()
    assert cache_function_params()  # idempotent
    patched = sm_common.get_function_params
    assert sm_rules.get_function_params is patched and sm_jobs.get_function_params is patched

    calls = []
    real_signature = inspect.signature

    def counting_signature(func, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(func)
        return real_signature(func, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting_signature)

    def f(wildcards, input, threads):  # noqa: ANN001, ANN202, A002
        return threads

    for _ in range(5):
        assert list(patched(f)) == ["wildcards", "input", "threads"]
    assert calls.count(f) == 1
    # what Snakemake derives from it is unchanged
    assert sm_common.get_input_function_aux_params(f, {"input": 1, "output": 2, "threads": 3}) == {
        "input": 1, "threads": 3}


def test_forced_parameters_and_unhashable_callables_are_not_cached() -> None:
    assert cache_function_params()
    patched = sm_common.get_function_params

    def g(*args):  # noqa: ANN002, ANN202
        return args

    assert "args" in patched(g)
    sm_common.overwrite_function_params(g, ["wildcards"])  # Snakemake forces them (subpath, ...)
    assert patched(g) == ["wildcards"]

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, wildcards):  # noqa: ANN001, ANN204
            return wildcards

    assert list(patched(Unhashable())) == ["wildcards"]


# --------------------------------------------------------------------------- probe first, patch only then

import dataclasses  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from dataclasses import field  # noqa: E402

import snakemake.persistence as sm_persistence  # noqa: E402

from ct2mr.pipeline import snakemake_patches as sp  # noqa: E402
from ct2mr.pipeline.snakemake_patches import fix_list_changes_params, snakemake_version  # noqa: E402

LOGGER = "ct2mr.pipeline.snakemake_patches"


@pytest.fixture()
def fresh_warnings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Each test starts with no skip warned yet in this process, and captures the warnings."""
    monkeypatch.setattr(sp, "_WARNED", set())
    caplog.set_level(logging.WARNING, logger=LOGGER)
    return caplog


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def _params_change_class(fixed: bool) -> type:
    """A copy of Snakemake 9.27.1's ``ParamsChange``; ``fixed``: its ``__iter__`` as a fixed release would have it."""

    @dataclasses.dataclass
    class ParamsChange:
        only_old: set = field(default_factory=set)
        only_new: set = field(default_factory=set)
        files: set = field(default_factory=set)

        def __bool__(self) -> bool:
            return bool(self.only_old or self.only_new)

        def __or__(self, other):  # noqa: ANN001, ANN204
            if not self:
                return other
            if not other:
                return self
            return ParamsChange(self.only_old | other.only_old, self.only_new | other.only_new,
                                self.files | other.files)

        def __iter__(self):  # noqa: ANN204
            return iter(self.files if (self or not fixed) else ())

    return ParamsChange


def _pristine_get_function_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snakemake's own ``get_function_params`` back in its modules (undone after the test)."""
    current = sm_common.get_function_params
    original = getattr(current, "__wrapped__", current)
    for module in (sm_common, sm_rules, sm_jobs):
        if getattr(module, "get_function_params", None) in (current, original):
            monkeypatch.setattr(module, "get_function_params", original)


def test_both_patches_apply_on_the_checked_snakemake(monkeypatch: pytest.MonkeyPatch,
                                                    fresh_warnings: pytest.LogCaptureFixture) -> None:
    """On Snakemake 9.27.1 (the version checked by hand) both probes find their case and both patches apply."""
    if snakemake_version() != "9.27.1":
        pytest.skip(f"Snakemake {snakemake_version()}: the probes decide (tested with simulated releases below)")
    real = sm_persistence.ParamsChange
    monkeypatch.setattr(real, "__iter__", lambda self: iter(self.files))  # 9.27.1's own __iter__
    monkeypatch.setattr(real, "_ct2mr_fixed", False, raising=False)
    assert list(real() | real(files={"a.txt"})) == ["a.txt"]  # the bug, as released
    assert fix_list_changes_params()
    assert list(real() | real(files={"a.txt"})) == [] and list(real(only_new={"'x'"}, files={"b"})) == ["b"]
    assert fix_list_changes_params()  # idempotent

    _pristine_get_function_params(monkeypatch)
    original = sm_common.get_function_params
    assert cache_function_params()
    assert sm_common.get_function_params is not original
    assert sm_common.get_function_params.__wrapped__ is original
    assert sm_rules.get_function_params is sm_common.get_function_params is sm_jobs.get_function_params
    assert _warnings(fresh_warnings) == []


def test_buggy_params_change_is_patched(monkeypatch: pytest.MonkeyPatch,
                                        fresh_warnings: pytest.LogCaptureFixture) -> None:
    buggy = _params_change_class(fixed=False)
    monkeypatch.setattr(sm_persistence, "ParamsChange", buggy)
    assert fix_list_changes_params()
    assert list(buggy() | buggy(files={"a"})) == [] and list(buggy(only_old={"'y'"}, files={"a"})) == ["a"]
    assert _warnings(fresh_warnings) == []


def test_fixed_upstream_turns_the_list_changes_patch_off(monkeypatch: pytest.MonkeyPatch,
                                                        fresh_warnings: pytest.LogCaptureFixture) -> None:
    fixed = _params_change_class(fixed=True)
    own_iter = fixed.__iter__
    monkeypatch.setattr(sm_persistence, "ParamsChange", fixed)
    assert not fix_list_changes_params()
    assert not fix_list_changes_params()
    assert fixed.__iter__ is own_iter and not hasattr(fixed, "_ct2mr_fixed")
    (msg,) = _warnings(fresh_warnings)  # one line, once
    assert "fix_list_changes_params" in msg and snakemake_version() in msg and "fixed upstream" in msg


def test_renamed_or_changed_params_change_warns_and_does_not_raise(monkeypatch: pytest.MonkeyPatch,
                                                                   fresh_warnings: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(sm_persistence, "ParamsChange")
    assert not fix_list_changes_params()
    assert "does not import" in _warnings(fresh_warnings)[-1]

    @dataclasses.dataclass
    class Renamed:  # fields renamed: the probe cannot build it
        before: set = field(default_factory=set)
        after: set = field(default_factory=set)

    monkeypatch.setattr(sm_persistence, "ParamsChange", Renamed, raising=False)
    assert not fix_list_changes_params()
    assert "no longer builds" in _warnings(fresh_warnings)[-1]

    monkeypatch.setitem(sys.modules, "snakemake.persistence", None)  # the import itself fails
    assert not fix_list_changes_params()
    assert not fix_list_changes_params()
    assert len(_warnings(fresh_warnings)) == 3  # one line per reason, however often the workflow loads
    assert "does not import" in _warnings(fresh_warnings)[-1]


def test_upstream_cache_turns_the_function_params_patch_off(monkeypatch: pytest.MonkeyPatch,
                                                            fresh_warnings: pytest.LogCaptureFixture) -> None:
    _pristine_get_function_params(monkeypatch)
    cached = functools.lru_cache(maxsize=None)(sm_common.get_function_params)
    monkeypatch.setattr(sm_common, "get_function_params", cached)
    assert not cache_function_params()
    assert sm_common.get_function_params is cached
    (msg,) = _warnings(fresh_warnings)
    assert "cache_function_params" in msg and snakemake_version() in msg and "cached upstream" in msg

    memo: dict = {}  # a hand-written cache (no lru attributes): the same answer object twice

    def memoised(func):  # noqa: ANN001, ANN202
        if hasattr(func, sm_common.FUNC_OVERWRITE_PARAMS_ATTR):
            return getattr(func, sm_common.FUNC_OVERWRITE_PARAMS_ATTR)
        if func not in memo:
            memo[func] = inspect.signature(func).parameters
        return memo[func]

    monkeypatch.setattr(sm_common, "get_function_params", memoised)
    assert not cache_function_params()
    assert "cached answer upstream" in _warnings(fresh_warnings)[-1]


def test_renamed_or_changed_get_function_params_warns_and_does_not_raise(
        monkeypatch: pytest.MonkeyPatch, fresh_warnings: pytest.LogCaptureFixture) -> None:
    _pristine_get_function_params(monkeypatch)
    monkeypatch.delattr(sm_common, "get_function_params")
    assert not cache_function_params()
    assert not cache_function_params()
    assert len(_warnings(fresh_warnings)) == 1 and "gone" in _warnings(fresh_warnings)[0]

    def two_args(func, default=None):  # noqa: ANN001, ANN202
        return inspect.signature(func).parameters

    monkeypatch.setattr(sm_common, "get_function_params", two_args, raising=False)
    assert not cache_function_params()
    assert "not the expected" in _warnings(fresh_warnings)[-1]

    def broken(func):  # noqa: ANN001, ANN202
        raise RuntimeError("internal error")

    monkeypatch.setattr(sm_common, "get_function_params", broken)
    assert not cache_function_params()
    assert "failed on a probe" in _warnings(fresh_warnings)[-1]

    monkeypatch.delattr(sm_common, "FUNC_OVERWRITE_PARAMS_ATTR")
    assert not cache_function_params()
    assert "FUNC_OVERWRITE_PARAMS_ATTR" in _warnings(fresh_warnings)[-1]

    monkeypatch.setitem(sys.modules, "snakemake.common", None)
    assert not cache_function_params()
    assert "does not import" in _warnings(fresh_warnings)[-1]
