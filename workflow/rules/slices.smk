# Stage 6, slices: the axial slices holding brain, padded (or, for heads wider
# than the canvas, resized without distortion) to slices.size^2 (256 x 256),
# with masks and the geometry that puts synthesized slices back into the CT grid.
# PNG patients (already registered 2D slices) and 2D image pools (unpaired
# ct_only / mr_only images of any size) join the chain here.


rule slices:
    input:
        unpack(volume_slice_inputs),
    output:
        "results/slices/{patient}.npz",
    wildcard_constraints:
        patient=one_of(VOLUME),
    params:
        role=lambda w: PATIENTS[w.patient].role,
        images=image_flags,
        size=config["slices"]["size"],
        min_voxels=config["slices"]["min_brain_voxels"],
        min_slices=config["slices"]["min_slices"],
    log:
        "results/logs/slices/{patient}.log",
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["slices"].mem_mb,
        runtime=RULE_RESOURCES["slices"].runtime,
    shell:
        "python -m ct2mr --threads {threads} slices --patient {wildcards.patient} --role {params.role}"
        " {params.images} --head-mask {input.head} --brain-mask {input.brain} --output {output}"
        " --size {params.size} --min-brain-voxels {params.min_voxels} --min-slices {params.min_slices}"
        " > {log} 2>&1"


rule slices_png:
    input:
        png_files,
    output:
        "results/slices/{patient}.npz",
    wildcard_constraints:
        patient=one_of(PNG),
    params:
        role=lambda w: PATIENTS[w.patient].role,
        sources=png_flags,
        size=config["slices"]["size"],
    log:
        "results/logs/slices/{patient}.log",
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["slices_png"].mem_mb,
        runtime=RULE_RESOURCES["slices_png"].runtime,
    shell:
        "python -m ct2mr --threads {threads} slices-png --patient {wildcards.patient} --role {params.role}"
        " {params.sources} --output {output} --size {params.size} > {log} 2>&1"


rule slices_pool:
    input:
        png_files,
    output:
        "results/slices/{patient}.npz",
    wildcard_constraints:
        patient=one_of(POOL),
    params:
        role=lambda w: PATIENTS[w.patient].role,
        images=pool_source,
        size=config["slices"]["size"],
    log:
        "results/logs/slices/{patient}.log",
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["slices_pool"].mem_mb,
        runtime=RULE_RESOURCES["slices_pool"].runtime,
    shell:
        "python -m ct2mr --threads {threads} slices-pool --patient {wildcards.patient} --role {params.role}"
        " --images {params.images} --output {output} --size {params.size} > {log} 2>&1"
