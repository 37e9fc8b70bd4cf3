# Stages 5-6, intensities and slices: CT window width/level (W80/L40 HU by default)
# and MR normalisation (window.mr_percentiles, 1st/99th inside the head mask -> 0/255,
# outside the head 0; a paired MR on the CT grid after registration, an MR-only
# patient's on its own grid), then the axial slices holding brain, padded (or, for heads wider
# than the canvas, resized without distortion) to slices.size^2 (256 x 256),
# with masks and the geometry that puts synthesized slices back into the CT grid.
# PNG patients (already registered 2D slices) and 2D image pools (unpaired
# ct_only / mr_only images of any size) join the chain here.


# Volume patients: CT window and MR normalisation to uint8, then slice extraction, in
# one job (ct2mr.preprocess.normalise_slices), each stage with its log; one rule per kind of
# patient (both scans, CT only, MR only) because their outputs differ.
SLICES_SHELL = (
    "python -m ct2mr --threads {threads} normalise-slices --patient {wildcards.patient} --role {params.role}"
    " {params.images} {params.window}"
    " --head-mask {input.head:q} --brain-mask {input.brain:q} --output {output.slices:q}"
    " --size {params.size} --min-brain-voxels {params.min_voxels} --min-slices {params.min_slices}"
    " --log-window {log.window:q} > {log.job:q} 2>&1"
)


rule slices:
    input:
        unpack(volume_slice_inputs),
    output:
        slices="results/slices/{patient}.npz",
        ct_window="results/preprocessed/{patient}/ct_window.nii.gz",
        mr_norm="results/preprocessed/{patient}/mr_norm.nii.gz",
    log:
        **slices_logs(),
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    wildcard_constraints:
        patient=one_of(PAIRED_3D),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["slices"].mem_mb,
        runtime=RULE_RESOURCES["slices"].runtime,
    params:
        **SLICES_PARAMS,
        window=f"{CT_WINDOW_FLAGS} {MR_NORM_FLAGS}",
    shell:
        SLICES_SHELL


rule slices_ct:
    input:
        unpack(volume_slice_inputs),
    output:
        slices="results/slices/{patient}.npz",
        ct_window="results/preprocessed/{patient}/ct_window.nii.gz",
    log:
        **slices_logs(),
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    wildcard_constraints:
        patient=one_of(CT_ONLY_3D),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["slices_ct"].mem_mb,
        runtime=RULE_RESOURCES["slices_ct"].runtime,
    params:
        **SLICES_PARAMS,
        window=CT_WINDOW_FLAGS,
    shell:
        SLICES_SHELL


rule slices_mr:
    input:
        unpack(volume_slice_inputs),
    output:
        slices="results/slices/{patient}.npz",
        mr_norm="results/preprocessed/{patient}/mr_norm.nii.gz",
    log:
        **slices_logs(),
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    wildcard_constraints:
        patient=one_of(MR_ONLY_3D),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["slices_mr"].mem_mb,
        runtime=RULE_RESOURCES["slices_mr"].runtime,
    params:
        **SLICES_PARAMS,
        window=MR_NORM_FLAGS,
    shell:
        SLICES_SHELL


rule slices_png:
    input:
        png_files,
    output:
        "results/slices/{patient}.npz",
    log:
        "results/logs/slices/{patient}.log",
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    wildcard_constraints:
        patient=one_of(PNG),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["slices_png"].mem_mb,
        runtime=RULE_RESOURCES["slices_png"].runtime,
    params:
        role=lambda w: PATIENTS[w.patient].role,
        sources=png_flags,
        size=config["slices"]["size"],
    shell:
        "python -m ct2mr --threads {threads} slices-png --patient {wildcards.patient} --role {params.role}"
        " {params.sources} --output {output:q} --size {params.size} > {log:q} 2>&1"


rule slices_pool:
    input:
        png_files,
    output:
        "results/slices/{patient}.npz",
    log:
        "results/logs/slices/{patient}.log",
    benchmark:
        "results/benchmarks/slices/{patient}.tsv"
    wildcard_constraints:
        patient=one_of(POOL),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["slices_pool"].mem_mb,
        runtime=RULE_RESOURCES["slices_pool"].runtime,
    params:
        role=lambda w: PATIENTS[w.patient].role,
        images=pool_source,
        size=config["slices"]["size"],
    shell:
        "python -m ct2mr --threads {threads} slices-pool --patient {wildcards.patient} --role {params.role}"
        " --images {params.images} --output {output:q} --size {params.size} > {log:q} 2>&1"
