"""emotf: on-the-fly cryo-EM preprocessing for EMhub facilities, driven by Snakemake."""

__version__ = "0.1.0"
