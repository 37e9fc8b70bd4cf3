"""The whole per-patient preprocessing chain for one 256^3 head, timed as the pipeline runs it.

Two figures per case:

* ``library``: the stages called in one Python process on in-memory images
  (ingest -> resample -> skull masks -> registration -> window -> slices);
* ``cli``: one ``python -m ct2mr`` process per stage (ingest, resample, skull-mask,
  register, window, slices) reading and writing compressed NIfTI, sequentially: how
  the workflow ran a patient until the stages were grouped into jobs;
* ``jobs``: the workflow's jobs of one patient as it runs them now, sequentially:
  ``ct2mr prepare`` (ingest + resample + skull masks) per scan, ``ct2mr register``,
  ``ct2mr normalise-slices`` (window + normalisation + slices);
* ``workflow``: the real Snakefile on a one-patient table, ``snakemake --cores 2
  results/slices/<patient>.npz`` (CT and MR jobs run side by side; Snakemake's
  own start-up and planning included). Target (issue 11): at most 1.3x ``library``.

Cases: the phantom head whose CT resamples to 256^3 at 1 mm (CT 0.8 x 0.8 x 2.0 mm,
FOV 256 mm; MR at the default 1.2 x 1.1 x 3.0 mm), and the real head CT of
../shared/data/volumes (CT-only chain: no registration), when present.
Target (issue): the whole chain for one 256^3 head in 15 s or less on 2 cores.

Reproduce: ``.venv/bin/python bench/bench_chain.py`` -> bench/results/chain.md + chain.json
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
#: skull_mask.mr_method of every chain (--mr-method; default: the config's default, auto)
MR_METHOD = "auto"
REAL_CT = REPO.parent / "shared" / "data" / "volumes" / "ct_head_invesalius.nii.gz"
sys.path.insert(0, str(REPO / "src"))
if str(REPO / "bench") not in sys.path:  # provenance (also when imported as bench.bench_chain)
    sys.path.insert(0, str(REPO / "bench"))
from provenance import commit_line, provenance  # noqa: E402


def _cli(*args: str) -> tuple[float, float]:
    """Run one ct2mr command; (wall seconds, peak RSS MB of the child)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ct2mr", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"ct2mr {args[0]} failed:\n{proc.stderr[-3000:]}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def cli_chain(ct: Path, mr: Path | None, truth: Path | None, work: Path) -> dict:
    d = work
    steps: list[tuple[str, list[str]]] = [
        ("ingest ct", ["ingest", "--modality", "ct", "--input", str(ct), "--output", f"{d}/ct_in.nii.gz"]),
        ("resample ct", ["resample", "--input", f"{d}/ct_in.nii.gz", "--output", f"{d}/ct.nii.gz",
                         "--default-value", "-1024"]),
        ("skull-mask ct", ["skull-mask", "--modality", "ct", "--input", f"{d}/ct.nii.gz",
                           "--head-mask", f"{d}/ct_head.nii.gz", "--skull-mask", f"{d}/ct_skull.nii.gz",
                           "--brain-mask", f"{d}/ct_brainmask.nii.gz", "--stripped", f"{d}/ct_brain.nii.gz",
                           "--qa-png", f"{d}/qa_ct.png"]),
        ("window ct", ["window", "--modality", "ct", "--input", f"{d}/ct.nii.gz", "--output", f"{d}/ct_w.nii.gz"]),
    ]
    if mr is not None:
        steps += [
            ("ingest mr", ["ingest", "--modality", "mr", "--input", str(mr), "--output", f"{d}/mr_in.nii.gz"]),
            ("resample mr", ["resample", "--input", f"{d}/mr_in.nii.gz", "--output", f"{d}/mr_native.nii.gz",
                             "--default-value", "0"]),
            ("skull-mask mr", ["skull-mask", "--modality", "mr", "--input", f"{d}/mr_native.nii.gz",
                               "--head-mask", f"{d}/mr_head.nii.gz", "--brain-mask", f"{d}/mr_brainmask.nii.gz",
                               "--stripped", f"{d}/mr_brain.nii.gz", "--qa-png", f"{d}/qa_mr.png",
                               "--method", MR_METHOD]),
            ("register", ["register", "--fixed", f"{d}/ct_brain.nii.gz", "--fixed-mask", f"{d}/ct_brainmask.nii.gz",
                          "--fixed-full", f"{d}/ct.nii.gz", "--moving", f"{d}/mr_brain.nii.gz",
                          "--moving-mask", f"{d}/mr_brainmask.nii.gz",
                          "--moving-full", f"{d}/mr_native.nii.gz", "--out-image", f"{d}/mr.nii.gz",
                          "--out-transform", f"{d}/t.tfm", "--qa-json", f"{d}/qa.json", "--qa-png", f"{d}/qa.png",
                          *(["--truth", str(truth)] if truth else [])]),
            ("window mr", ["window", "--modality", "mr", "--input", f"{d}/mr.nii.gz", "--mask", f"{d}/ct_head.nii.gz",
                           "--output", f"{d}/mr_n.nii.gz"]),
        ]
    steps.append(("slices", ["slices", "--patient", "B", "--role", "paired_train" if mr else "ct_only",
                             "--ct", f"{d}/ct_w.nii.gz", *(["--mr", f"{d}/mr_n.nii.gz"] if mr else []),
                             "--head-mask", f"{d}/ct_head.nii.gz", "--brain-mask", f"{d}/ct_brainmask.nii.gz",
                             "--output", f"{d}/slices.npz"]))
    out = {}
    for name, args in steps:
        out[name] = _cli(*args)[0]
    qa = json.loads((d / "qa.json").read_text()) if mr is not None else {}
    return {"stages_s": out, "total_s": sum(out.values()), "tre_mm": qa.get("tre_mm")}


