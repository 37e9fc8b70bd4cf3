# Evaluation: MAE / PSNR / SSIM (0-255 scale, data range declared) per patient,
# variant and training seed (per_patient.tsv has a seed column), over the whole 256x256 slice (the paper's convention) and inside
# the head mask (SynthRAD-style); Table 1 layout; Wilcoxon tests of mrgan
# against each baseline.


rule evaluate:
    input:
        slices=file_list("test_slices"),
        synth=[file_list(f"synth_{v}") for v in VARIANTS],
    output:
        per_patient="results/metrics/per_patient.tsv",
        summary="results/metrics/summary.tsv",
        stats="results/metrics/wilcoxon.tsv",
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
    shell:
        "python -m ct2mr --threads {threads} evaluate --slices @{input.slices} --synth-dir results/synth"
        " --variants {params.variants} --seeds {params.seeds} --data-range {params.data_range}"
        " --per-patient {output.per_patient} --summary {output.summary} --stats {output.stats}"
        " --table1 {output.table1} > {log} 2>&1"


# mrgan against each baseline with statistics that can decide with few patients:
# a hierarchical bootstrap CI (patients, then seeds within patients) and a sign-flip
# permutation test over the patient x seed differences (ct2mr.evaluation.comparisons).
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
    shell:
        "python -m ct2mr --threads {threads} compare --per-patient {input} --output {output}"
        " --variant {params.variant} > {log} 2>&1"
