# Stage 5, intensities to uint8 [0, 255]. CT: window width/level (W80/L40 HU by
# default). MR: the window.mr_percentiles (1st/99th) inside the head mask map to
# 0/255, clipped; outside the head = 0. Paired MR is normalised on the CT grid
# (after registration); an MR-only patient's on its own grid.


rule window_ct:
    input:
        "results/preprocessed/{patient}/ct.nii.gz",
    output:
        "results/preprocessed/{patient}/ct_window.nii.gz",
    params:
        width=config["window"]["ct_width_hu"],
        level=config["window"]["ct_level_hu"],
    log:
        "results/logs/window/{patient}_ct.log",
    benchmark:
        "results/benchmarks/window/{patient}_ct.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["window_ct"].mem_mb,
        runtime=RULE_RESOURCES["window_ct"].runtime,
    shell:
        "python -m ct2mr --threads {threads} window --modality ct --input {input} --output {output}"
        " --width-hu {params.width} --level-hu {params.level} > {log} 2>&1"


rule normalise_mr:
    input:
        unpack(mr_to_normalise),
    output:
        "results/preprocessed/{patient}/mr_norm.nii.gz",
    params:
        percentiles=spaced(config["window"]["mr_percentiles"]),
    log:
        "results/logs/window/{patient}_mr.log",
    benchmark:
        "results/benchmarks/window/{patient}_mr.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["normalise_mr"].mem_mb,
        runtime=RULE_RESOURCES["normalise_mr"].runtime,
    shell:
        "python -m ct2mr --threads {threads} window --modality mr --input {input.image}"
        " --mask {input.mask} --output {output} --percentiles {params.percentiles} > {log} 2>&1"
