"""The pipeline's step graph, declared once in the rule files (see :mod:`.declare`)."""

from .legacy import upgrade_record
from .load import LOCAL_DIR, builtin_pipeline, load_pipeline
from .model import Field, Pipeline, PipelineError, SessionStar, Step

__all__ = [
    "LOCAL_DIR",
    "Field",
    "Pipeline",
    "PipelineError",
    "SessionStar",
    "Step",
    "builtin_pipeline",
    "load_pipeline",
    "upgrade_record",
]
