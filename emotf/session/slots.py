"""Worker-wide Snakemake run slots, shared fairly between the sessions of one worker.

One EMhub worker can run several OTF sessions at once (one per microscope). Each session
starts Snakemake runs on its own batches; without a common limit three sessions with two
runs each would start six Snakemakes, each sized for the whole machine. :class:`RunSlots`
holds the worker's budget:

* at most ``limit`` runs at once, over all sessions;
* each run gets ``cores_per_run`` = ``cores // limit`` (at least 1) local cores
  (``snakemake --cores``), so all runs together never ask for more than the machine has
  (rule ``threads`` are capped to ``--cores`` by Snakemake);
* a free slot goes to the waiting session that holds the fewest slots, ties to the one that
  has waited longest (round robin): a session with a backlog of 50 batches cannot take
  every slot while another session's fresh batch waits, and gets the slots back as soon as
  nobody else wants them (work conserving).

Sessions poll (the OTF loop is not event driven), so a request is a non-blocking
:meth:`RunSlots.acquire`; a session that asked and was refused stays in the queue until it
is served, :meth:`withdraw`-s (nothing to run any more) or does not ask again for
``stale_after`` seconds (e.g. its thread died).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 4


@dataclass
class RunSlots:
    limit: int = DEFAULT_LIMIT
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    stale_after: float = 120.0
    held: dict[str, int] = field(default_factory=dict)
    # session -> (first ask, last ask) of its request (monotonic clock)
    waiting: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.cores < 1:
            raise ValueError(f"run slots need limit >= 1 and cores >= 1 (got {self.limit}, "
                             f"{self.cores})")  # fmt: skip

    @property
    def cores_per_run(self) -> int:
        return max(1, self.cores // self.limit)

    def in_use(self) -> int:
        with self._lock:
            return sum(self.held.values())

    def _next_in_line(self, now: float) -> str | None:
        for key, (_first, last) in list(self.waiting.items()):
            if now - last > self.stale_after:
                log.warning("run slot request of %s is stale: dropped", key)
                del self.waiting[key]
        if not self.waiting:
            return None
        return min(self.waiting, key=lambda k: (self.held.get(k, 0), self.waiting[k][0]))

    def acquire(self, key: str) -> bool:
        """Take a slot for session ``key`` if one is free and it is this session's turn;
        otherwise queue the request (keeping its place) and return False."""
        now = time.monotonic()
        with self._lock:
            first = self.waiting.get(key, (now, now))[0]
            self.waiting[key] = (first, now)
            if sum(self.held.values()) >= self.limit or self._next_in_line(now) != key:
                return False
            del self.waiting[key]
            self.held[key] = self.held.get(key, 0) + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            count = self.held.get(key, 0)
            if count <= 0:
                raise RuntimeError(f"session {key} releases a run slot it does not hold")
            if count == 1:
                del self.held[key]
            else:
                self.held[key] = count - 1

    def withdraw(self, key: str) -> None:
        """Session ``key`` has nothing to start any more: leave the queue."""
        with self._lock:
            self.waiting.pop(key, None)

    def close(self, key: str) -> None:
        """Session ``key`` ended: leave the queue and give back whatever it still holds."""
        with self._lock:
            self.waiting.pop(key, None)
            if self.held.pop(key, 0):
                log.warning("session %s ended holding run slots: released", key)


_shared: dict[int, RunSlots] = {}
_shared_lock = threading.Lock()


def shared_slots(owner: object, limit: int, cores: int) -> RunSlots:
    """The one :class:`RunSlots` of ``owner`` (a worker), made at the first call with
    ``limit`` and ``cores``; dropped when the owner is garbage collected."""
    with _shared_lock:
        slots = _shared.get(id(owner))
        if slots is None:
            slots = _shared[id(owner)] = RunSlots(limit=limit, cores=cores)
            weakref.finalize(owner, _shared.pop, id(owner), None)
            log.info("worker run slots: %d Snakemake runs at once, %d cores each",
                     limit, slots.cores_per_run)  # fmt: skip
        return slots


def worker_slots(worker: object, settings: dict[str, Any]) -> RunSlots:
    """The run slots of ``worker`` from its ``otf`` settings: ``worker_runs`` (Snakemake runs
    at once over all sessions, default 4) and ``cores`` (local cores they share, default
    every core of this machine)."""
    limit = int(settings.get("worker_runs", DEFAULT_LIMIT))
    cores = int(settings.get("cores", os.cpu_count() or 1))
    return shared_slots(worker, limit, cores)
