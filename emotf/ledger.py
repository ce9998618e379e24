"""Per-movie ledger and session figures, derived from the files of a processing folder.

Each movie handed to the pipeline has one row: its state (``queued``, then the count label
of the last step it succeeded at while its batch runs, then ``done`` or ``failed``), its
failure reason, and a timestamp per step. Session figures come from the rows: throughput
(movies/hour found and done), latency from "found" to each step (p50/p95), particles.
Rows are built by :meth:`emotf.progress.ProgressReader.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .pipeline import Pipeline
    from .progress import ProgressReader


@dataclass
class LedgerRow:
    key: str
    state: str
    found: float
    times: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    failed_step: str = ""
    attempts: int = 1  # batches that held the movie (retry-failed adds one)


def row_of_record(movie: dict[str, Any]) -> LedgerRow:
    """The row of a movie whose batch has finished (from its summary record)."""
    times = {k: float(v) for k, v in (movie.get("times") or {}).items() if v}
    return LedgerRow(
        movie["key"],
        movie["state"],
        float(movie["found"]),
        times,
        movie.get("reason", ""),
        movie.get("failed_step", ""),
    )


def row_of_steps(
    pipeline: Pipeline, movie: dict[str, Any], entries: dict[str, dict[str, Any]]
) -> LedgerRow:
    """The row of a movie whose batch is running, from the step outputs written so far."""
    row = LedgerRow(movie["key"], "queued", float(movie["found"]))
    for step in pipeline:
        entry = entries.get(step.name, {}).get(movie["key"])
        if entry is None:
            continue
        if not entry.get("ok"):
            if step.required and row.state != "failed":
                row.state, row.reason, row.failed_step = (
                    "failed",
                    entry.get("reason", ""),
                    step.name,
                )
            continue
        row.times[step.name] = float(entry["time"])
        if row.state != "failed":
            row.state = step.count
    return row


def ledger(out_dir: Path, reader: ProgressReader | None = None) -> list[LedgerRow]:
    from .progress import ProgressReader

    return (reader or ProgressReader(out_dir)).snapshot().rows


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
    }


def _per_hour(times: list[float]) -> float | None:
    if len(times) < 2 or max(times) <= min(times):
        return None
    return round(3600.0 * (len(times) - 1) / (max(times) - min(times)), 1)


def latency_key(step: str) -> str:
    return f"latency_found_to_{step}_s"


def figures(
    rows: list[LedgerRow], records: list[dict[str, Any]], steps: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Throughput, latency (found → each of ``steps``) and particle figures."""
    done = [r for r in rows if r.state == "done"]
    out: dict[str, Any] = {
        "movies_per_hour_found": _per_hour([r.found for r in rows]),
        "movies_per_hour_done": _per_hour([max(r.times.values()) for r in done if r.times]),
    }
    for step in steps or tuple(dict.fromkeys(s for r in rows for s in r.times)):
        out[latency_key(step)] = _percentiles(
            [r.times[step] - r.found for r in rows if step in r.times]
        )
    out["states"] = {s: sum(r.state == s for r in rows) for s in sorted({r.state for r in rows})}
    return out
