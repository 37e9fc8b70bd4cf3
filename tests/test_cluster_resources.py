"""The per-rule cluster requests (ct2mr.pipeline.cluster_resources) and bench/bench_resources.py."""

from __future__ import annotations

import re
from pathlib import Path

from bench.bench_resources import pattern_regex, rule_patterns
from ct2mr.pipeline.cluster_resources import RULE_RESOURCES, Request, recommend

REPO = Path(__file__).resolve().parents[1]


def test_recommend_known_answer() -> None:
    # 1000 MB x 1.5 = 1500 -> 1500; 100 s x 1.5 = 2.5 min -> the 5 min floor
    assert recommend(1000, 100) == Request(mem_mb=1500, runtime=5)
    assert recommend(1001, 401) == Request(mem_mb=1750, runtime=15)  # 1501.5 -> 1750; 10.03 min -> 15
    assert recommend(10, 1) == Request(mem_mb=250, runtime=5)


def test_every_grouped_rule_has_its_request() -> None:
    """The SLURM profile's grouped rules (one sbatch per patient) each read their request from RULE_RESOURCES."""
    import yaml

    grouped = set((yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text()) or {}).get("groups") or {})
    bodies = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        bodies.update(dict(re.findall(r"^rule (\w+):\n((?:[ \t].*\n|\n)*)", smk.read_text(), re.M)))
    assert grouped and grouped <= set(bodies), sorted(grouped - set(bodies))
    for name in grouped:
        assert f'RULE_RESOURCES["{name}"]' in bodies[name], name
    assert grouped <= set(RULE_RESOURCES)
    assert set(RULE_RESOURCES) <= set(rule_patterns())  # each has a benchmark to be measured by


def test_benchmark_pattern_to_rule() -> None:
    patterns = rule_patterns()
    rx = pattern_regex(patterns["prepare_mr"][0])
    assert rx.match("results/benchmarks/prepare/P01_mr.tsv").groupdict() == {"patient": "P01"}
    assert not rx.match("results/benchmarks/prepare/P01_ct.tsv")
