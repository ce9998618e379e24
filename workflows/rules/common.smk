# Helpers shared by the rules. Logic lives in the emotf package; rules only wire files.
import re
from pathlib import Path

from snakemake.utils import validate

from emotf.outputs import write_session_stars
from emotf.pipeline.snake import emotf_step, include_pipeline, session_star_files
from emotf.steps.entry import run_step


validate(config, "../schemas/config.schema.yaml")


wildcard_constraints:
    batch=r"b\d{6}",


GPU_BACKENDS = {"motioncor2", "motioncor3", "cryolo"}


def all_batches():
    """Every immutable batch manifest in batches/ (written by the emotf feeder)."""
    return sorted(
        p.stem for p in Path("batches").glob("b*.json") if re.fullmatch(r"b\d{6}", p.stem)
    )


def gpus_for(step):
    """GPUs one job of ``step`` needs: 1 for the GPU programs, 0 for the CPU backends."""
    return 1 if config[step]["backend"] in GPU_BACKENDS else 0
