# Thin bridge: merge every Results/<batch>.json into the session-wide STAR files.
from emotf.outputs import session_stars_from_snakemake

session_stars_from_snakemake(snakemake)  # type: ignore[name-defined]  # noqa: F821
