# Stage 1, ingest: read the raw scan (DICOM series, NIfTI, MHA, NRRD), check it
# (3D, finite, CT in HU) and write it as canonical LPS NIfTI. Raw inputs are only read.
# A DICOM folder gives one series: the patient table's `series` / `mr_series` choice, or
# the automatic rule of ct2mr.dicom_series (the log names the series and those passed over).


rule ingest:
    input:
        raw_scan,
    output:
        "results/interim/{patient}/{modality}_ingested.nii.gz",
    params:
        series=series_arg,
    log:
        "results/logs/ingest/{patient}_{modality}.log",
    benchmark:
        "results/benchmarks/ingest/{patient}_{modality}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["ingest"].mem_mb,
        runtime=RULE_RESOURCES["ingest"].runtime,
    shell:
        "python -m ct2mr --threads {threads} ingest --modality {wildcards.modality}"
        " --input {input} --output {output}{params.series} > {log} 2>&1"