def jobs_chain(ct: Path, mr: Path | None, truth: Path | None, work: Path) -> dict:
    """The workflow's per-patient jobs (ct2mr prepare / register / normalise-slices), one after another."""
    d = work / "jobs"
    d.mkdir()
    steps: list[tuple[str, list[str]]] = [
        ("prepare ct", ["prepare", "--modality", "ct", "--input", str(ct), "--output", f"{d}/ct.nii.gz",
                        "--head-mask", f"{d}/ct_head.nii.gz", "--skull-mask", f"{d}/ct_skull.nii.gz",
                        "--brain-mask", f"{d}/ct_brainmask.nii.gz", "--stripped", f"{d}/ct_brain.nii",
                        "--qa-png", f"{d}/qa_ct.png"]),
    ]
    images = ["--ct", f"{d}/ct.nii.gz", "--ct-window", f"{d}/ct_w.nii.gz"]
    if mr is not None:
        steps += [
            ("prepare mr", ["prepare", "--modality", "mr", "--input", str(mr), "--output", f"{d}/mr_native.nii",
                            "--head-mask", f"{d}/mr_head.nii.gz", "--brain-mask", f"{d}/mr_brainmask.nii.gz",
                            "--stripped", f"{d}/mr_brain.nii", "--qa-png", f"{d}/qa_mr.png",
                            "--qa-json", f"{d}/qa_mr.json", "--method", MR_METHOD]),
            ("register", ["register", "--fixed", f"{d}/ct_brain.nii", "--fixed-mask", f"{d}/ct_brainmask.nii.gz",
                          "--fixed-full", f"{d}/ct.nii.gz", "--moving", f"{d}/mr_brain.nii",
                          "--moving-mask", f"{d}/mr_brainmask.nii.gz",
                          "--moving-full", f"{d}/mr_native.nii", "--out-image", f"{d}/mr.nii.gz",
                          "--out-transform", f"{d}/t.tfm", "--qa-json", f"{d}/qa.json", "--qa-png", f"{d}/qa.png",
                          *(["--truth", str(truth)] if truth else [])]),
        ]
        images += ["--mr", f"{d}/mr.nii.gz", "--mr-mask", f"{d}/ct_head.nii.gz", "--mr-norm", f"{d}/mr_n.nii.gz"]
    steps.append(("normalise-slices", ["normalise-slices", "--patient", "B",
                                       "--role", "paired_train" if mr else "ct_only", *images,
                                       "--head-mask", f"{d}/ct_head.nii.gz", "--brain-mask", f"{d}/ct_brainmask.nii.gz",
                                       "--output", f"{d}/slices.npz"]))
    out = {name: _cli(*args)[0] for name, args in steps}
    # the same commands with the same outputs (QA images, .nii.gz files), in this one process
    from ct2mr.cli import main as ct2mr_main

    one = {}
    for name, args in steps:
        s = time.perf_counter()
        if ct2mr_main(args):
            raise RuntimeError(f"in-process {name} failed")
        one[name] = time.perf_counter() - s
    return {"stages_s": out, "total_s": sum(out.values()), "one_process_s": one,
            "one_process_total_s": sum(one.values())}


