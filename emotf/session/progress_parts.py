"""The pieces of :class:`emotf.session.progress.ProgressReader`'s read model: session counts, what
one finished batch adds to them, and which batch holds which movie."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..pipeline import Pipeline
from . import aggregate as agg
from .session_index import Basis


@dataclass
class Counts:
    """Movies per step (by count label, in pipeline order), totals such as ``particles``,
    and the session's movie and batch counts."""

    steps: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    movies_batched: int = 0
    done: int = 0
    failed: int = 0
    batches: int = 0
    batches_done: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> int:
        for table in ("steps", "totals"):
            values = self.__dict__.get(table, {})
            if name in values:
                return int(values[name])
        raise AttributeError(name)

    def add_steps(self, steps: Counter[str], totals: Counter[str]) -> None:
        """Add movies per count label and totals (e.g. one batch's)."""
        for label, n in steps.items():
            self.steps[label] = self.steps.get(label, 0) + n
        for label, n in totals.items():
            self.totals[label] = self.totals.get(label, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "movies_batched": self.movies_batched,
            **self.steps,
            "done": self.done,
            "failed": self.failed,
            **self.totals,
            "batches": self.batches,
            "batches_done": self.batches_done,
        }


def group_reason(record: dict[str, Any]) -> str:
    """The failure's group: step and reason, without the movie's own name."""
    reason = str(record.get("reason", ""))
    key = str(record.get("key", ""))
    for name in {key, os.path.basename(key), os.path.splitext(os.path.basename(key))[0]} - {""}:
        reason = reason.replace(name, "<movie>")
    return f"{record.get('failed_step')}: {reason}"[:200]


@dataclass
class FinishedPart:
    """What one finished batch adds to a snapshot, and what it was computed from."""

    basis: Basis
    part: agg.Part
    steps: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    done: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add_to(self, counts: Counts) -> None:
        counts.add_steps(self.steps, self.totals)
        counts.done += self.done
        counts.failed += self.failed
        counts.batches_done += 1
        for reason, n in self.reasons.items():
            counts.failures[reason] = counts.failures.get(reason, 0) + n

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": {
                "steps": dict(self.steps),
                "totals": dict(self.totals),
                "done": self.done,
                "failed": self.failed,
                "reasons": dict(self.reasons),
            },
            "part": agg.to_json(self.part),
        }

    @classmethod
    def of_json(cls, basis: Basis, data: dict[str, Any]) -> FinishedPart | None:
        """The part of a session index entry; None if the entry is not well formed."""
        try:
            c = data["counts"]
            return cls(
                basis,
                agg.from_json(data["part"]),
                Counter({str(k): int(v) for k, v in c["steps"].items()}),
                Counter({str(k): int(v) for k, v in c["totals"].items()}),
                int(c["done"]),
                int(c["failed"]),
                Counter({str(k): int(v) for k, v in c["reasons"].items()}),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


@dataclass
class RunningShare:
    """What one running (or queued) batch adds to a snapshot: its step counts and the part of
    its rows, kept while the step outputs it was made from (``stamp``) are unchanged, so a
    backlog of queued batches is read once, not at every tick."""

    stamp: tuple[Any, ...]
    part: agg.Part
    steps: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)

    def add_to(self, counts: Counts) -> None:
        counts.add_steps(self.steps, self.totals)


def finished_part(
    basis: Basis,
    batch: str,
    movies: list[dict[str, Any]],
    pipeline: Pipeline,
    limits: dict[str, Any],
) -> FinishedPart:
    """The part of a finished batch's current records (superseded movies left out)."""
    part = FinishedPart(basis, agg.of_records(movies, pipeline, limits, batch))
    for movie in movies:
        steps = movie.get("steps", {})
        for step in pipeline:
            if steps.get(step.name) is True:
                part.steps[step.count] += 1
        for step, f in pipeline.totals():
            if steps.get(step.name) is True and f.total:
                part.totals[f.total] += int(movie.get(f.name) or 0)
        if movie["state"] == "done":
            part.done += 1
        else:
            part.failed += 1
            part.reasons[group_reason(movie)] += 1
    return part
