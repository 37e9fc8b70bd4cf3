# 3D evaluation of the volume test patients (ct2mr.evaluation.volume_metrics), on the CT's 1 mm
# grid and only on the axial slices the model synthesized: the real MR's tissue map (ANTs Atropos
# inside the brain mask) once per patient, then one job per variant x seed x patient: 3D MAE / PSNR /
# MS-SSIM (SynthRAD 2025) in the head, the slice jump in the brain, the synthetic MR's tissue map and
# its Dice / HD95 against the real one (evaluation.segmentation; off: the 3D image metrics only).
# `evaluate` joins the one-row tables into per_patient.tsv.


rule segment_real:
    input:
        mr=f"{PRE}/mr_norm.nii.gz",
        brain=f"{PRE}/ct_brain_mask.nii.gz",
        slices="results/slices/{patient}.npz",
    output:
        "results/tissues/real/{patient}.nii.gz",
    log:
        "results/logs/evaluate/segment_real_{patient}.log",
    benchmark:
        "results/benchmarks/evaluate/segment_real_{patient}.tsv"
    wildcard_constraints:
        patient=one_of(TEST_3D),
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        settings=SEGMENTATION_ARGS,
    shell:
        "python -m ct2mr --threads {threads} segment-tissues --mr {input.mr:q} --brain-mask {input.brain:q}"
        " --slices {input.slices:q} --output {output:q} {params.settings} > {log:q} 2>&1"


rule evaluate_volume:
    input:
        **({"real_tissues": "results/tissues/real/{patient}.nii.gz"} if SEGMENT else {}),
        real=f"{PRE}/mr_norm.nii.gz",
        synth=f"{SYNTH}/{{patient}}_mr.nii.gz",
        head=f"{PRE}/ct_head_mask.nii.gz",
        brain=f"{PRE}/ct_brain_mask.nii.gz",
        slices="results/slices/{patient}.npz",
    output:
        **({"tissues": "results/tissues/{variant}/seed{seed}/{patient}.nii.gz"} if SEGMENT else {}),
        tsv="results/metrics/volume/{variant}/seed{seed}/{patient}.tsv",
    log:
        "results/logs/evaluate/volume_{variant}_seed{seed}_{patient}.log",
    benchmark:
        "results/benchmarks/evaluate/volume_{variant}_seed{seed}_{patient}.tsv"
    wildcard_constraints:
        patient=one_of(TEST_3D),
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        data_range=config["evaluation"]["data_range"],
        settings=SEGMENTATION_ARGS if SEGMENT else "",
    shell:
        "python -m ct2mr --threads {threads} evaluate-volume --patient {wildcards.patient} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --real {input.real:q} --synth {input.synth:q} --head-mask {input.head:q}"
        " --brain-mask {input.brain:q} --slices {input.slices:q} --output {output.tsv:q}"
        " --data-range {params.data_range} {params.settings}"
        + (" --real-tissues {input.real_tissues:q} --output-tissues {output.tissues:q}" if SEGMENT else "")
        + " > {log:q} 2>&1"


# Evaluation: MAE / PSNR / SSIM (0-255 scale, data range declared) per patient,
# variant and training seed (per_patient.tsv has a seed column), over the whole 256x256 slice (the paper's convention) and inside
# the head mask (SynthRAD-style); Table 1 layout. Under k-fold cross-validation every paired
# patient is a test patient once, and per_patient.tsv has its fold.


rule evaluate:
    input:
        slices=file_list("test_slices"),
        synth=[file_list(f"synth_{v}") for v in VARIANTS],
        volume=[file_list(f"volume_{v}") for v in VARIANTS],
        folds=folds_input,
    output:
        per_patient="results/metrics/per_patient.tsv",
        summary="results/metrics/summary.tsv",
        table1="results/metrics/table1.tsv",
    log:
        "results/logs/evaluate/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate/evaluate.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        variants=" ".join(VARIANTS),
        seeds=" ".join(map(str, SEEDS)),
        data_range=config["evaluation"]["data_range"],
        folds=lambda w, input: f"--folds {shlex.quote(str(input.folds))}" if input.folds else "",
        volume=volume_flags,
    shell:
        "python -m ct2mr --threads {threads} evaluate --slices @{input.slices:q} --synth-dir results/synth"
        " --variants {params.variants} --seeds {params.seeds} --data-range {params.data_range}"
        " --per-patient {output.per_patient:q} --summary {output.summary:q}"
        " --table1 {output.table1:q} {params.folds} {params.volume} > {log:q} 2>&1"


# The comparisons: each variant against each baseline with the patient as the unit (seeds
# averaged within each patient; exact sign-flip test and t-interval over patients; the
# seed-to-seed spread in its own column), one primary comparison declared in the config
# (evaluation.primary) tested at 0.05 and every other row Holm-adjusted
# (ct2mr.evaluation.comparisons; validated by simulation in tests/test_comparisons_simulation.py).
rule compare:
    input:
        "results/metrics/per_patient.tsv",
    output:
        "results/metrics/comparisons.tsv",
    log:
        "results/logs/evaluate/compare.log",
    benchmark:
        "results/benchmarks/evaluate/compare.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        variant=COMPARE_VARIANT,
        primary=PRIMARY_ARGS,
    shell:
        "python -m ct2mr --threads {threads} compare --per-patient {input:q} --output {output:q}"
        " --variant {params.variant} {params.primary} > {log:q} 2>&1"


# Per-patient QC (ct2mr.evaluation.qc): each patient x variant's masked MAE as a z-score within its
# variant and its mean tissue Dice against the variant's median (flags), beside the MR brain-mask
# method it got; and the Spearman correlation of each image metric with the mean Dice.
rule qc:
    input:
        per_patient="results/metrics/per_patient.tsv",
        mask_qa=file_list("mask_qa_mr"),
    output:
        qc="results/metrics/qc.tsv",
        correlation="results/metrics/dice_correlation.tsv",
    log:
        "results/logs/evaluate/qc.log",
    benchmark:
        "results/benchmarks/evaluate/qc.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "python -m ct2mr --threads {threads} qc --per-patient {input.per_patient:q} --mask-qa @{input.mask_qa:q}"
        " --qc {output.qc:q} --correlation {output.correlation:q} > {log:q} 2>&1"
