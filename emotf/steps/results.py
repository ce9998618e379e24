"""Per-batch results: one record per movie of the manifest, whatever happened to it.

``Results/<batch>.json`` holds the full records (what the STAR files and the report use)::

    {"batch": "b000001", "finished": 1.7e9, "movies": [
        {"key": "...", "state": "done" | "failed", "failed_step": "motioncor",
         "reason": "...", "found": t, "times": {"import": t, "motioncor": t, ...},
         ...fields of every step (pixel_size, motion_total, shifts, defocus_u, particles, ...)}]}

``Summary/<batch>.json`` has the same shape with only the :data:`SUMMARY_FIELDS` of each
record: what the worker reads for counts, statistics and curation. It is about a fifth of the
size (no per-frame shifts, no file paths), so the first progress scan of a 20,000-movie session
stays fast. It is written before ``Results/<batch>.json``; both are outputs of the same rule.

Every movie of the manifest appears exactly once in each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..batches import read_manifest
from ..fsutil import atomic_write_json, atomic_write_text
from .base import StepContext, StepOutput, load_output

STEPS = ("import", "motioncor", "ctffind", "picking")
DROP = {"ok", "time"}
SUMMARY_FIELDS = (
    "key", "state", "failed_step", "reason", "found", "times", "grid_square", "pixel_size",
    "motion_total", "motion_early", "motion_late", "ice_ring_density", "defocus_u",
    "defocus_v", "defocus_angle", "ctf_score", "ctf_resolution", "thickness", "particles",
)  # fmt: skip
REASON_CHARS = 500


def merge_movie(key: str, found: float, outputs: dict[str, StepOutput]) -> dict[str, Any]:
    record: dict[str, Any] = {"key": key, "state": "done", "found": found, "times": {}}
    for step in STEPS:
        entry = outputs[step].movies.get(key)
        if entry is None:
            if record["state"] == "done":
                record.update(state="failed", failed_step=step, reason=f"no {step} result")
            continue
        record["times"][step] = entry.get("time")
        if not entry.get("ok"):
            if record["state"] == "done":
                record.update(state="failed", failed_step=step, reason=entry.get("reason", ""))
            continue
        record.update({k: v for k, v in entry.items() if k not in DROP})
    return record


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """The summary fields of a full record (a long failure reason is cut)."""
    slim = {k: record[k] for k in SUMMARY_FIELDS if k in record}
    if isinstance(slim.get("reason"), str):
        slim["reason"] = slim["reason"][:REASON_CHARS]
    return slim


def summary_text(result: dict[str, Any]) -> str:
    """The summary of ``result`` as JSON, one movie per line (compact, still readable)."""
    head = json.dumps({k: v for k, v in result.items() if k != "movies"})[:-1]
    lines = ",\n".join(json.dumps(summarize(m)) for m in result["movies"])
    return f'{head}, "movies": [\n{lines}\n]}}\n'


def run(ctx: StepContext) -> dict[str, Any]:
    manifest = read_manifest(ctx.inputs["manifest"])
    outputs = {step: load_output(Path(ctx.inputs[step])) for step in STEPS}
    movies = [merge_movie(m.key, m.found, outputs) for m in manifest.movies]
    result = {"batch": ctx.batch, "finished": time.time(), "movies": movies}
    if "summary" in ctx.outputs:  # absent in folders whose workflow copy predates it
        atomic_write_text(ctx.outputs["summary"], summary_text(result))
    atomic_write_json(ctx.outputs["json"], result)
    return result