def workflow_chain(ct: Path, mr: Path | None, truth: Path | None, work: Path) -> dict:
    """Wall time of ``snakemake --cores 2`` up to the patient's slice file (default config)."""
    import yaml

    row = ["B", "paired_train" if mr else "ct_only", str(ct), str(mr) if mr else "", str(truth) if truth else ""]
    (work / "patients.tsv").write_text("patient\trole\tct\tmr\ttruth\n" + "\t".join(row) + "\n")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["patients"] = "patients.tsv"
    config["skull_mask"]["mr_method"] = MR_METHOD
    config["training"]["unpaired_includes_paired"] = True  # one patient, no unpaired rows (nothing trains here)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", "2", "results/slices/B.npz"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"snakemake failed:\n{proc.stderr[-3000:]}")
    qa = work / "results" / "preprocessed" / "B" / "registration_qa.json"
    jobs = {f"{f.parent.name}/{f.stem}": float(f.read_text().splitlines()[1].split("\t")[0])
            for f in sorted((work / "results" / "benchmarks").rglob("*.tsv"))}
    return {"total_s": wall, "tre_mm": json.loads(qa.read_text())["tre_mm"] if qa.is_file() else None,
            "jobs_s": jobs}


def library_chain(ct: Path, mr: Path | None, truth: Path | None) -> dict:
    from ct2mr.preprocess.ingest import ingest
    from ct2mr.preprocess.register import resample_to
    from ct2mr.preprocess.registration import RegistrationSettings, register_affine
    from ct2mr.preprocess.registration.quality import mask_points, tre_mm
    from ct2mr.preprocess.registration.truth import truth_from_json
    from ct2mr.preprocess.resample import resample_isotropic
    from ct2mr.preprocess.skull_mask import ct_masks, mr_masks
    from ct2mr.preprocess.slices import extract_slices
    from ct2mr.preprocess.window import normalise_mr, window_ct

    t: dict[str, float] = {}

    def timed(name, fn, *a, **k):  # noqa: ANN001, ANN202
        s = time.perf_counter()
        r = fn(*a, **k)
        t[name] = time.perf_counter() - s
        return r

    ct_img = timed("ingest ct", ingest, ct, "ct")
    ct1 = timed("resample ct", resample_isotropic, ct_img, (1.0, 1.0, 1.0), "linear", -1024)
    cm = timed("skull-mask ct", ct_masks, ct1)
    ctw = timed("window ct", window_ct, ct1)
    mrn, tre = None, None
    if mr is not None:
        mr_img = timed("ingest mr", ingest, mr, "mr")
        mr1 = timed("resample mr", resample_isotropic, mr_img, (1.0, 1.0, 1.0), "linear", 0)
        mm = timed("skull-mask mr", mr_masks, mr1, method=MR_METHOD)
        res = timed("register", register_affine, cm.stripped, mm.stripped, "simpleitk",
                    fixed_mask=cm.brain, moving_mask=mm.brain, settings=RegistrationSettings())
        mr_on_ct = timed("apply transform", resample_to, mr1, ct1, res.transform)
        mrn = timed("window mr", normalise_mr, mr_on_ct, cm.head)
        if truth is not None:
            tre = tre_mm(res.transform, truth_from_json(truth), mask_points(cm.brain, 5000, 0))
    timed("slices", extract_slices, ctw, mrn, cm.head, cm.brain, patient="B",
          role="paired_train" if mr else "ct_only")
    return {"stages_s": t, "total_s": sum(t.values()), "tre_mm": tre}


