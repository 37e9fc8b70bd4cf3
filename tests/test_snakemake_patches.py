"""ct2mr.pipeline.snakemake_patches: Snakemake looks each function's parameters up once, with the same answer."""

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
