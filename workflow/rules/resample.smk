# Stage 2, resample: to resample.spacing_mm (1 mm isotropic by default), linear
# interpolation, physical space (origin, direction) preserved.
# ct.nii.gz is the CT on the 1 mm grid: the reference grid of everything after.
# mr_native.nii.gz is the MR on its own 1 mm grid (registration brings it onto the CT's).

rule resample:
    input:
        lambda w: f"results/interim/{w.patient}/{RESAMPLED[w.image][0]}_ingested.nii.gz",
    output:
        "results/preprocessed/{patient}/{image}.nii.gz",
    wildcard_constraints:
        image="ct|mr_native",
    params:
        spacing=spaced(config["resample"]["spacing_mm"]),
        background=lambda w: RESAMPLED[w.image][1],
    log:
        "results/logs/resample/{patient}_{image}.log",
    benchmark:
        "results/benchmarks/resample/{patient}_{image}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 2
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["resample"].mem_mb,
        runtime=RULE_RESOURCES["resample"].runtime,
    shell:
        "python -m ct2mr --threads {threads} resample --input {input} --output {output}"
        " --spacing {params.spacing} --interpolator linear --default-value {params.background}"
        " > {log} 2>&1"
