# Stages 1-3 of one scan, in one job (ct2mr.preprocess.prepare): ingest (read the raw DICOM
# series / NIfTI / MHA / NRRD, check it: 3D, finite, CT in HU; canonical LPS),
# resample to resample.spacing_mm (1 mm isotropic by default, linear, physical
# space kept) and skull masking. Raw inputs are only read.
# CT: skull = HU above skull_mask.ct_skull_threshold_hu, head = largest body
# component, brain = intracranial soft tissue. MR: head mask from intensity +
# morphology, brain mask by skull_mask.mr_method (deepbet CNN, morphology, or auto).
# ct.nii.gz is the CT on the 1 mm grid: the reference grid of everything after;
# mr_native.nii is the MR on its own 1 mm grid (registration brings it onto the CT's).
# Lean intermediates: what only the next job reads (the skull-stripped ct_brain.nii and
# mr_native_brain.nii, and mr_native.nii) is uncompressed NIfTI: gzip made each float
# volume cost 1.5-3 s to write and a full decompression (plus a gzip check) to read
# (bench/results/chain.md); what users read (ct.nii.gz, masks, mr.nii.gz, ...) stays .nii.gz.
# Each stage keeps its log (results/logs/{ingest,resample,skull_mask}/); the ingest log
# names the DICOM series read and those passed over (ct2mr.io.dicom_series).
# One thread per job: patients run side by side, and a 1-thread job fits any free core
# (a 2-thread job waited while a 1-thread training job held one of two cores).


rule prepare_ct:
    input:
        raw_scan("ct"),
    output:
        image="results/preprocessed/{patient}/ct.nii.gz",
        head="results/preprocessed/{patient}/ct_head_mask.nii.gz",
        skull="results/preprocessed/{patient}/ct_skull_mask.nii.gz",
        brain="results/preprocessed/{patient}/ct_brain_mask.nii.gz",
        stripped="results/preprocessed/{patient}/ct_brain.nii",
        qa=report(
            "results/preprocessed/{patient}/masking_qa_ct.png",
            caption="../report/masking_qa.rst",
            category="1. Data and QA",
            subcategory="Skull masking",
            labels={"patient": "{patient}", "image": "CT"},
        ),
    log:
        job="results/logs/prepare/{patient}_ct.log",
        ingest="results/logs/ingest/{patient}_ct.log",
        resample="results/logs/resample/{patient}_ct.log",
        skull_mask="results/logs/skull_mask/{patient}_ct.log",
    benchmark:
        "results/benchmarks/prepare/{patient}_ct.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["prepare_ct"].mem_mb,
        runtime=RULE_RESOURCES["prepare_ct"].runtime,
    params:
        series=series_arg("ct"),
        spacing=spaced(config["resample"]["spacing_mm"]),
        skull=config["skull_mask"]["ct_skull_threshold_hu"],
        head=config["skull_mask"]["ct_head_threshold_hu"],
    shell:
        "python -m ct2mr --threads {threads} prepare --modality ct --input {input:q}{params.series}"
        " --output {output.image:q} --spacing {params.spacing}"
        " --head-mask {output.head:q} --skull-mask {output.skull:q} --brain-mask {output.brain:q}"
        " --stripped {output.stripped:q} --qa-png {output.qa:q}"
        " --skull-threshold-hu {params.skull} --head-threshold-hu {params.head}"
        " --log-ingest {log.ingest:q} --log-resample {log.resample:q} --log-skull-mask {log.skull_mask:q}"
        " > {log.job:q} 2>&1"


rule prepare_mr:
    input:
        raw_scan("mr"),
    output:
        image="results/preprocessed/{patient}/mr_native.nii",
        head="results/preprocessed/{patient}/mr_native_head_mask.nii.gz",
        brain="results/preprocessed/{patient}/mr_native_brain_mask.nii.gz",
        stripped="results/preprocessed/{patient}/mr_native_brain.nii",
        qa=report(
            "results/preprocessed/{patient}/masking_qa_mr.png",
            caption="../report/masking_qa.rst",
            category="1. Data and QA",
            subcategory="Skull masking",
            labels={"patient": "{patient}", "image": "MR"},
        ),
        qa_json="results/preprocessed/{patient}/masking_qa_mr.json",
    log:
        job="results/logs/prepare/{patient}_mr.log",
        ingest="results/logs/ingest/{patient}_mr.log",
        resample="results/logs/resample/{patient}_mr.log",
        skull_mask="results/logs/skull_mask/{patient}_mr.log",
    benchmark:
        "results/benchmarks/prepare/{patient}_mr.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=RULE_RESOURCES["prepare_mr"].mem_mb,
        runtime=RULE_RESOURCES["prepare_mr"].runtime,
    params:
        series=series_arg("mr"),
        spacing=spaced(config["resample"]["spacing_mm"]),
        erosion=config["skull_mask"]["mr_brain_erosion_mm"],
        method=config["skull_mask"]["mr_method"],
    shell:
        "python -m ct2mr --threads {threads} prepare --modality mr --input {input:q}{params.series}"
        " --output {output.image:q} --spacing {params.spacing}"
        " --head-mask {output.head:q} --brain-mask {output.brain:q} --stripped {output.stripped:q}"
        " --qa-png {output.qa:q} --qa-json {output.qa_json:q}"
        " --brain-erosion-mm {params.erosion} --method {params.method}"
        " --log-ingest {log.ingest:q} --log-resample {log.resample:q} --log-skull-mask {log.skull_mask:q}"
        " > {log.job:q} 2>&1"
