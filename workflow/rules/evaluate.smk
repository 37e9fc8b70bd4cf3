# Evaluation: MAE / PSNR / SSIM (0-255 scale, data range declared) per patient,
# variant and training seed (per_patient.tsv has a seed column), over the whole 256x256 slice (the paper's convention) and inside
# the head mask (SynthRAD-style); Table 1 layout. Under k-fold cross-validation every paired
# patient is a test patient once, and per_patient.tsv has its fold.


rule evaluate:
    input:
        slices=file_list("test_slices"),
        synth=[file_list(f"synth_{v}") for v in VARIANTS],
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
        folds=lambda w, input: f"--folds {input.folds}" if input.folds else "",
    shell:
        "python -m ct2mr --threads {threads} evaluate --slices @{input.slices} --synth-dir results/synth"
        " --variants {params.variants} --seeds {params.seeds} --data-range {params.data_range}"
        " --per-patient {output.per_patient} --summary {output.summary}"
        " --table1 {output.table1} {params.folds} > {log} 2>&1"


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
        "python -m ct2mr --threads {threads} compare --per-patient {input} --output {output}"
        " --variant {params.variant} {params.primary} > {log} 2>&1"
