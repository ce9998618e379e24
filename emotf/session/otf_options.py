"""What a session loop is told (:class:`OtfOptions`) and what it reports after each tick
(:class:`Status`); see :mod:`emotf.session.otf`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .progress import Snapshot
from .slots import RunSlots


class FolderNotWritable(RuntimeError):
    """The processing folder became read-only or full: the session cannot go on."""


@dataclass
class OtfOptions:
    once: bool = False  # process what is complete now, then stop
    idle_timeout: float = 600.0  # streaming: stop after this long without a new movie
    poll_interval: float = 2.0
    profile: str | None = None
    snakemake_args: list[str] = field(default_factory=list)
    max_attempts: int = 2  # Snakemake invocations per batch before it is declared failed
    trusted_groups: list[str] = field(default_factory=list)  # may write the folder's code
    holder: str = "emotf run"  # who drives the folder (shown to a second run that is refused)
    max_runs: int = 2  # concurrent Snakemake invocations (disjoint batches): a batch cut
    # while a long run is going starts at once instead of waiting for that run to end
    batches_per_run: int = 1  # oldest pending batches per invocation (0: all): after a
    # restart with a backlog the first results come after one short run, not the backlog;
    # each finished run doubles it, up to max_batches_per_run, so a backlog drains in few runs
    max_batches_per_run: int = 8  # (a run holds a worker slot: see emotf.slots)
    run_stagger: float = 10.0  # until the loop's first run ended, seconds after a run
    # started before another may start: two Snakemake start-ups at once (workflow parse,
    # DAG) slow the first result after a (re)start down; later runs start at once
    cores: int | None = None  # snakemake --cores for local jobs (None: the profile's)
    slots: RunSlots | None = None  # worker-wide run limit shared with other sessions
    slot_key: str = ""  # this session's name in ``slots``


@dataclass
class Status:
    state: str  # "running" | "finished" | "stopped"
    movies_found: int
    counts: dict[str, Any]
    failures: dict[str, int]
    batches_running: int
    snapshot: Snapshot | None = None  # the one read of the folder these figures come from
    pipeline_errors: list[str] = field(default_factory=list)  # broken added rule files

    def as_dict(self) -> dict[str, Any]:
        data = {
            "status": self.state,
            "movies_found": self.movies_found,
            **self.counts,
            "batches_running": self.batches_running,
        }
        if self.pipeline_errors:
            data["pipeline_errors"] = " | ".join(self.pipeline_errors)[:2000]
        return data

    @property
    def step_counts(self) -> list[tuple[str, int]]:
        """(count label, movies) per step, in pipeline order."""
        if self.snapshot is None:
            return []
        return [(s.count, int(self.counts.get(s.count, 0))) for s in self.snapshot.pipeline]
