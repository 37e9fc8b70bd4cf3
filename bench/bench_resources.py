"""Right-sized cluster requests from a finished run's own measurements.

Reads the Snakemake ``benchmark:`` TSVs (s, max_rss, ...) under
``<results>/benchmarks/`` of one or more finished runs, gives each file its rule
(the rules' ``benchmark:`` patterns in workflow/rules/*.smk; where several rules
share one pattern, e.g. slices / slices_png / slices_pool, the run's
``.snakemake/metadata`` record of the job's first output names the rule), and writes
bench/results/resources.md and .json: per rule n jobs, max and p95 of max_rss
(MB) and wall time (s), what the rule requests now (ct2mr.pipeline.cluster_resources, else
the SLURM profile's default-resources), the ratio request / measured max, and the
recommended request.

Recommendation = measured max x ``HEADROOM`` (1.5), rounded up to 250 MB / 5 min
(at least one step). For the rules whose work grows with the head volume (all but
the phantom and 2D rules) the measured max is first scaled to a 256^3 head at 1 mm:
x (256^3 / the largest 1 mm grid of the run, read from results/preprocessed/*/ct.nii.gz
and mr_native.nii.gz). Linear scaling of the whole RSS (interpreter and libraries
included) errs on the safe side where the run's grid is smaller than 256^3 (not for
every stage: window_ct uses more than linearly), so the 256^3 measurements of
bench/results/preprocess.json (`cli peak RSS`, `cli wall` of one `python -m ct2mr`
process per stage) count too: the recommendation starts from the larger of the two.

Usage::

    python bench/bench_resources.py                       # results/ of the repo
    python bench/bench_resources.py --results /scratch/run1/results --results /scratch/run2/results
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_resources)
    sys.path.insert(0, str(REPO / "bench"))

from ct2mr.pipeline.cluster_resources import HEADROOM, MEM_STEP_MB, RULE_RESOURCES, RUNTIME_STEP_MIN, recommend  # noqa: E402
from provenance import commit_line, provenance  # noqa: E402

RULES_DIR = REPO / "workflow" / "rules"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
OUT = REPO / "bench" / "results" / "resources"
#: stage -> rule of bench/results/preprocess.json (measured at 256^3 and more)
PREPROCESS_JSON = REPO / "bench" / "results" / "preprocess.json"
PREPROCESS_STAGES = {"resample": "prepare_ct", "skull-mask ct": "prepare_ct", "skull-mask mr": "prepare_mr",
                     "window ct": "slices", "window mr": "slices", "slices": "slices"}
#: a job that runs several stages: its wall time is their sum, its memory their max
#: the head the requests are sized for: 256^3 voxels at 1 mm
TARGET_VOXELS = 256**3
#: rules whose size is not the head volume's (never scaled): the phantom's scans, and
#: the 2D rules (their work grows with the number of images)
UNSCALED = re.compile(r"^(phantom_\w+|slices_png|slices_pool)$")
RULE_BLOCK = re.compile(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t].*\n|\n)*)", re.M)
QUOTED_AFTER = r"^\s+{key}:\s*\n\s+(?:\w+=)?\"([^\"]+)\""


def rule_patterns(rules_dir: Path = RULES_DIR) -> dict[str, tuple[str, str | None]]:
    """rule -> (benchmark pattern, first output pattern) from the rule files' text."""
    out = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        for name, body in RULE_BLOCK.findall(smk.read_text()):
            bench = re.search(QUOTED_AFTER.format(key="benchmark"), body, re.M)
            output = re.search(QUOTED_AFTER.format(key="output"), body, re.M)
            if bench:
                out[name] = (bench.group(1), output.group(1) if output else None)
    return out


def pattern_regex(pattern: str) -> re.Pattern:
    """'results/benchmarks/ingest/{patient}_{modality}.tsv' -> a regex with named groups."""
    parts, seen = [], set()
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", pattern):
        parts.append(re.escape(literal))
        if name:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
    return re.compile("".join(parts) + "$")


def output_rules(run_dir: Path) -> dict[str, str]:
    """output path -> rule, from the run's .snakemake/metadata records (one file per
    output, named by the output path in urlsafe base64)."""
    out = {}
    meta = run_dir / ".snakemake" / "metadata"
    for f in meta.glob("*") if meta.is_dir() else ():
        try:
            rec = json.loads(f.read_text())
            path = base64.urlsafe_b64decode(f.name + "=" * (-len(f.name) % 4)).decode()
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        out[path] = rec.get("rule")
    return out


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall s, max_rss MB) of a benchmark TSV (the max over its repeats)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return 0.0
    return max(num(r["s"]) for r in rows), max(num(r.get("max_rss")) for r in rows)


def grid_voxels(results: Path) -> int | None:
    """The largest resampled (1 mm) grid of the run, in voxels."""
    import SimpleITK as sitk

    best = None
    for f in sorted(results.glob("preprocessed/*/ct.nii.gz")) + sorted(results.glob("preprocessed/*/mr_native.nii*")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(f))
        reader.ReadImageInformation()
        n = math.prod(reader.GetSize())
        best = n if best is None else max(best, n)
    return best


