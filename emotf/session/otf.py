"""The on-the-fly loop: detect complete movies, cut batches, run Snakemake, report progress.

Used by ``emotf run`` and by the EMhub worker. State lives on disk (manifests, step outputs,
results), so a new :class:`OtfSession` on an existing folder resumes exactly where the last
one stopped: batches already written are not cut again, finished ones are not rerun.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..fsutil import atomic_write_json, read_json
from ..pipeline.load import rule_dirs_of
from ..trust import TrustPolicy
from ..views.output_writer import OutputWriter
from .batches import list_batches
from .feeder import FEEDER_INDEX, Batcher, MovieScanner
from .folder_lock import FolderLock
from .otf_options import FolderNotWritable, OtfOptions, Status
from .progress import ProgressReader
from .runner import SnakemakeRun, live_snakemake, lock_failure, unlock

__all__ = ["FolderNotWritable", "OtfOptions", "OtfSession", "ProgressCallback", "Status"]

log = logging.getLogger(__name__)

FAILED_DIR = "batch_failures"
# Errors that mean "this folder cannot be written any more" (not a bad movie).
WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
TRANSIENT_TICKS = 5  # other OSErrors: the loop gives up after this many failed ticks in a row


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
            index=self.out_dir / FEEDER_INDEX,  # listings kept across restarts
        )
        self.progress = ProgressReader(self.out_dir, config=config)
        self.runs: list[tuple[SnakemakeRun, list[str]]] = []  # each run and its batches
        self.attempts: dict[str, int] = {}
        self.runs_finished = 0  # Snakemake runs of this loop that ended (sizes the next)
        self.last_activity = time.time()
        self._stop_requested = False
        self.outputs = OutputWriter(self.out_dir)
        self.policy = TrustPolicy.with_groups(options.trusted_groups)
        self.rule_dirs = rule_dirs_of(config)

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

    @property
    def running_batches(self) -> list[str]:
        return [batch for _run, batches in self.runs for batch in batches]

    def _finish_run(self, run: SnakemakeRun, batches: list[str], code: int) -> None:
        if code != 0 and lock_failure(run.log_path):
            # another snakemake held the folder (a killed worker's orphan, or staff by hand)
            if not self.runs and not live_snakemake(self.out_dir):
                log.warning("stale Snakemake lock in %s: unlocking", self.out_dir)
                unlock(self.out_dir, self.policy, self.rule_dirs)
            return
        pending = set(self.pending_batches())
        for batch in batches:
            if batch in pending:
                self.attempts[batch] = self.attempts.get(batch, 0) + 1
                if self.attempts[batch] >= self.options.max_attempts:
                    self._mark_failed(batch, code)
        log.info("snakemake for %s finished with exit code %d", ",".join(batches), code)

    def _reap(self) -> None:
        for item in list(self.runs):
            code = item[0].poll()
            if code is not None:
                self.runs.remove(item)
                self.runs_finished += 1
                self._release_slot()
                self._finish_run(item[0], item[1], code)

    def _release_slot(self) -> None:
        if self.options.slots is not None:
            self.options.slots.release(self._slot_key)

    @property
    def _slot_key(self) -> str:
        return self.options.slot_key or str(self.out_dir)

    def _next_batches(self) -> list[str]:
        """The oldest pending batches not in a run: ``batches_per_run`` of them at first,
        twice as many after each finished run, at most ``max_batches_per_run``."""
        running = set(self.running_batches)
        pending = [b for b in self.pending_batches() if b not in running]
        base = self.options.batches_per_run
        if base <= 0:
            return pending
        grown = base * 2 ** min(self.runs_finished, 16)
        return pending[: max(base, min(grown, self.options.max_batches_per_run))]

    def _run_args(self) -> list[str]:
        args = list(self.options.snakemake_args)
        cores = self.options.cores
        if cores is None and self.options.slots is not None:
            cores = self.options.slots.cores_per_run
        if cores is not None and "--cores" not in args and "-c" not in args:
            args += ["--cores", str(cores)]  # after the profile's: the command line wins
        return args

    def schedule(self) -> None:
        self._reap()
        slots = self.options.slots
        if self._stop_requested or len(self.runs) >= max(1, self.options.max_runs):
            if slots is not None:
                slots.withdraw(self._slot_key)
            return
        batches = self._next_batches()
        newest = max((run.started for run, _b in self.runs), default=0.0)
        young = self.runs_finished == 0 and time.time() - newest < self.options.run_stagger
        if not batches or young or (not self.runs and live_snakemake(self.out_dir)):
            # nothing to do, a run of ours just started, or e.g. the run of a worker that was
            # killed: let it finish
            if slots is not None:
                slots.withdraw(self._slot_key)
            return
        if slots is not None and not slots.acquire(self._slot_key):
            return  # another session's turn (or every slot busy): asked again next poll
        run = SnakemakeRun(
            self.out_dir,
            [f"Results/{b}.json" for b in batches],
            self.options.profile,
            self._run_args(),
            name=time.strftime("%Y%m%d-%H%M%S") + f"-{batches[0]}",
            policy=self.policy,
            rule_dirs=self.rule_dirs,
        )
        try:
            run.start()
        except BaseException:
            self._release_slot()
            raise
        self.runs.append((run, batches))

    def stop_runs(self, grace: float = 60.0) -> None:
        for run, _batches in self.runs:
            run.stop(grace=grace)
            self._release_slot()
        self.runs = []
        if self.options.slots is not None:
            self.options.slots.withdraw(self._slot_key)

    def status(self, state: str = "running") -> Status:
        self.progress.refresh(self.config)  # no re-read of config.yaml every tick
        snap = self.progress.snapshot()
        data = snap.counts.as_dict()
        data["failed"] += self._failed_batch_movies()
        data["accepted"], data["rejected"] = snap.part.accepted, snap.part.rejected
        data["movies_refused"] = len(self.scanner.refused)  # symlinks out of the raw folder
        failures = dict(snap.counts.failures)
        for reason in self.scanner.refused.values():
            group = f"feeder: {reason}"[:200]
            failures[group] = failures.get(group, 0) + 1
        return Status(
            state=state,
            movies_found=self.scanner.total_seen(),
            counts=data,
            failures=failures,
            batches_running=len(self.running_batches),
            snapshot=snap,
            pipeline_errors=list(snap.pipeline.errors),
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
        if self.runs or self.pending_batches() or self.batcher.pending:
            return False
        if self.options.once and self.scanner.total_seen() == len(self.scanner.known):
            return True
        return now - self.last_activity >= self.options.idle_timeout

    def write_outputs(self, wait: bool = False) -> None:
        """Rewrite the session STAR files and report when any batch result appeared or
        changed (in a child process; ``wait`` for the final one)."""
        self.outputs.update(wait=wait)

    # -- driving -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop_requested = True

    def step(self) -> bool:
        """One iteration; returns True when the session is finished (or stopped)."""
        now = time.time()
        if not self._stop_requested:
            self.feed(now)
        self.schedule()
        if self._stop_requested:
            self.stop_runs()
        done = self._stop_requested or self.finished(now)
        self.write_outputs(wait=done)  # the last rewrite of a session is waited for
        return done

    def _abort(self, exc: OSError) -> FolderNotWritable:
        self.stop_runs(grace=30.0)
        where = f" ({exc.filename})" if exc.filename else ""
        message = (
            f"processing folder {self.out_dir} is not writable: {exc.strerror}{where}; "
            "processing stopped (nothing was deleted; fix the folder and resubmit to resume)"
        )
        log.error("%s", message)
        return FolderNotWritable(message)

    def run_loop(self, on_progress: ProgressCallback | None = None) -> Status:
        """Drive the folder until the session ends; FolderBusy if another loop drives it,
        UntrustedFolder (nothing run) if its code could have been changed by someone else."""
        with FolderLock(self.out_dir, self.options.holder):
            try:
                return self._loop(on_progress)
            finally:  # whatever ended the loop, this session's run slots are given back
                if self.options.slots is not None:
                    self.options.slots.close(self._slot_key)

    def _loop(self, on_progress: ProgressCallback | None) -> Status:
        errors = 0  # ticks in a row that failed with an error other than "not writable"
        while True:
            try:
                done = self.step()
                errors = 0
            except OSError as exc:
                if exc.errno in WRITE_ERRNOS:
                    raise self._abort(exc) from exc
                errors += 1
                if errors >= TRANSIENT_TICKS:
                    raise
                # e.g. a file renamed or removed between a listing and its read: every step
                # of a tick is made from the files, so the next tick simply does it again
                log.warning("session loop tick failed (%s): tried again (%d of %d)",
                            exc, errors, TRANSIENT_TICKS)  # fmt: skip
                time.sleep(self.options.poll_interval)
                continue
            state = "stopped" if self._stop_requested else ("finished" if done else "running")
            status = self.status(state)
            if on_progress is not None:
                on_progress(status)
            if done:
                return status
            time.sleep(self.options.poll_interval)
