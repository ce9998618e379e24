"""Session statistics from a session's combined :class:`~emotf.session.aggregate.Part`: one
summary per field the pipeline declares with ``stat`` (drift, defocus, CTF resolution,
particles, any added step's metric) and a histogram per field declared with ``histogram``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..pipeline import Pipeline, builtin_pipeline
from ..session.aggregate import Part, of_records


def summary(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
        "p50": round(float(np.percentile(arr, 50)), 3),
    }


def histogram(
    values: Sequence[float] | np.ndarray[Any, Any], bins: int = 20
) -> dict[str, list[float]] | None:
    if len(values) == 0:
        return None
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"counts": counts.tolist(), "edges": [round(float(e), 3) for e in edges]}


def session_stats(
    source: Part | list[dict[str, Any]], pipeline: Pipeline | None = None
) -> dict[str, Any]:
    """Statistics of a session's combined part (or of a list of summary records) for the
    fields of ``pipeline`` (default: the built-in one)."""
    pipeline = pipeline or builtin_pipeline()
    part = source if isinstance(source, Part) else of_records(source, pipeline, {})
    stats: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    for _step, f in pipeline.fields():
        if not (f.stat or f.histogram):
            continue
        values = part.values.get(f.stat_key, np.zeros(0))
        if f.stat:
            stats[f.stat_key] = summary(values)
        if f.histogram:
            histograms[f.stat_key] = histogram(values)
        if f.total:
            stats[f.total] = int(values.sum())
    stats["histograms"] = histograms
    return stats
