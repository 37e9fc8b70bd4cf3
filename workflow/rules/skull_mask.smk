# Stage 3, skull masking. CT: skull = HU above skull_mask.ct_skull_threshold_hu,
# head = largest body component, brain = intracranial soft tissue; MR: head mask
# from intensity + morphology, brain mask by skull_mask.mr_method (deepbet CNN,
# morphology, or auto = contrast-aware). Writes the masks, the skull-stripped
# image and a QA image per modality (MR: also the QA JSON with method, version, runtime).


rule skull_mask_ct:
    input:
        "results/preprocessed/{patient}/ct.nii.gz",
    output:
        head="results/preprocessed/{patient}/ct_head_mask.nii.gz",
        skull="results/preprocessed/{patient}/ct_skull_mask.nii.gz",
        brain="results/preprocessed/{patient}/ct_brain_mask.nii.gz",
        stripped="results/preprocessed/{patient}/ct_brain.nii.gz",
        qa=report(
            "results/preprocessed/{patient}/masking_qa_ct.png",
            caption="../report/masking_qa.rst",
            category="1. Data and QA",
            subcategory="Skull masking",
            labels={"patient": "{patient}", "image": "CT"},
        ),
    params:
        skull=config["skull_mask"]["ct_skull_threshold_hu"],
        head=config["skull_mask"]["ct_head_threshold_hu"],
    log:
        "results/logs/skull_mask/{patient}_ct.log",
    benchmark:
        "results/benchmarks/skull_mask/{patient}_ct.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 2
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["skull_mask_ct"].mem_mb,
        runtime=RULE_RESOURCES["skull_mask_ct"].runtime,
    shell:
        "python -m ct2mr --threads {threads} skull-mask --modality ct --input {input}"
        " --head-mask {output.head} --skull-mask {output.skull} --brain-mask {output.brain}"
        " --stripped {output.stripped} --qa-png {output.qa}"
        " --skull-threshold-hu {params.skull} --head-threshold-hu {params.head} > {log} 2>&1"


rule skull_mask_mr:
    input:
        "results/preprocessed/{patient}/mr_native.nii.gz",
    output:
        head="results/preprocessed/{patient}/mr_native_head_mask.nii.gz",
        brain="results/preprocessed/{patient}/mr_native_brain_mask.nii.gz",
        stripped="results/preprocessed/{patient}/mr_native_brain.nii.gz",
        qa=report(
            "results/preprocessed/{patient}/masking_qa_mr.png",
            caption="../report/masking_qa.rst",
            category="1. Data and QA",
            subcategory="Skull masking",
            labels={"patient": "{patient}", "image": "MR"},
        ),
        qa_json="results/preprocessed/{patient}/masking_qa_mr.json",
    params:
        erosion=config["skull_mask"]["mr_brain_erosion_mm"],
        method=config["skull_mask"]["mr_method"],
    log:
        "results/logs/skull_mask/{patient}_mr.log",
    benchmark:
        "results/benchmarks/skull_mask/{patient}_mr.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 2
    group:
        PREPROCESS_GROUP
    resources:
        mem_mb=RULE_RESOURCES["skull_mask_mr"].mem_mb,
        runtime=RULE_RESOURCES["skull_mask_mr"].runtime,
    shell:
        "python -m ct2mr --threads {threads} skull-mask --modality mr --input {input}"
        " --head-mask {output.head} --brain-mask {output.brain} --stripped {output.stripped}"
        " --qa-png {output.qa} --qa-json {output.qa_json} --brain-erosion-mm {params.erosion}"
        " --method {params.method} > {log} 2>&1"
