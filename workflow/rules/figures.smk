# The paper's figures from our own data: Figure 5 (CT / synthesized MR / reference
# MR / absolute error), Figure 6 (the variants side by side), Figure 7 (CT /
# synthesized MR / reconstructed CT / relative difference), per-patient metrics and
# loss curves, and where mrgan's error differs from each baseline's (difference maps).
# Figure 2 (registration overlays) is made by the register rule.
# Figures 5-7 and the difference maps show the models of one seed (FIG_SEED, the
# lowest of training.seeds); the metrics figure shows every seed, the loss figure
# every variant and seed.


rule fig_patient:
    input:
        **{v: f"results/synth/{v}/seed{FIG_SEED}/{{patient}}_slices.npz" for v in VARIANTS},
        slices="results/slices/{patient}.npz",
    output:
        **{
            kind: report(
                f"results/figures/{kind}_{{patient}}.png",
                caption=f"../report/fig_{kind}.rst",
                category="4. Evaluation",
                subcategory=subcategory,
                labels={"patient": "{patient}", "figure": figure},
            )
            for kind, (subcategory, figure, _) in PATIENT_FIGURES.items()
        },
    log:
        **{kind: f"results/logs/figures/{kind}_{{patient}}.log" for kind in PATIENT_FIGURES},
    benchmark:
        "results/benchmarks/figures/patient_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        patient_figures_shell()


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
        "python -m ct2mr figures --kind metrics --per-patient {input:q} --output {output:q} > {log:q} 2>&1"


rule fig_losses:
    input:
        model_files("losses.tsv"),
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
        "python -m ct2mr figures --kind losses --losses {input:q} --output {output:q} > {log:q} 2>&1"


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
        "python -m ct2mr figures --kind difference --test-slices @{input.slices:q} --synth @{input.variant:q}"
        " --baseline-synth @{input.baseline:q} --output {output:q} > {log:q} 2>&1"


# Tissue maps of one volume test patient (TISSUE_PATIENT, the first), real vs each variant's
# synthetic MR (seed FIG_SEED): what the Dice columns of per_patient.tsv measure.
rule fig_tissues:
    input:
        volumes=[f"{PRE.format(patient=TISSUE_PATIENT)}/mr_norm.nii.gz"]
        + [f"results/synth/{v}/seed{FIG_SEED}/{TISSUE_PATIENT}_mr.nii.gz" for v in VARIANTS],
        tissues=[f"results/tissues/real/{TISSUE_PATIENT}.nii.gz"]
        + [f"results/tissues/{v}/seed{FIG_SEED}/{TISSUE_PATIENT}.nii.gz" for v in VARIANTS],
    output:
        report(
            "results/figures/tissues.png",
            caption="../report/fig_tissues.rst",
            category="4. Evaluation",
            subcategory="Tissue segmentation",
            labels={"patient": str(TISSUE_PATIENT), "figure": "tissue maps"},
        ),
    log:
        "results/logs/figures/tissues.log",
    benchmark:
        "results/benchmarks/figures/tissues.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "python -m ct2mr figures --kind tissues --volumes {input.volumes:q} --tissues {input.tissues:q}"
        " --output {output:q} > {log:q} 2>&1"