def main() -> None:
    import argparse

    global MR_METHOD  # noqa: PLW0603 - one setting for the three chains
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mr-method", default="auto", choices=["auto", "deepbet", "morphology"],
                    help="MR brain extraction in every chain (default auto, the config's default); "
                         "results go to chain.md, or chain_<method>.md for another method")
    args = ap.parse_args()
    MR_METHOD = args.mr_method
    stem = "chain" if MR_METHOD == "auto" else f"chain_{MR_METHOD}"
    from ct2mr.io.imageio import write_image
    from ct2mr.phantom.patient import PhantomParams, make_patient
    from ct2mr.preprocess.registration.truth import truth_to_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        p = make_patient("B001", 7, PhantomParams(ct_spacing_mm=(0.8, 0.8, 2.0), fov_mm=(256.0, 256.0, 256.0)))
        write_image(p.ct, tmp / "ct.nii.gz")
        write_image(p.mr, tmp / "mr.nii.gz")
        (tmp / "truth.json").write_text(json.dumps(truth_to_json(p.truth)))
        inputs = {"phantom_256": (tmp / "ct.nii.gz", tmp / "mr.nii.gz", tmp / "truth.json")}
        if REAL_CT.is_file():
            inputs["real_ct"] = (REAL_CT, None, None)
        for name, (ct, mr, truth) in inputs.items():
            work = tmp / name
            work.mkdir()
            cases[name] = {
                "input_ct_size": list(sitk.ReadImage(str(ct)).GetSize()),
                "library": library_chain(ct, mr, truth),
                "cli": cli_chain(ct, mr, truth, work),
                "jobs": jobs_chain(ct, mr, truth, work),
            }
            if mr is not None:  # the workflow needs a trainable patient table: paired cases only
                (work / "wf").mkdir()
                cases[name]["workflow"] = workflow_chain(ct, mr, truth, work / "wf")
            print(name, json.dumps({k: round(v["total_s"], 2) for k, v in cases[name].items() if isinstance(v, dict)}),
                  flush=True)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(), "python": platform.python_version(), "simpleitk": sitk.Version_VersionString(),
        "load_average": os.getloadavg(), "target_s": 15.0, "target_ratio": 1.3, "mr_method": MR_METHOD,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps({"commit": prov["commit"], "recorded": prov["recorded"],
                                                      "meta": meta, "cases": cases}, indent=2) + "\n")
    lines = [
        "# Whole preprocessing chain per patient (ingest -> slices, registration included)", "",
        commit_line(prov["commit"]), "",
        f"Reproduce: `.venv/bin/python bench/bench_chain.py{'' if MR_METHOD == 'auto' else ' --mr-method ' + MR_METHOD}` "
        f"(MR brain extraction `{MR_METHOD}`; {meta['when']}, {meta['cpus']} CPUs, "
        f"SimpleITK {meta['simpleitk']}, 1-min load average at the end {meta['load_average'][0]:.2f}).", "",
        "`library` = the stages in one process on in-memory images; `cli` = one `python -m ct2mr` "
        "process per stage with compressed NIfTI in between, run one after another (the workflow's jobs "
        "until issue 11); `jobs` = the workflow's jobs now (`ct2mr prepare` per scan, `register`, "
        "`normalise-slices`), one after another, each its own process; `one process` = those commands called "
        "in this one Python process (imports paid once; the same outputs, QA images and QA numbers as the "
        "workflow writes, which `library` does not compute or write); `workflow` = "
        "`snakemake --cores 2 results/slices/<patient>.npz` with the real Snakefile and the default "
        "config (the CT and MR jobs run side by side; Snakemake start-up included).", "",
        "| case | stage | library (s) | cli (s) |", "|---|---|---:|---:|",
    ]
    for name, c in cases.items():
        for stage in c["cli"]["stages_s"]:
            lib = c["library"]["stages_s"].get(stage)
            lines.append(f"| {name} | {stage} | {'' if lib is None else f'{lib:.2f}'} | {c['cli']['stages_s'][stage]:.2f} |")
        if "apply transform" in c["library"]["stages_s"]:
            lines.append(f"| {name} | (apply transform, inside register in cli) | "
                         f"{c['library']['stages_s']['apply transform']:.2f} | |")
        tre = c["library"]["tre_mm"]
        lines.append(f"| **{name}** | **total** | **{c['library']['total_s']:.1f}** | **{c['cli']['total_s']:.1f}** |")
        if tre is not None:
            lines.append(f"| {name} | TRE (mm) | {tre:.2f} | {c['cli']['tre_mm']:.2f} |")
        for stage, v in c["jobs"]["stages_s"].items():
            lines.append(f"| {name} | job: {stage} | | {v:.2f} |")
        lines.append(f"| **{name}** | **jobs, one after another** | | **{c['jobs']['total_s']:.1f}** |")
        lines.append(f"| **{name}** | **the same jobs' commands in one process (same outputs and QA)** | "
                     f"**{c['jobs']['one_process_total_s']:.1f}** | |")
        wf = c.get("workflow")
        if wf is None:
            continue
        for job, v in wf["jobs_s"].items():
            lines.append(f"| {name} | workflow job {job} (benchmark s) | | {v:.2f} |")
        ratio = wf["total_s"] / c["library"]["total_s"]
        ratio_out = wf["total_s"] / c["jobs"]["one_process_total_s"]
        lines.append(f"| **{name}** | **workflow, snakemake --cores 2** | | **{wf['total_s']:.1f}** "
                     f"(**{ratio:.2f}x** library; **{ratio_out:.2f}x** one process with the same outputs) |")
    lines += ["", f"Targets: <= {meta['target_s']:.0f} s for one 256^3 head on 2 cores; the workflow "
              f"<= {meta['target_ratio']:.1f}x the in-process chain (issue 11)."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
