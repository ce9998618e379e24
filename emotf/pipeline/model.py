"""The pipeline's step graph: what each step is called, where its per-batch output lives,
what it needs, how it is counted and which per-movie fields it contributes.

Steps are declared once, in their rule files (``emotf_step(...)``, see
:mod:`emotf.pipeline.declare`). Everything downstream (the results merge, progress counts,
the ledger, EMhub events, ``emotf status``, the report, session STAR files) iterates a
:class:`Pipeline`; no other module holds a list of step names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Event keys a count label must not take: EMhub ends a task at an event with ``done``,
# and the worker's own keys must keep their meaning.
RESERVED = frozenset(
    {
        "done",
        "error",
        "stack",
        "status",
        "seq",
        "failed",
        "movies_found",
        "movies_batched",
        "movies_done",
        "movies_failed",
        "batches",
        "batches_done",
        "batches_running",
        "accepted",
        "rejected",
        "warning",
        "warnings",
        "movies_refused",
        "pipeline_errors",
        "particles",
        "particles_extracted",
    }
)
# Per-movie keys of every merged record (not contributed by any one step).
BASE_FIELDS = ("key", "state", "failed_step", "reason", "found", "times", "steps", "notes")


class PipelineError(ValueError):
    """A step declaration is invalid; the message names its file and line."""


@dataclass(frozen=True)
class Field:
    """A per-movie value a step writes into its records."""

    name: str
    star: str | None = None  # RELION STAR column, if it has one
    summary: bool = False  # kept in Summary/<batch>.json (what counts/statistics read)
    unit: str = ""
    label: str = ""  # human name (report, status)
    stat: bool = False  # session statistics (mean/min/max/p50) in EMhub and the report
    histogram: bool = False  # histogram in the report and EMhub statistics
    total: str | None = None  # summed over the movies ok at the step, as this count

    @property
    def stat_key(self) -> str:
        """Key of the field's statistics (``motion_total_A``, ``ice_ring_density``)."""
        suffix = {"Å": "A", "Å²": "A2", "°": "deg", "σ": "sigma"}.get(
            self.unit, re.sub(r"\W+", "_", self.unit).strip("_")
        )
        return f"{self.name}_{suffix}" if suffix else self.name


@dataclass(frozen=True)
class SessionStar:
    """A session-wide RELION STAR file made from a step's results."""

    file: str  # in the processing folder, e.g. micrographs_ctf.star
    table: str  # data block of the rows: movies | micrographs | coordinate_files | particles
    columns: tuple[str, ...] = ()  # record fields, in order (from this step or its needs)
    optics: bool = True  # write an optics block (groups from pixel size and voltage)
    merge: str | None = None  # per-batch STAR ({batch}) whose rows are concatenated instead


@dataclass(frozen=True)
class Step:
    name: str
    rule: str
    output: str  # per-batch JSON, with {batch}
    needs: tuple[str, ...] = ()
    count: str = ""  # count label (task events, status, report)
    required: bool = True  # a failure fails the movie (else it is only noted)
    fields: tuple[Field, ...] = ()
    session_star: SessionStar | None = None
    source: str = ""  # file:line of the declaration
    description: str = ""

    def output_of(self, batch: str) -> Path:
        return Path(self.output.format(batch=batch))

    @property
    def folder(self) -> str:
        """Top folder of the step's per-batch outputs (``CtfFind``)."""
        return self.output.split("/", 1)[0]


@dataclass
class Pipeline:
    """Steps in dependency order (each after every step it needs)."""

    steps: tuple[Step, ...]
    rule_files: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    version: str = "declared"  # "declared" or "legacy-1" (folders made before declarations)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no step {name!r} in the pipeline ({', '.join(self.names)})")

    def fields(self) -> Iterator[tuple[Step, Field]]:
        for step in self.steps:
            for f in step.fields:
                yield step, f

    def field(self, name: str) -> Field | None:
        """The declaration of a per-movie field (the first step that declares it)."""
        return next((f for _s, f in self.fields() if f.name == name), None)

    def owner_of(self, name: str) -> Step | None:
        return next((s for s, f in self.fields() if f.name == name), None)

    def summary_fields(self) -> tuple[str, ...]:
        extra = [f.name for _s, f in self.fields() if f.summary or f.total or f.stat]
        return tuple(dict.fromkeys([*BASE_FIELDS, *extra]))

    def totals(self) -> tuple[tuple[Step, Field], ...]:
        return tuple((s, f) for s, f in self.fields() if f.total)

    def subset(self, names: set[str] | list[str]) -> Pipeline:
        """The steps among ``names`` (those a results rule actually received)."""
        steps = tuple(s for s in self.steps if s.name in names)
        return Pipeline(steps, self.rule_files, list(self.errors), self.version)

    def ancestors(self, name: str) -> list[str]:
        """Every step ``name`` depends on, directly or not (dependency order)."""
        wanted: set[str] = set()
        todo = list(self.step(name).needs)
        while todo:
            need = todo.pop()
            if need not in wanted:
                wanted.add(need)
                todo.extend(self.step(need).needs)
        return [s for s in self.names if s in wanted]


def order_steps(steps: list[Step], errors: list[str]) -> tuple[Step, ...]:
    """Dependency order: by depth in the graph, then by name (deterministic, whatever the
    order of the files). A step whose needs are unknown or form a cycle is left out, with an
    error naming its declaration."""
    by_name = {s.name: s for s in steps}
    depth: dict[str, int] = {}
    pending = list(steps)
    while pending:
        progress = False
        for step in list(pending):
            missing = [n for n in step.needs if n not in by_name]
            if missing:
                errors.append(
                    f"{step.source}: step {step.name!r} needs unknown step(s) "
                    f"{', '.join(missing)}; step left out"
                )
                by_name.pop(step.name, None)
            elif all(n in depth for n in step.needs):
                depth[step.name] = 1 + max((depth[n] for n in step.needs), default=-1)
            else:
                continue
            pending.remove(step)
            progress = True
        if not progress:
            for step in pending:
                errors.append(
                    f"{step.source}: step {step.name!r} is part of a dependency "
                    "cycle; step left out"
                )
            break
    return tuple(sorted((by_name[n] for n in depth), key=lambda s: (depth[s.name], s.name)))
