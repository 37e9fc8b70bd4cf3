# Tables for the report: the metric and registration tables as HTML pages, which
# Snakemake's report shows inline (it offers TSV files only as downloads).
# Captions quote the numbers through ReportNumbers params (read at report time).


rule metric_tables:
    input:
        per_patient="results/metrics/per_patient.tsv",
        summary="results/metrics/summary.tsv",
    output:
        per_patient=report(
            "results/report_tables/per_patient.html",
            caption="../report/per_patient.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "per patient"},
        ),
        summary=report(
            "results/report_tables/summary.html",
            caption="../report/summary.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "summary (Table 1)"},
        ),
        table1=report(
            "results/report_tables/table1.html",
            caption="../report/table1.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "Table 1 (paper layout)"},
        ),
    log:
        "results/logs/report/metric_tables.log",
    benchmark:
        "results/benchmarks/report/metric_tables.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        columns=" ".join(["metric", "seed", *VARIANTS]),
        variants=" ".join(VARIANTS),
        summary=lambda w, input: ReportNumbers(input.summary),
    shell:
        "(python -m ct2mr report-tables --tsv {input.per_patient:q} --output {output.per_patient:q}"
        " --title 'Per-patient metrics (0-255 scale)'"
        " && python -m ct2mr report-tables --tsv {input.summary:q} --output {output.summary:q}"
        " --columns {params.columns}"
        " --title 'Summary over test patients (Table 1 layout)'"
        " && python -m ct2mr report-tables --table1-per-patient {input.per_patient:q} --output {output.table1:q}"
        " --variants {params.variants} --title 'Table 1 of the paper, from our test patients') > {log:q} 2>&1"


rule registration_table:
    input:
        file_list("registration_qa"),
    output:
        tsv="results/metrics/registration.tsv",
        html=report(
            "results/report_tables/registration.html",
            caption="../report/registration_table.rst",
            category="2. Registration",
            subcategory="Numbers",
            labels={"patient": "all", "file": "registration table"},
        ),
    log:
        "results/logs/report/registration_table.log",
    benchmark:
        "results/benchmarks/report/registration_table.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        numbers=lambda w, output: ReportNumbers(output.tsv),
    shell:
        "python -m ct2mr report-tables --registration-json @{input:q} --output {output.html:q}"
        " --output-tsv {output.tsv:q} --title 'Registration (MR -> CT, affine, mutual information)'"
        " > {log:q} 2>&1"


rule comparison_table:
    input:
        "results/metrics/comparisons.tsv",
    output:
        report(
            "results/report_tables/comparisons.html",
            caption="../report/comparisons.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "comparisons (95% CI, p)"},
        ),
    log:
        "results/logs/report/comparison_table.log",
    benchmark:
        "results/benchmarks/report/comparison_table.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        numbers=lambda w, input: ReportNumbers(input[0]),
    shell:
        "python -m ct2mr report-tables --tsv {input:q} --output {output:q}"
        " --columns metric variant baseline role mean_difference ci_low ci_high p_value p_adjusted min_attainable_p"
        " n_patients n_seeds seed_sd crossed_ci_low crossed_ci_high crossed_p decision"
        " --title 'Comparisons: mean difference (variant - baseline) over patients, 95% CI, p'"
        " --note 'The patient is the unit: each patient difference is the mean over its seeds. p: exact"
        " two-sided sign-flip test over patients (smallest attainable p = 2 / 2^patients); 95% CI: t-interval"
        " over patients. The primary comparison (evaluation.primary) is tested at 0.05; every other row is"
        " Holm-adjusted (p_adjusted). seed_sd: sd over seeds of the per-seed mean difference, not part of the"
        " test; crossed_*: the interval over new patients and new seeds (two-way random effects), given with"
        " 3+ seeds and 4+ patients, where simulation showed it holds. For MAE a negative difference favours"
        " the variant.' > {log:q} 2>&1"


rule qc_tables:
    input:
        qc="results/metrics/qc.tsv",
        correlation="results/metrics/dice_correlation.tsv",
    output:
        qc=report(
            "results/report_tables/qc.html",
            caption="../report/qc.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "per-patient QC"},
        ),
        correlation=report(
            "results/report_tables/dice_correlation.html",
            caption="../report/dice_correlation.rst",
            category="4. Evaluation",
            subcategory="Tables",
            labels={"table": "image metrics vs tissue Dice"},
        ),
    log:
        "results/logs/report/qc_tables.log",
    benchmark:
        "results/benchmarks/report/qc_tables.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        correlation=lambda w, input: ReportNumbers(input.correlation),
    shell:
        "(python -m ct2mr report-tables --tsv {input.qc:q} --output {output.qc:q}"
        " --title 'Per-patient QC: outliers and the MR brain-mask method'"
        " --note 'One row per test patient and variant (seeds averaged). mae_head_z: masked MAE as a z-score"
        " within the variant (flag MAE z > 3; with n patients |z| cannot exceed (n-1)/sqrt(n), so it needs 11+);"
        " dice_drop: the variant median of the mean tissue Dice minus the patient (flag Dice drop > 0.1);"
        " mr_mask_method: the MR brain-mask method of skull_mask.mr_method; note: why volume columns are empty.'"
        " && python -m ct2mr report-tables --tsv {input.correlation:q} --output {output.correlation:q}"
        " --title 'Image metrics vs tissue-segmentation agreement (Spearman)'"
        " --note 'Spearman rank correlation of each image metric with the mean of the CSF, GM and WM Dice over"
        " every test patient x variant with both (seeds averaged); n: pairs used, from n_patients patients."
        " Lower-is-better metrics (MAE, slice jump) track Dice with a negative rho. Descriptive: the pairs of one"
        " patient are not independent, so no p-value is given.') > {log:q} 2>&1"
