"""Glue between Snakemake and the code: rerun scope, file lists, cluster requests, job environment, stage logs, Snakemake patches."""
