# Stage 4, registration: affine MR -> CT driven by mutual information, estimated
# on the skull-stripped images and applied to the MR with skull, onto the CT's
# 1 mm grid. Backend: registration.backend (simpleitk | antspy | elastix | afni).


rule register:
    input:
        fixed="results/preprocessed/{patient}/ct_brain.nii",
        fixed_mask="results/preprocessed/{patient}/ct_brain_mask.nii.gz",
        fixed_full="results/preprocessed/{patient}/ct.nii.gz",
        moving="results/preprocessed/{patient}/mr_native_brain.nii",
        moving_mask="results/preprocessed/{patient}/mr_native_brain_mask.nii.gz",
        moving_full="results/preprocessed/{patient}/mr_native.nii",
        truth=truth_file,
    output:
        image="results/preprocessed/{patient}/mr.nii.gz",
        transform="results/preprocessed/{patient}/transform.tfm",
        qa_json="results/preprocessed/{patient}/registration_qa.json",
        qa_png=report(
            "results/preprocessed/{patient}/registration_qa.png",
            caption="../report/registration_qa.rst",
            category="2. Registration",
            subcategory="Overlays (Figure 2)",
            labels={"patient": "{patient}", "figure": "overlay"},
        ),
    log:
        "results/logs/register/{patient}.log",
    benchmark:
        "results/benchmarks/register/{patient}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    # one thread, like every preprocessing job: the registration backend runs single-threaded
    # (bit-reproducible) anyway, and a 2-thread job cannot start beside a 1-thread training job on
    # 2 cores (in `make demo` one core idled for 4 minutes while unpaired trained)
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["register"].mem_mb,
        runtime=RULE_RESOURCES["register"].runtime,
    params:
        args=REGISTRATION_ARGS,
        truth=truth_flag,
        numbers=lambda w, output: ReportNumbers(output.qa_json),
    shell:
        "python -m ct2mr --threads {threads} register --fixed {input.fixed:q} --fixed-mask {input.fixed_mask:q}"
        " --fixed-full {input.fixed_full:q} --moving {input.moving:q} --moving-mask {input.moving_mask:q}"
        " --moving-full {input.moving_full:q}"
        " {params.args} {params.truth} --out-image {output.image:q} --out-transform {output.transform:q}"
        " --qa-json {output.qa_json:q} --qa-png {output.qa_png:q} > {log:q} 2>&1"
