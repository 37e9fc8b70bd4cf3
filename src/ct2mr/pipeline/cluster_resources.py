"""What each per-patient rule asks a cluster for: memory (MB) and wall time (minutes).

The one place of these numbers: the rules' ``resources:`` read them from here
(``workflow/rules/*.smk``), and ``bench/bench_resources.py`` compares them with a
finished run's ``benchmark:`` measurements and writes its recommendation to
``bench/results/resources.md``. Sized for a 256^3 head at 1 mm (the recommendation
= measured maximum x ``HEADROOM``, rounded up to ``MEM_STEP_MB`` / ``RUNTIME_STEP_MIN``);
where that file says a rule was not measured, the number here is a plain guess.

Locally only ``mem_mb`` matters (with ``--resources mem_mb=...``); under SLURM
(``profiles/slurm``) the rules of one patient's preprocessing run as one group job,
whose request Snakemake derives from these: memory and CPUs summed over the jobs
that can run side by side, runtime summed over the steps (README "SLURM").
"""

from __future__ import annotations

from typing import NamedTuple

#: measured maximum x HEADROOM = the request
HEADROOM = 1.5
#: requests are rounded up to these steps (and are at least one step)
MEM_STEP_MB = 250
RUNTIME_STEP_MIN = 5


class Request(NamedTuple):
    mem_mb: int
    runtime: int  # minutes


#: rule -> request: bench/results/resources.md's recommendations (phantom demo cohort at 1 mm,
#: scaled to 256^3, and bench/results/preprocess.json at 256^3; PNG/pool rules: the
#: Harvard pairs and 2D pools). Before: 4000 MB / 60 min each (register 6000 / 120).
RULE_RESOURCES: dict[str, Request] = {
    "phantom_volume": Request(mem_mb=500, runtime=5),
    "phantom_dicom": Request(mem_mb=500, runtime=5),
    "phantom_truth": Request(mem_mb=250, runtime=5),
    "prepare_ct": Request(mem_mb=1000, runtime=5),
    "prepare_mr": Request(mem_mb=2750, runtime=5),
    "register": Request(mem_mb=1250, runtime=5),
    "slices": Request(mem_mb=1000, runtime=5),
    "slices_ct": Request(mem_mb=1000, runtime=5),
    "slices_mr": Request(mem_mb=1000, runtime=5),
    "slices_png": Request(mem_mb=500, runtime=5),
    "slices_pool": Request(mem_mb=500, runtime=5),
}


def recommend(max_rss_mb: float, max_wall_s: float) -> Request:
    """The request for a rule whose jobs used at most ``max_rss_mb`` and ``max_wall_s``."""
    mem = max(MEM_STEP_MB, -(-int(max_rss_mb * HEADROOM) // MEM_STEP_MB) * MEM_STEP_MB)
    minutes = max_wall_s * HEADROOM / 60
    runtime = max(RUNTIME_STEP_MIN, -(-int(minutes + 0.999999) // RUNTIME_STEP_MIN) * RUNTIME_STEP_MIN)
    return Request(mem_mb=mem, runtime=runtime)
