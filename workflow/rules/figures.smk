# The paper's figures from our own data: Figure 5 (CT / synthesized MR / reference
# MR / absolute error), Figure 6 (the variants side by side), Figure 7 (CT /
# synthesized MR / reconstructed CT / relative difference), per-patient metrics and
# loss curves, and where mrgan's error differs from each baseline's (difference maps).
# Figure 2 (registration overlays) is made by the register rule.
# Figures 5-7 and the difference maps show the models of one seed (FIG_SEED, the
# lowest of training.seeds); the metrics figure shows every seed, the loss figure
# every variant and seed.


rule fig_synthesis:
    input:
        slices="results/slices/{patient}.npz",
        synth=f"results/synth/{MAIN_VARIANT}/seed{FIG_SEED}/{{patient}}_slices.npz",
    output:
        report(
            "results/figures/synthesis_{patient}.png",
            caption="../report/fig_synthesis.rst",
            category="4. Evaluation",
            subcategory="Figure 5: synthesis",
            labels={"patient": "{patient}", "figure": "Figure 5"},
        ),
    log:
        "results/logs/figures/synthesis_{patient}.log",
    benchmark:
        "results/benchmarks/figures/synthesis_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind synthesis --slices {input.slices} --synth {input.synth}"
        " --output {output} > {log} 2>&1"


rule fig_variants:
    input:
        slices="results/slices/{patient}.npz",
        synth=expand("results/synth/{variant}/seed{seed}/{{patient}}_slices.npz", variant=VARIANTS, seed=FIG_SEED),
    output:
        report(
            "results/figures/variants_{patient}.png",
            caption="../report/fig_variants.rst",
            category="4. Evaluation",
            subcategory="Figure 6: variants",
            labels={"patient": "{patient}", "figure": "Figure 6"},
        ),
    log:
        "results/logs/figures/variants_{patient}.log",
    benchmark:
        "results/benchmarks/figures/variants_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind variants --slices {input.slices} --synth {input.synth}"
        " --output {output} > {log} 2>&1"


rule fig_cycle:
    input:
        slices="results/slices/{patient}.npz",
        synth=expand("results/synth/{variant}/seed{seed}/{{patient}}_slices.npz", variant=CYCLE_VARIANTS, seed=FIG_SEED),
    output:
        report(
            "results/figures/cycle_{patient}.png",
            caption="../report/fig_cycle.rst",
            category="4. Evaluation",
            subcategory="Figure 7: cycle",
            labels={"patient": "{patient}", "figure": "Figure 7"},
        ),
    log:
        "results/logs/figures/cycle_{patient}.log",
    benchmark:
        "results/benchmarks/figures/cycle_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind cycle --slices {input.slices} --synth {input.synth}"
        " --output {output} > {log} 2>&1"


rule fig_metrics:
    input:
        "results/metrics/per_patient.tsv",
    output:
        report(
            "results/figures/metrics.png",
            caption="../report/fig_metrics.rst",
            category="4. Evaluation",
            subcategory="Per-patient metrics",
            labels={"figure": "metrics per patient"},
        ),
    log:
        "results/logs/figures/metrics.log",
    benchmark:
        "results/benchmarks/figures/metrics.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind metrics --per-patient {input} --output {output} > {log} 2>&1"


rule fig_losses:
    input:
        expand(f"{MODEL}/losses.tsv", variant=VARIANTS, seed=SEEDS),
    output:
        report(
            "results/figures/losses.png",
            caption="../report/fig_losses.rst",
            category="3. Training",
            subcategory="Loss curves",
            labels={"variant": "all", "figure": "loss curves"},
        ),
    log:
        "results/logs/figures/losses.log",
    benchmark:
        "results/benchmarks/figures/losses.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind losses --losses {input} --output {output} > {log} 2>&1"


rule fig_difference:
    input:
        slices=file_list("test_slices"),
        variant=lambda w: file_list(f"synth_{w.variant}"),
        baseline=lambda w: file_list(f"synth_{w.baseline}"),
    output:
        report(
            "results/figures/difference_{variant}_vs_{baseline}.png",
            caption="../report/fig_difference.rst",
            category="4. Evaluation",
            subcategory="Where the difference lies",
            labels={"comparison": "{variant} vs {baseline}", "figure": "mean |error| difference"},
        ),
    log:
        "results/logs/figures/difference_{variant}_vs_{baseline}.log",
    benchmark:
        "results/benchmarks/figures/difference_{variant}_vs_{baseline}.tsv"
    wildcard_constraints:
        baseline=one_of(VARIANTS),
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind difference --test-slices @{input.slices} --synth @{input.variant}"
        " --baseline-synth @{input.baseline} --output {output} > {log} 2>&1"
