"""What the Snakefile does with the pipeline: include each step's rule file, leave out (with
an error naming file and line) a file that does not parse or run, and record the outcome in
``.emotf/pipeline.json`` for the worker and ``emotf status``."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from .load import load_pipeline, without_files, write_state
from .model import Pipeline

log = logging.getLogger(__name__)


def _where(exc: BaseException, path: str, workflow: Any) -> str:
    """``file:line`` of the error inside the rule file (Snakemake's line map applied)."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
        if frames and frames[-1].lineno is not None:
            linemap = getattr(workflow, "linemaps", {}).get(path, {})
            line = linemap.get(frames[-1].lineno, frames[-1].lineno)
    return f"{path}:{line}" if line else path


def include_pipeline(workflow: Any, folder: Path, config: dict[str, Any]) -> Pipeline:
    """Include the rule files of the folder's pipeline into ``workflow``; returns the
    pipeline as included (broken files and the steps that need them left out)."""
    declared = load_pipeline(folder, config, parsed=False)
    rejected: list[str] = []
    errors: list[str] = []
    for path in declared.rule_files:
        depth = len(workflow.included_stack)
        default_target = workflow.default_target
        try:
            workflow.include(path)
        except Exception as exc:  # a broken added rule must not stop the other steps
            del workflow.included_stack[depth:]
            workflow.default_target = default_target
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.append(
                f"{_where(exc, path, workflow)}: rule file left out: "
                f"{type(exc).__name__}: {message}"
            )
            rejected.append(path)
    rules = {r.name for r in workflow.rules}
    for step in declared.steps:
        if step.rule not in rules and step.source.rsplit(":", 1)[0] not in rejected:
            errors.append(
                f"{step.source}: step {step.name!r} names rule {step.rule!r}, "
                "which is not defined; step left out"
            )
            rejected.append(step.source.rsplit(":", 1)[0])
    pipeline = without_files(declared, set(rejected), errors) if rejected else declared
    for error in pipeline.errors:
        log.error("%s", error)
    write_state(pipeline, folder, rejected, declared)
    return pipeline


def emotf_step(**_declaration: Any) -> None:
    """A step declaration in a rule file. Read as text by :mod:`emotf.pipeline.declare`;
    in Snakemake it does nothing."""


def session_star_files(pipeline: Pipeline) -> list[str]:
    """The session STAR files of the pipeline (outputs of the ``session_stars`` rule)."""
    files = [s.session_star.file for s in pipeline if s.session_star]
    return [*files, ACCEPTED_STAR] if accepted_table(pipeline) else files


ACCEPTED_STAR = "micrographs_accepted.star"  # micrographs that pass curation


def accepted_table(pipeline: Pipeline) -> bool:
    """Whether curation can list accepted micrographs (a step writes CTF fields)."""
    return pipeline.field("defocus_u") is not None
