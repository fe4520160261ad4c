"""The demo pipeline: a Snakemake workflow and a Nextflow-shaped variant running real tools, and `execsight demo`."""