def collect(results_dirs: list[Path]) -> tuple[dict[str, list[tuple[float, float, str]]], list[str], int | None]:
    """rule -> [(wall s, max_rss MB, file)], unmatched files, largest grid."""
    patterns = rule_patterns()
    regexes = {r: pattern_regex(b) for r, (b, _) in patterns.items()}
    by_rule: dict[str, list] = {}
    unmatched, grids = [], []
    for results in results_dirs:
        run_dir = results.parent
        produced_by = output_rules(run_dir)
        grids.append(grid_voxels(results))
        for tsv in sorted((results / "benchmarks").rglob("*.tsv")):
            rel = f"results/{tsv.relative_to(results)}"
            cands = [(r, m) for r, rx in regexes.items() if (m := rx.match(rel))]
            rule = None
            if len(cands) == 1:
                rule = cands[0][0]
            elif cands:  # several rules share the pattern: the run's record of the first output says which
                for r, m in cands:
                    first_output = patterns[r][1]
                    if first_output and produced_by.get(first_output.format(**m.groupdict())) == r:
                        rule = r
                        break
            if rule is None:
                unmatched.append(str(tsv))
                continue
            wall, rss = read_benchmark(tsv)
            by_rule.setdefault(rule, []).append((wall, rss, str(tsv)))
    known = [g for g in grids if g]
    return by_rule, unmatched, max(known) if known else None


def bench_256(path: Path = PREPROCESS_JSON) -> dict[str, tuple[float, float]]:
    """rule -> (max cli wall s, max cli peak RSS MB) at 256^3 (or larger) from preprocess.json."""
    if not path.is_file():
        return {}
    out: dict[str, tuple[float, float]] = {}
    per_shape: dict[tuple[str, str], tuple[float, float]] = {}
    for row in json.loads(path.read_text()).get("rows", []):
        stage = row.get("stage", "")
        rule = next((r for s, r in PREPROCESS_STAGES.items() if stage.startswith(s)), None)
        if rule is None or "x" not in row.get("shape", "") or math.prod(map(int, row["shape"].split("x"))) < TARGET_VOXELS:
            continue
        wall, rss = per_shape.get((rule, row["shape"]), (0.0, 0.0))
        per_shape[(rule, row["shape"])] = (wall + row["cli_s"], max(rss, row["cli_peak_rss_mb"]))
    for (rule, _), (wall, rss) in per_shape.items():
        w, r = out.get(rule, (0.0, 0.0))
        out[rule] = (max(w, wall), max(r, rss))
    for rule in ("slices_ct", "slices_mr"):  # one scan's window + slices: at most the paired job's
        if "slices" in out:
            out[rule] = out["slices"]
    return out


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def profile_defaults() -> dict[str, int]:
    import yaml

    return (yaml.safe_load(PROFILE.read_text()) or {}).get("default-resources") or {}


def summarise(by_rule: dict, grid: int | None) -> list[dict]:
    defaults = profile_defaults()
    at_256 = bench_256()
    rows = []
    for rule in sorted(set(by_rule) | set(RULE_RESOURCES)):
        req = RULE_RESOURCES.get(rule)
        req_mem = req.mem_mb if req else defaults.get("mem_mb")
        req_rt = req.runtime if req else defaults.get("runtime")
        jobs = by_rule.get(rule, [])
        row = {"rule": rule, "n_jobs": len(jobs), "requested_mem_mb": req_mem, "requested_runtime_min": req_rt,
               "request_source": "ct2mr.pipeline.cluster_resources" if req else "profile default-resources"}
        if jobs:
            walls, rsss = [j[0] for j in jobs], [j[1] for j in jobs]
            scale = 1.0 if UNSCALED.match(rule) or not grid else max(1.0, TARGET_VOXELS / grid)
            b_wall, b_rss = at_256.get(rule, (0.0, 0.0))
            rec = recommend(max(max(rsss) * scale, b_rss), max(max(walls) * scale, b_wall))
            row.update({
                "bench_256_rss_mb": round(b_rss, 1) if b_rss else None,
                "bench_256_wall_s": round(b_wall, 2) if b_wall else None,
                "max_rss_mb": round(max(rsss), 1), "p95_rss_mb": round(p95(rsss), 1),
                "max_wall_s": round(max(walls), 2), "p95_wall_s": round(p95(walls), 2),
                "scale_to_256": round(scale, 2),
                "mem_ratio": round(req_mem / max(rsss), 1) if req_mem and max(rsss) else None,
                "runtime_ratio": round(req_rt * 60 / max(walls), 1) if req_rt and max(walls) else None,
                "recommended_mem_mb": rec.mem_mb, "recommended_runtime_min": rec.runtime,
            })
        rows.append(row)
    return rows


def bench_cell(r: dict) -> str:
    return f"{r['bench_256_rss_mb']} / {r['bench_256_wall_s']}" if r.get("bench_256_rss_mb") else "-"


