# The embedded phantom cohort (config/patients.tsv): raw scans written by the
# project itself, in every supported format, with the known MR misalignment.
# Each file is deterministic in (patient, phantom.seed), so separate jobs agree.


rule phantom_volume:
    output:
        "results/phantom/{patient}/{modality}.{ext}",
    log:
        "results/logs/phantom/{patient}_{modality}.{ext}.log",
    benchmark:
        "results/benchmarks/phantom/{patient}_{modality}.{ext}.tsv"
    wildcard_constraints:
        patient=one_of(PHANTOM),
        ext=r"nii\.gz|nii|mha|nrrd",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["phantom_volume"].mem_mb,
        runtime=RULE_RESOURCES["phantom_volume"].runtime,
    params:
        args=phantom_args,
    shell:
        "python -m ct2mr --threads {threads} phantom {params.args} --{wildcards.modality} {output:q} > {log:q} 2>&1"


rule phantom_dicom:
    output:
        directory("results/phantom/{patient}/{modality}_dicom"),
    log:
        "results/logs/phantom/{patient}_{modality}_dicom.log",
    benchmark:
        "results/benchmarks/phantom/{patient}_{modality}_dicom.tsv"
    wildcard_constraints:
        patient=one_of(PHANTOM),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["phantom_dicom"].mem_mb,
        runtime=RULE_RESOURCES["phantom_dicom"].runtime,
    params:
        args=phantom_args,
    shell:
        "python -m ct2mr --threads {threads} phantom {params.args} --{wildcards.modality} {output:q} > {log:q} 2>&1"


rule phantom_truth:
    output:
        "results/phantom/{patient}/truth.json",
    log:
        "results/logs/phantom/{patient}_truth.log",
    benchmark:
        "results/benchmarks/phantom/{patient}_truth.tsv"
    wildcard_constraints:
        patient=one_of(PHANTOM),
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["phantom_truth"].mem_mb,
        runtime=RULE_RESOURCES["phantom_truth"].runtime,
    params:
        args=phantom_args,
    shell:
        "python -m ct2mr --threads {threads} phantom {params.args} --truth {output:q} > {log:q} 2>&1"
