# File lists (ct2mr.pipeline.file_lists): a job that reads thousands of files (training, the
# registration table, evaluation, difference maps) gets them as one list file,
# results/lists/{name}.txt, passed as @results/lists/{name}.txt. Spelled out on the
# command line they would pass Linux's 128 KiB limit on one argument (E2BIG) from a
# few thousand patients on, and Snakemake would compare every consumer of such a job
# with its whole input list (planning quadratic in the cohort). The list job runs in
# the Snakemake process (localrule, `run:`: no conda env, Snakemake's own Python): it only
# writes names, and it reruns when a listed file is rewritten or the set changes, so its
# readers rerun as before.


rule file_list:
    input:
        lambda w: FILE_LISTS[w.name](),
    output:
        "results/lists/{name}.txt",
    log:
        "results/logs/lists/{name}.log",
    benchmark:
        "results/benchmarks/lists/{name}.tsv"
    wildcard_constraints:
        name=one_of(FILE_LISTS),
    localrule: True
    threads: 1
    resources:
        mem_mb=500,
    run:
        write_file_list(input, output[0])