def write(rows: list[dict], results_dirs: list[Path], grid: int | None, unmatched: list[str], note: str = "") -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance()  # the commit of this analysis (the runs read may have been made by others)
    meta = {"commit": prov["commit"], "recorded": prov["recorded"],
            "results": [str(r) for r in results_dirs], "data_note": note, "largest_grid_voxels": grid, "target_voxels": TARGET_VOXELS,
            "headroom": HEADROOM, "mem_step_mb": MEM_STEP_MB, "runtime_step_min": RUNTIME_STEP_MIN,
            "unmatched_benchmarks": unmatched, "rules": rows}
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    scale_txt = (f"x {TARGET_VOXELS / grid:.2f} (256^3 / {grid} voxels, the run's largest 1 mm grid)"
                 if grid else "not scaled (no resampled grid found in the run)")
    lines = [
        "# Cluster requests per rule, from recorded benchmarks",
        "",
        commit_line(prov["commit"]),
        "",
        "Written by `bench/bench_resources.py` (rerun: `PYTHONPATH=src .venv/bin/python bench/bench_resources.py"
        " --results <run>/results`).",
        "",
        f"256^3 bench: `{PREPROCESS_JSON.relative_to(REPO)}` (one process per stage on a 256^3 / 321^3 phantom"
        " head; its MR skull mask used the morphology method, not deepbet)." if PREPROCESS_JSON.is_file() else
        "256^3 bench: none (bench/results/preprocess.json missing).",
        "",
        "Data: the `benchmark:` TSVs (Snakemake's `s` = wall seconds, `max_rss` = MB) of the run(s) "
        + ", ".join(f"`{r}`" for r in results_dirs) + "." + (f" {note}" if note else ""),
        "",
        f"Recommendation = measured max x {HEADROOM} headroom, for the head-sized rules first scaled {scale_txt};"
        f" rounded up to {MEM_STEP_MB} MB / {RUNTIME_STEP_MIN} min (at least one step). Requested = what the rule asks"
        " for now (`src/ct2mr/pipeline/cluster_resources.py`, else the SLURM profile's default-resources); ratio ="
        " requested / measured max (unscaled).",
        "",
        "| rule | n jobs | max RSS MB | p95 RSS MB | max wall s | p95 wall s | requested mem_mb | mem ratio |"
        " requested runtime min | runtime ratio | scale | 256^3 bench RSS MB / wall s | recommended mem_mb |"
        " recommended runtime min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["n_jobs"]:
            lines.append(
                f"| {r['rule']} | {r['n_jobs']} | {r['max_rss_mb']} | {r['p95_rss_mb']} | {r['max_wall_s']} |"
                f" {r['p95_wall_s']} | {r['requested_mem_mb']} | {r['mem_ratio']} | {r['requested_runtime_min']} |"
                f" {r['runtime_ratio']} | {r['scale_to_256']} |"
                f" {bench_cell(r)} |"
                f" {r['recommended_mem_mb']} | {r['recommended_runtime_min']} |"
            )
        else:
            lines.append(
                f"| {r['rule']} | 0 | not measured | | | | {r['requested_mem_mb']} | | {r['requested_runtime_min']} |"
                " | | | (no benchmark in these runs: request kept) | |"
            )
    lines += [
        "",
        "Caveats: the runs ran on 2 shared, loaded cores, so wall times are inflated, and every runtime still"
        " lands on the 5 min floor. `prepare_ct` / `prepare_mr` read the raw scan at its own resolution (the"
        " phantom's CT is 262x300x48): a thin-slice 512x512x300 CT is ~20 times that, so cohorts of such scans"
        " should measure their own run with this script (or raise those two, e.g."
        " `--set-resources prepare_ct:mem_mb=3000`). `prepare_mr` ran the `auto` MR method (deepbet CNN on CPU)"
        " and is the largest request. Rules without a benchmark here keep their request; rules outside"
        " `src/ct2mr/pipeline/cluster_resources.py` (the aggregates such as `registration_table`, and `train` on a GPU) keep"
        " the profile's default-resources / set-resources whatever this table recommends.",
    ]
    if unmatched:
        lines += ["", f"Benchmarks of rules outside this table (aggregates, not sized here): {len(unmatched)}, e.g. "
                  + ", ".join(f"`{Path(u).name}`" for u in unmatched[:5]) + "."]
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", action="append", type=Path,
                    help="a finished run's results/ folder (several allowed; default: the repo's results/)")
    ap.add_argument("--data-note", default="", help="what the runs were (cohort, command), for the report")
    args = ap.parse_args(argv)
    dirs = [d.resolve() for d in (args.results or [REPO / "results"])]
    missing = [d for d in dirs if not (d / "benchmarks").is_dir()]
    if missing:
        ap.error(f"no benchmarks/ under {', '.join(map(str, missing))}")
    by_rule, unmatched, grid = collect(dirs)
    rows = summarise(by_rule, grid)
    write(rows, dirs, grid, unmatched, args.data_note)
    for r in rows:
        print(r["rule"], r["n_jobs"], r.get("max_rss_mb"), r.get("max_wall_s"),
              r.get("recommended_mem_mb"), r.get("recommended_runtime_min"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
