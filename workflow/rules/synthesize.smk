# Synthesis: Syn_MR of each variant and seed on each paired_test patient's CT
# slices, put back into the CT's 1 mm grid (results/preprocessed/{patient}/ct.nii.gz):
# results/synth/{variant}/seed{seed}/. synthesis.tta averages Syn_MR(x) and
# flip(Syn_MR(flip(x))) (horizontal flip); it is a param, so changing it reruns synthesis. Variants that train
# Syn_CT (unpaired, mrgan) also write the reconstructed CT, Syn_CT(Syn_MR(CT)),
# for Figure 7. Batched; on the GPU when there is one. Under k-fold cross-validation a
# patient is synthesized by the models of its own fold (they never saw it), so the synthesis
# paths stay per variant and seed.


rule synthesize:
    input:
        weights=patient_model("syn_mr.pt"),
        model=patient_model("model.json"),
        slices="results/slices/{patient}.npz",
    output:
        mr=f"{SYNTH}/{{patient}}_mr.nii.gz",
        slices=f"{SYNTH}/{{patient}}_slices.npz",
    log:
        "results/logs/synthesize/{variant}_seed{seed}_{patient}.log",
    benchmark:
        "results/benchmarks/synthesize/{variant}_seed{seed}_{patient}.tsv"
    wildcard_constraints:
        variant=one_of([v for v in VARIANTS if v not in CYCLE_VARIANTS]),
    conda:
        "../../envs/evaluate.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        gpu=0,
    params:
        model_dir=lambda w, input: os.path.dirname(input.weights),
        batch=config["synthesis"]["batch_size"],
        device=untracked(config["synthesis"]["device"]),
        tta="--tta" if config["synthesis"]["tta"] else "",
    shell:
        "python -m ct2mr --threads {threads} synthesize --model {params.model_dir:q} --slices {input.slices:q}"
        " --out-mr {output.mr:q} --out-slices {output.slices:q}"
        " --batch-size {params.batch} --device {params.device} {params.tta} > {log:q} 2>&1"


rule synthesize_cycle:
    input:
        weights=patient_model("syn_mr.pt"),
        model=patient_model("model.json"),
        slices="results/slices/{patient}.npz",
    output:
        mr=f"{SYNTH}/{{patient}}_mr.nii.gz",
        slices=f"{SYNTH}/{{patient}}_slices.npz",
        recon=f"{SYNTH}/{{patient}}_recon_ct.nii.gz",
    log:
        "results/logs/synthesize/{variant}_seed{seed}_{patient}.log",
    benchmark:
        "results/benchmarks/synthesize/{variant}_seed{seed}_{patient}.tsv"
    wildcard_constraints:
        variant=one_of(CYCLE_VARIANTS),
    conda:
        "../../envs/evaluate.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        gpu=0,
    params:
        model_dir=lambda w, input: os.path.dirname(input.weights),
        batch=config["synthesis"]["batch_size"],
        device=untracked(config["synthesis"]["device"]),
        tta="--tta" if config["synthesis"]["tta"] else "",
    shell:
        "python -m ct2mr --threads {threads} synthesize --model {params.model_dir:q} --slices {input.slices:q}"
        " --out-mr {output.mr:q} --out-slices {output.slices:q} --out-recon-ct {output.recon:q}"
        " --batch-size {params.batch} --device {params.device} {params.tta} > {log:q} 2>&1"
