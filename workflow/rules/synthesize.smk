# Synthesis: Syn_MR on each paired_test patient's CT slices, put back into the
# CT's 1 mm grid (results/preprocessed/{patient}/ct.nii.gz). Variants that train
# Syn_CT (unpaired, mrgan) also write the reconstructed CT, Syn_CT(Syn_MR(CT)),
# for Figure 7. Batched; on the GPU when there is one.


rule synthesize:
    input:
        weights="results/models/{variant}/syn_mr.pt",
        model="results/models/{variant}/model.json",
        slices="results/slices/{patient}.npz",
    output:
        mr="results/synth/{variant}/{patient}_mr.nii.gz",
        slices="results/synth/{variant}/{patient}_slices.npz",
    wildcard_constraints:
        variant=one_of([v for v in VARIANTS if v not in CYCLE_VARIANTS]),
    params:
        model_dir=lambda w, input: os.path.dirname(input.weights),
        batch=config["synthesis"]["batch_size"],
        device=untracked(config["synthesis"]["device"]),
    log:
        "results/logs/synthesize/{variant}_{patient}.log",
    benchmark:
        "results/benchmarks/synthesize/{variant}_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        gpu=0,
    shell:
        "python -m ct2mr --threads {threads} synthesize --model {params.model_dir} --slices {input.slices}"
        " --out-mr {output.mr} --out-slices {output.slices}"
        " --batch-size {params.batch} --device {params.device} > {log} 2>&1"


rule synthesize_cycle:
    input:
        weights="results/models/{variant}/syn_mr.pt",
        model="results/models/{variant}/model.json",
        slices="results/slices/{patient}.npz",
    output:
        mr="results/synth/{variant}/{patient}_mr.nii.gz",
        slices="results/synth/{variant}/{patient}_slices.npz",
        recon="results/synth/{variant}/{patient}_recon_ct.nii.gz",
    wildcard_constraints:
        variant=one_of(CYCLE_VARIANTS),
    params:
        model_dir=lambda w, input: os.path.dirname(input.weights),
        batch=config["synthesis"]["batch_size"],
        device=untracked(config["synthesis"]["device"]),
    log:
        "results/logs/synthesize/{variant}_{patient}.log",
    benchmark:
        "results/benchmarks/synthesize/{variant}_{patient}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        gpu=0,
    shell:
        "python -m ct2mr --threads {threads} synthesize --model {params.model_dir} --slices {input.slices}"
        " --out-mr {output.mr} --out-slices {output.slices} --out-recon-ct {output.recon}"
        " --batch-size {params.batch} --device {params.device} > {log} 2>&1"
