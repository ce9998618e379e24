"""Per-batch results: one record per movie of the manifest, whatever happened to it.

``Results/<batch>.json`` holds the full records (what the STAR files and the report use)::

    {"batch": "b000001", "finished": 1.7e9, "movies": [
        {"key": "...", "state": "done" | "failed", "failed_step": "motioncor",
         "reason": "...", "found": t, "times": {"<step>": t, ...},
         "steps": {"<step>": true | false, ...}, "notes": {"<optional step>": "reason"},
         ...fields of every step that succeeded (pixel_size, motion_total, defocus_u, ...)}]}

``steps`` says, for every step that recorded the movie, whether it succeeded (a step whose
needs failed has no entry): counts follow it, so they never change when a batch finishes.
A movie is ``done`` when every required step succeeded; an optional step's failure is only
noted. ``Summary/<batch>.json`` has the same records with only the pipeline's summary fields
(what the worker reads for counts, statistics and curation), one movie per line. It is
written before ``Results/<batch>.json``; both are outputs of the same rule.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json, atomic_write_text
from ..pipeline import Pipeline, Step, builtin_pipeline, load_pipeline
from ..session.batches import read_manifest
from .base import StepContext, StepOutput, load_output

DROP = {"ok", "time", "reason"}
REASON_CHARS = 500


def _fail(record: dict[str, Any], step: str, reason: str) -> None:
    if record["state"] == "done":
        record.update(state="failed", failed_step=step, reason=reason)


def _missing(record: dict[str, Any], step: Step) -> None:
    """A required step has no entry for the movie: say why."""
    failed = [n for n in step.needs if record["steps"].get(n) is not True]
    _fail(record, step.name, f"not run: {failed[0]} failed" if failed else f"no {step.name} result")


def merge_movie(
    pipeline: Pipeline, key: str, found: float, outputs: dict[str, StepOutput]
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "key": key,
        "state": "done",
        "found": found,
        "times": {},
        "steps": {},
        "notes": {},
    }
    for step in pipeline:
        entry = outputs[step.name].movies.get(key)
        if entry is None:
            if step.required:
                _missing(record, step)
            continue
        record["times"][step.name] = entry.get("time")
        ok = bool(entry.get("ok"))
        record["steps"][step.name] = ok
        if ok:
            record.update({k: v for k, v in entry.items() if k not in DROP})
        elif step.required:
            _fail(record, step.name, str(entry.get("reason", "")))
        else:
            record["notes"][step.name] = str(entry.get("reason", ""))[:REASON_CHARS]
    return record


def summarize(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The summary ``fields`` of a full record (a long failure reason is cut)."""
    slim = {k: record[k] for k in fields if k in record}
    if isinstance(slim.get("reason"), str):
        slim["reason"] = slim["reason"][:REASON_CHARS]
    return slim


def summary_text(result: dict[str, Any], fields: tuple[str, ...] | None = None) -> str:
    """The summary of ``result`` as JSON, one movie per line (compact, still readable);
    ``fields`` default to the built-in pipeline's summary fields."""
    fields = fields or builtin_pipeline().summary_fields()
    head = json.dumps({k: v for k, v in result.items() if k != "movies"})[:-1]
    lines = ",\n".join(json.dumps(summarize(m, fields)) for m in result["movies"])
    return f'{head}, "movies": [\n{lines}\n]}}\n'


def run(ctx: StepContext) -> dict[str, Any]:
    pipeline = load_pipeline(ctx.workdir, ctx.config).subset(set(ctx.inputs))
    manifest = read_manifest(ctx.inputs["manifest"])
    outputs = {s.name: load_output(Path(ctx.inputs[s.name])) for s in pipeline}
    movies = [merge_movie(pipeline, m.key, m.found, outputs) for m in manifest.movies]
    result = {"batch": ctx.batch, "finished": time.time(), "movies": movies}
    if "summary" in ctx.outputs:  # absent in folders whose workflow copy predates it
        atomic_write_text(ctx.outputs["summary"], summary_text(result, pipeline.summary_fields()))
    atomic_write_json(ctx.outputs["json"], result)
    return result
