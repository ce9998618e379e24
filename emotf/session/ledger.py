"""Per-movie ledger and session figures, derived from the files of a processing folder.

Each movie handed to the pipeline has one row: its state (``queued``, then the count label
of the last step it succeeded at while its batch runs, then ``done`` or ``failed``), its
failure reason, and a timestamp per step. Session figures come from the rows: throughput
(movies/hour found and done), latency from "found" to each step (p50/p95), particles.
Rows are built by :meth:`emotf.session.progress.ProgressReader.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .aggregate import Part, of_rows

if TYPE_CHECKING:
    from ..pipeline import Pipeline


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


def ledger(out_dir: Path) -> list[LedgerRow]:
    """Every batched movie's row, read from the whole folder (for tools and tests: the worker
    keeps its figures in :class:`~emotf.session.aggregate.Part` form, see
    ProgressReader.snapshot)."""
    from .progress import ProgressReader

    return ProgressReader(out_dir).rows()


def _percentiles(values: np.ndarray[Any, Any]) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


def _per_hour(times: np.ndarray[Any, Any]) -> float | None:
    """Arrival rate: movies per hour between the first and the last of ``times``."""
    if times.size < 2 or times.max() <= times.min():
        return None
    return round(3600.0 * (times.size - 1) / float(times.max() - times.min()), 1)


def _done_per_hour(part: Part) -> float | None:
    """Movies done per hour since the first movie was found. Not the spread of the done
    times: a batch's movies finish within seconds of each other, which gave a rate of
    hundreds of thousands per hour after the first batch."""
    if part.finished.size == 0 or part.found.size == 0:
        return None
    span = float(part.finished.max() - part.found.min())
    return round(3600.0 * part.finished.size / span, 1) if span > 0 else None


def latency_key(step: str) -> str:
    return f"latency_found_to_{step}_s"


def figures(source: Part | list[LedgerRow], steps: tuple[str, ...] = ()) -> dict[str, Any]:
    """Throughput, latency (found → each of ``steps``) and state figures of a session's
    combined part (or of ledger rows)."""
    if isinstance(source, Part):
        part = source
    else:
        part = of_rows(source, steps or tuple(dict.fromkeys(s for r in source for s in r.times)))
    out: dict[str, Any] = {
        "movies_per_hour_found": _per_hour(part.found),
        "movies_per_hour_done": _done_per_hour(part),
    }
    for step in steps or tuple(part.latency):
        out[latency_key(step)] = _percentiles(part.latency.get(step, np.zeros(0)))
    out["states"] = {s: n for s, n in sorted(part.states.items()) if n}
    return out
