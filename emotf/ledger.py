"""Per-movie ledger and session figures, derived from the files of a processing folder.

Each movie handed to the pipeline has one row: its state (``queued`` → ``imported`` →
``motioncor`` → ``ctffind``/``picked`` → ``done``, or ``failed``), its failure reason, and a
timestamp per stage. Session figures come from the rows: throughput (movies/hour found and
done), latency from "found" to CTF and to picks (p50/p95), particles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .batches import list_batches
from .progress import STEP_FILES, ProgressReader

STAGES = ("import", "motioncor", "ctffind", "picking")


@dataclass
class LedgerRow:
    key: str
    state: str
    found: float
    times: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    failed_step: str = ""
    attempts: int = 1  # batches that held the movie (retry-failed adds one)


def ledger(out_dir: Path, reader: ProgressReader | None = None) -> list[LedgerRow]:
    reader = reader or ProgressReader(out_dir)
    rows: list[LedgerRow] = []
    owner = reader.owners()
    held: dict[str, int] = {}
    for batch in list_batches(out_dir):
        for key in reader.batch_keys(batch):
            held[key] = held.get(key, 0) + 1
    for batch in list_batches(out_dir):
        result = reader.summary(batch)
        if result is not None:
            for m in (m for m in result["movies"] if owner.get(m["key"]) == batch):
                times = {k: float(v) for k, v in (m.get("times") or {}).items() if v}
                rows.append(
                    LedgerRow(
                        m["key"],
                        m["state"],
                        float(m["found"]),
                        times,
                        m.get("reason", ""),
                        m.get("failed_step", ""),
                    )
                )
            continue
        manifest = reader.read(Path(out_dir) / "batches" / f"{batch}.json")
        if manifest is None:
            continue
        steps = {
            name: reader.read(Path(out_dir) / folder / batch / fname)
            for name, (folder, fname) in zip(STAGES, STEP_FILES.values(), strict=True)
        }
        for movie in (m for m in manifest["movies"] if owner.get(m["key"]) == batch):
            row = LedgerRow(movie["key"], "queued", float(movie["found"]))
            for stage, data in steps.items():
                entry = (data or {}).get("movies", {}).get(movie["key"])
                if entry is None:
                    continue
                if not entry.get("ok"):
                    row.state, row.reason, row.failed_step = (
                        "failed",
                        entry.get("reason", ""),
                        stage,
                    )
                    break
                row.times[stage] = float(entry["time"])
                row.state = {"import": "imported", "picking": "picked"}.get(stage, stage)
            rows.append(row)
    for row in rows:
        row.attempts = held.get(row.key, 1)
    return rows


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


def figures(rows: list[LedgerRow], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput, latency and particle figures for the session."""
    done = [r for r in rows if r.state == "done"]
    particles = [int(rec.get("particles", 0)) for rec in records if rec.get("state") == "done"]
    return {
        "movies_per_hour_found": _per_hour([r.found for r in rows]),
        "movies_per_hour_done": _per_hour([max(r.times.values()) for r in done if r.times]),
        "latency_found_to_ctf_s": _percentiles(
            [r.times["ctffind"] - r.found for r in rows if "ctffind" in r.times]
        ),
        "latency_found_to_picks_s": _percentiles(
            [r.times["picking"] - r.found for r in rows if "picking" in r.times]
        ),
        "particles": int(sum(particles)),
        "particles_per_micrograph": round(float(np.mean(particles)), 1) if particles else None,
        "states": {s: sum(r.state == s for r in rows) for s in sorted({r.state for r in rows})},
    }
