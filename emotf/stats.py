"""Session statistics from per-movie records: one summary per field the pipeline declares
with ``stat`` (drift, defocus, CTF resolution, particles, any added step's metric) and a
histogram per field declared with ``histogram``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .pipeline import Pipeline, builtin_pipeline


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
        "p50": round(float(np.percentile(arr, 50)), 3),
    }


def histogram(values: list[float], bins: int = 20) -> dict[str, list[float]] | None:
    if not values:
        return None
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    return {"counts": counts.tolist(), "edges": [round(float(e), 3) for e in edges]}


def field_values(records: list[dict[str, Any]], step: str, name: str) -> list[float]:
    """Numeric values of a field over the movies its step succeeded for."""
    return [
        float(r[name])
        for r in records
        if (r.get("steps") or {}).get(step) is True
        and isinstance(r.get(name), int | float)
        and not isinstance(r.get(name), bool)
    ]


def session_stats(
    records: list[dict[str, Any]], pipeline: Pipeline | None = None
) -> dict[str, Any]:
    """Statistics of ``records`` for the fields of ``pipeline`` (default: the built-in one)."""
    pipeline = pipeline or builtin_pipeline()
    stats: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    for step, f in pipeline.fields():
        if not (f.stat or f.histogram):
            continue
        values = field_values(records, step.name, f.name)
        if f.stat:
            stats[f.stat_key] = summary(values)
        if f.histogram:
            histograms[f.stat_key] = histogram(values)
        if f.total:
            stats[f.total] = int(sum(values))
    stats["histograms"] = histograms
    return stats
