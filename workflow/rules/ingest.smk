# Stage 1, ingest: read the raw scan (DICOM series, NIfTI, MHA, NRRD), check it
# (3D, finite, CT in HU) and write it as canonical LPS NIfTI. Raw inputs are only read.


rule ingest:
    input:
        raw_scan,
    output:
        "results/interim/{patient}/{modality}_ingested.nii.gz",
    log:
        "results/logs/ingest/{patient}_{modality}.log",
    benchmark:
        "results/benchmarks/ingest/{patient}_{modality}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    shell:
        "python -m ct2mr --threads {threads} ingest --modality {wildcards.modality}"
        " --input {input} --output {output} > {log} 2>&1"
