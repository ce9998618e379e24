"""What a set of movies adds to a session's figures, kept per finished batch and combined.

A :class:`Part` holds, for the movies of one finished batch (or of the running batches), the
values the session's figures are computed from: each declared statistic's values (exact, one
float per movie), the ledger's times (found, done, per-step latency), state, curation and
note counts, per-GridSquare sums, the failures and the few most recent micrographs. Parts are
combined by concatenation and counting, so a statistic, a percentile or a histogram of the
whole session costs the size of its numbers, never a walk over every movie's record; and a
part is small enough to be kept in the session index (:mod:`emotf.session.session_index`).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..curation import rejection_reasons
from ..epu import grid_square_of

if TYPE_CHECKING:
    from ..pipeline import Pipeline
    from .ledger import LedgerRow

RECENT = 6  # most recent done micrographs a part keeps (the report shows 6)
Floats = np.ndarray[Any, np.dtype[np.float64]]


def _floats(values: Iterable[float] = ()) -> Floats:
    return np.fromiter(values, dtype=np.float64)


@dataclass
class Square:
    """Sums of one GridSquare's movies."""

    movies: int = 0
    done: int = 0
    defocus_sum: float = 0.0
    defocus_n: int = 0
    particles: int = 0

    def add(self, other: Square) -> None:
        self.movies += other.movies
        self.done += other.done
        self.defocus_sum += other.defocus_sum
        self.defocus_n += other.defocus_n
        self.particles += other.particles


@dataclass
class Part:
    values: dict[str, Floats] = field(default_factory=dict)  # stat key -> values
    found: Floats = field(default_factory=_floats)  # every movie's "found" time
    finished: Floats = field(default_factory=_floats)  # done movies: time of their last step
    latency: dict[str, Floats] = field(default_factory=dict)  # step -> step time - found
    states: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    rejections: Counter[str] = field(default_factory=Counter)  # by limit name
    notes: Counter[str] = field(default_factory=Counter)  # "step: note"
    squares: dict[str, Square] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # key, step, reason
    recent: list[tuple[float, str, str]] = field(default_factory=list)  # newest done movies:
    # (time of their last step, batch, key), for the report's thumbnails


def last_time(record: dict[str, Any]) -> float:
    times = [float(v) for v in (record.get("times") or {}).values() if v]
    return max(times, default=0.0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def of_records(
    records: list[dict[str, Any]], pipeline: Pipeline, limits: dict[str, Any], batch: str = ""
) -> Part:
    """The part of finished movies' summary records (as ``Summary/<batch>.json`` holds)."""
    from .ledger import row_of_record

    part = of_rows([row_of_record(r) for r in records], pipeline.names)
    for step, f in pipeline.fields():
        if f.stat or f.histogram or f.total:
            part.values[f.stat_key] = _floats(
                float(r[f.name])
                for r in records
                if (r.get("steps") or {}).get(step.name) is True and _is_number(r.get(f.name))
            )
    for record in records:
        _add_record(part, record, limits)
    done = [(last_time(r), batch, str(r["key"])) for r in records if r.get("state") == "done"]
    part.recent = sorted(done)[-RECENT:]
    return part


def _add_record(part: Part, record: dict[str, Any], limits: dict[str, Any]) -> None:
    done = record.get("state") == "done"
    if done:
        reasons = rejection_reasons(record, limits)
        if reasons:
            part.rejected += 1
            part.rejections.update(reason.split(":")[0] for reason in reasons)
        else:
            part.accepted += 1
    for step, note in (record.get("notes") or {}).items():
        part.notes[f"{step}: {note}"[:160]] += 1
    square = part.squares.setdefault(str(grid_square_of(record["key"]) or "-"), Square())
    square.movies += 1
    if done:
        square.done += 1
        square.particles += int(record.get("particles") or 0)
        if "defocus_u" in record:
            square.defocus_sum += 0.5 * (record["defocus_u"] + record["defocus_v"])
            square.defocus_n += 1


def of_rows(rows: list[LedgerRow], steps: Iterable[str]) -> Part:
    """The ledger share of a part: times, states and failures of ``rows``."""
    part = Part(found=_floats(r.found for r in rows))
    part.finished = _floats(max(r.times.values()) for r in rows if r.state == "done" and r.times)
    for step in steps:
        part.latency[step] = _floats(r.times[step] - r.found for r in rows if step in r.times)
    part.states = Counter(r.state for r in rows)
    part.failures = [(r.key, r.failed_step, r.reason) for r in rows if r.state == "failed"]
    return part


def _concat(arrays: list[Floats]) -> Floats:
    return np.concatenate(arrays) if arrays else _floats()


def combine(parts: Iterable[Part]) -> Part:
    """One part of all ``parts`` (their order is kept: batch order)."""
    parts = list(parts)
    out = Part()
    keys = dict.fromkeys(k for p in parts for k in p.values)
    out.values = {k: _concat([p.values[k] for p in parts if k in p.values]) for k in keys}
    steps = dict.fromkeys(s for p in parts for s in p.latency)
    out.latency = {s: _concat([p.latency[s] for p in parts if s in p.latency]) for s in steps}
    out.found = _concat([p.found for p in parts])
    out.finished = _concat([p.finished for p in parts])
    for p in parts:
        out.states.update(p.states)
        out.accepted += p.accepted
        out.rejected += p.rejected
        out.rejections.update(p.rejections)
        out.notes.update(p.notes)
        out.failures.extend(p.failures)
        for name, square in p.squares.items():
            out.squares.setdefault(name, Square()).add(square)
    out.recent = sorted(r for p in parts for r in p.recent)[-RECENT:]
    return out


# -- the session index's form of a part: JSON, arrays as base64 of little-endian float64 ----
def _encode(values: Floats) -> str:
    return base64.b64encode(values.astype("<f8").tobytes()).decode("ascii")


def _decode(text: str) -> Floats:
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f8").astype(np.float64)


def to_json(part: Part) -> dict[str, Any]:
    return {
        "values": {k: _encode(v) for k, v in part.values.items()},
        "found": _encode(part.found),
        "finished": _encode(part.finished),
        "latency": {k: _encode(v) for k, v in part.latency.items()},
        "states": dict(part.states),
        "accepted": part.accepted,
        "rejected": part.rejected,
        "rejections": dict(part.rejections),
        "notes": dict(part.notes),
        "squares": {k: list(vars(s).values()) for k, s in part.squares.items()},
        "failures": [list(f) for f in part.failures],
        "recent": [list(r) for r in part.recent],
    }


def from_json(data: dict[str, Any]) -> Part:
    """A part from :func:`to_json`'s form; raises ``KeyError``/``TypeError``/``ValueError``
    (``binascii.Error`` is one) on anything else."""
    return Part(
        values={str(k): _decode(v) for k, v in data["values"].items()},
        found=_decode(data["found"]),
        finished=_decode(data["finished"]),
        latency={str(k): _decode(v) for k, v in data["latency"].items()},
        states=Counter({str(k): int(v) for k, v in data["states"].items()}),
        accepted=int(data["accepted"]),
        rejected=int(data["rejected"]),
        rejections=Counter({str(k): int(v) for k, v in data["rejections"].items()}),
        notes=Counter({str(k): int(v) for k, v in data["notes"].items()}),
        squares={str(k): Square(*v) for k, v in data["squares"].items()},
        failures=[(str(a), str(b), str(c)) for a, b, c in data["failures"]],
        recent=[(float(t), str(b), str(k)) for t, b, k in data["recent"]],
    )
