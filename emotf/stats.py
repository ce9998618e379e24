"""Session statistics from per-movie results (drift, defocus, resolution, particles)."""

from __future__ import annotations

from typing import Any

import numpy as np


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


def session_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in records if r.get("state") == "done"]

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in records if isinstance(r.get(key), int | float)]

    particles = [int(r.get("particles", 0)) for r in done]
    return {
        "motion_total_A": summary(values("motion_total")),
        "motion_early_A": summary(values("motion_early")),
        "defocus_A": summary(
            [0.5 * (r["defocus_u"] + r["defocus_v"]) for r in records if "defocus_u" in r]
        ),
        "astigmatism_A": summary(
            [abs(r["defocus_u"] - r["defocus_v"]) for r in records if "defocus_u" in r]
        ),
        "ctf_resolution_A": summary(values("ctf_resolution")),
        "ice_ring_density": summary(values("ice_ring_density")),
        "thickness_A": summary(values("thickness")),
        "motion_late_A": summary(values("motion_late")),
        "particles_per_micrograph": summary([float(p) for p in particles]),
        "particles": int(sum(particles)),
        "histograms": {
            "defocus_A": histogram(
                [0.5 * (r["defocus_u"] + r["defocus_v"]) for r in records if "defocus_u" in r]
            ),
            "ctf_resolution_A": histogram(values("ctf_resolution")),
            "motion_total_A": histogram(values("motion_total")),
            "particles_per_micrograph": histogram([float(p) for p in particles]),
        },
    }
