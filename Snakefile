# ct2mr: CT -> MR synthesis with MR-GAN (Jin et al., 2018), from raw scans to a report.
#
#   snakemake --cores 8 --use-conda           # GPU workstation (profiles/workstation)
#   snakemake --profile profiles/slurm        # SLURM cluster
#   snakemake --report results/report.html    # the report, after a run
#
# Rule files in run order: phantom; prepare (ingest, resample and skull masking of
# one scan, one job); register; slices (CT window, MR normalisation and slices of
# one patient, one job); train, synthesize, evaluate, figures, report. Each stage's
# logic is in the src/ct2mr package of its family, in the module named for it
# (preprocess/skull_mask.py, training/train.py, evaluation/metrics.py, ...):
# DEVELOPING.md maps every folder to its stages and rule files.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# The project's own code (src/ct2mr) is importable here and in every job without an
# install step, in the project venv and in each rule's conda env alike (ct2mr.pipeline.jobenv).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))


include: "workflow/rules/common.smk"
include: "workflow/rules/phantom.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/slices.smk"
include: "workflow/rules/lists.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/synthesize.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_outputs(),


rule preprocess:
    input:
        preprocess_outputs(),


# Large cohorts (5,000 patients and more): preprocess in shards with Snakemake's own
# `--batch`, one patient's slice file (and so its whole chain) per input of this rule:
#   snakemake --batch patient_slices=1/4 patient_slices ... --batch patient_slices=4/4 patient_slices
# then `snakemake` as usual (bench/results/dag_scale.md: each shard's planning time).
rule patient_slices:
    input:
        expand("results/slices/{patient}.npz", patient=sorted(PATIENTS)),
