"""The on-the-fly loop: detect complete movies, cut batches, run Snakemake, report progress.

Used by ``emotf run`` and by the EMhub worker. State lives on disk (manifests, step outputs,
results), so a new :class:`OtfSession` on an existing folder resumes exactly where the last
one stopped: batches already written are not cut again, finished ones are not rerun.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batches import list_batches
from .config import Config
from .curation import curate
from .feeder import Batcher, MovieScanner
from .fsutil import atomic_write_json, read_json
from .outputs import write_session_stars
from .progress import ProgressReader
from .report import write_report
from .runner import SnakemakeRun, live_snakemake, lock_failure, unlock

log = logging.getLogger(__name__)

FAILED_DIR = "batch_failures"
# Errors that mean "this folder cannot be written any more" (not a bad movie).
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


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


@dataclass
class Status:
    state: str  # "running" | "finished" | "stopped"
    movies_found: int
    counts: dict[str, Any]
    failures: dict[str, int]
    batches_running: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "movies_found": self.movies_found,
            **self.counts,
            "batches_running": self.batches_running,
        }


ProgressCallback = Callable[[Status], None]


class OtfSession:
    def __init__(self, out_dir: Path, config: Config, options: OtfOptions) -> None:
        self.out_dir = Path(out_dir)
        self.config = config
        self.options = options
        b = config["batches"]
        self.batcher = Batcher(self.out_dir, b["size"], b["tail_seconds"])
        self.scanner = MovieScanner(
            Path(config["session_dir"]),
            config["movie_globs"],
            b["settle_seconds"],
            known=self.batcher.assigned_keys(),
        )
        self.progress = ProgressReader(self.out_dir)
        self.run: SnakemakeRun | None = None
        self.running_batches: list[str] = []
        self.attempts: dict[str, int] = {}
        self.last_activity = time.time()
        self._stop_requested = False
        self._stars_signature: tuple[int, int] = (-1, -1)

    # -- batches ---------------------------------------------------------------------------
    def _failed_batches(self) -> set[str]:
        folder = self.out_dir / FAILED_DIR
        return {p.stem for p in folder.glob("b*.json")} if folder.is_dir() else set()

    def pending_batches(self) -> list[str]:
        failed = self._failed_batches()
        return [
            b
            for b in list_batches(self.out_dir)
            if b not in failed and not (self.out_dir / "Results" / f"{b}.json").exists()
        ]

    def _mark_failed(self, batch: str, code: int) -> None:
        reason = f"Snakemake failed {self.attempts[batch]} times (exit {code}); see logs/"
        log.error("batch %s given up: %s", batch, reason)
        atomic_write_json(
            self.out_dir / FAILED_DIR / f"{batch}.json",
            {"batch": batch, "reason": reason, "time": time.time()},
        )

    # -- one iteration ---------------------------------------------------------------------
    def feed(self, now: float) -> None:
        before = self.scanner.total_seen()
        complete = self.scanner.scan(now)
        if complete or self.scanner.total_seen() != before:
            self.last_activity = now
        self.batcher.add(complete)
        idle = now - self.last_activity >= self.options.idle_timeout
        self.batcher.cut(now, flush=self.options.once or idle or self._stop_requested)

    def _finish_run(self, code: int) -> None:
        assert self.run is not None
        if code != 0 and lock_failure(self.run.log_path):
            # another snakemake held the folder (a killed worker's orphan, or staff by hand)
            if not live_snakemake(self.out_dir):
                log.warning("stale Snakemake lock in %s: unlocking", self.out_dir)
                unlock(self.out_dir)
            self.run = None
            self.running_batches = []
            return
        pending = set(self.pending_batches())
        for batch in self.running_batches:
            if batch in pending:
                self.attempts[batch] = self.attempts.get(batch, 0) + 1
                if self.attempts[batch] >= self.options.max_attempts:
                    self._mark_failed(batch, code)
        log.info("snakemake finished with exit code %d", code)
        self.run = None
        self.running_batches = []

    def schedule(self) -> None:
        if self.run is not None:
            code = self.run.poll()
            if code is None:
                return
            self._finish_run(code)
        if self._stop_requested:
            return
        pending = self.pending_batches()
        if pending and live_snakemake(self.out_dir):
            return  # e.g. the run of a worker that was killed: let it finish, then go on
        if pending:
            self.running_batches = pending
            self.run = SnakemakeRun(
                self.out_dir,
                [f"Results/{b}.json" for b in pending],
                self.options.profile,
                self.options.snakemake_args,
                name=time.strftime("%Y%m%d-%H%M%S") + f"-{pending[0]}",
            )
            self.run.start()

    def status(self, state: str = "running") -> Status:
        counts = self.progress.counts()
        failed_extra = self._failed_batch_movies()
        data = counts.as_dict()
        data["failed"] += failed_extra
        accepted, rejected = curate(self.progress.results(), self.config.get("curation", {}))
        data["accepted"], data["rejected"] = len(accepted), len(rejected)
        return Status(
            state=state,
            movies_found=self.scanner.total_seen(),
            counts=data,
            failures=counts.failures,
            batches_running=len(self.running_batches),
        )

    def _failed_batch_movies(self) -> int:
        total = 0
        for batch in self._failed_batches():
            manifest = read_json(self.out_dir / "batches" / f"{batch}.json")
            total += len(manifest["movies"])
        return total

    def raw_stats(self) -> dict[str, Any]:
        """What EMhub shows for the raw data: number of movies and their total size."""
        size = sum(self.scanner.sizes.values())
        return {
            "movies": len(self.scanner.sizes),
            "size": size,
            "sizeH": f"{size / 1024**3:.2f} GB",
        }

    def finished(self, now: float) -> bool:
        if self.run is not None or self.pending_batches() or self.batcher.pending:
            return False
        if self.options.once and self.scanner.total_seen() == len(self.scanner.known):
            return True
        return now - self.last_activity >= self.options.idle_timeout

    def write_outputs(self) -> None:
        """Rewrite the session STAR files when any batch result appeared or changed."""
        folder = self.out_dir / "Results"
        entries = list(os.scandir(folder)) if folder.is_dir() else []
        signature = (len(entries), max((e.stat().st_mtime_ns for e in entries), default=0))
        if signature != self._stars_signature:
            write_session_stars(self.out_dir, self.config)
            try:
                write_report(self.out_dir, self.config)
            except Exception:  # a report problem must never stop processing
                log.exception("report.html not updated")
            self._stars_signature = signature

    # -- driving -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop_requested = True

    def step(self) -> bool:
        """One iteration; returns True when the session is finished (or stopped)."""
        now = time.time()
        if not self._stop_requested:
            self.feed(now)
        self.schedule()
        self.write_outputs()
        if self._stop_requested:
            if self.run is not None:
                self.run.stop()
                self.run = None
                self.running_batches = []
            return True
        return self.finished(now)

    def _abort(self, exc: OSError) -> FolderNotWritable:
        if self.run is not None:
            self.run.stop(grace=30.0)
            self.run = None
            self.running_batches = []
        where = f" ({exc.filename})" if exc.filename else ""
        message = (
            f"processing folder {self.out_dir} is not writable: {exc.strerror}{where}; "
            "processing stopped (nothing was deleted; fix the folder and resubmit to resume)"
        )
        log.error("%s", message)
        return FolderNotWritable(message)

    def run_loop(self, on_progress: ProgressCallback | None = None) -> Status:
        while True:
            try:
                done = self.step()
            except OSError as exc:
                if exc.errno not in WRITE_ERRNOS:
                    raise
                raise self._abort(exc) from exc
            state = "stopped" if self._stop_requested else ("finished" if done else "running")
            status = self.status(state)
            if on_progress is not None:
                on_progress(status)
            if done:
                return status
            time.sleep(self.options.poll_interval)
