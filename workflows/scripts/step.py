# Thin bridge from a Snakemake rule to the emotf package: all logic lives in emotf.steps.
from emotf.steps.entry import run_from_snakemake

run_from_snakemake(snakemake)  # type: ignore[name-defined]  # noqa: F821
