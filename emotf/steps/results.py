"""Per-batch results: one record per movie of the manifest, whatever happened to it.

``Results/<batch>.json`` is what the worker reads for counts and statistics::

    {"batch": "b000001", "finished": 1.7e9, "movies": [
        {"key": "...", "state": "done" | "failed", "failed_step": "motioncor",
         "reason": "...", "found": t, "times": {"import": t, "motioncor": t, ...},
         ...fields of every step (pixel_size, motion_total, defocus_u, particles, ...)}]}

Every movie of the manifest appears exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..batches import read_manifest
from ..fsutil import atomic_write_json
from .base import StepContext, StepOutput, load_output

STEPS = ("import", "motioncor", "ctffind", "picking")
DROP = {"ok", "time"}


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


def run(ctx: StepContext) -> dict[str, Any]:
    manifest = read_manifest(ctx.inputs["manifest"])
    outputs = {step: load_output(Path(ctx.inputs[step])) for step in STEPS}
    movies = [merge_movie(m.key, m.found, outputs) for m in manifest.movies]
    result = {"batch": ctx.batch, "finished": time.time(), "movies": movies}
    atomic_write_json(ctx.outputs["json"], result)
    return result
