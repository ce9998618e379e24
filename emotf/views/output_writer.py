"""Session STAR files and ``report.html``, updated by a short-lived child process.

The child (``python -m emotf.outputs FOLDER``) appends the new batches' rows to the session
STAR files (:mod:`emotf.views`) and writes the report, which needs matplotlib: memory a
long-running worker should not keep, and a crash there must not touch the processing loop.
The loop asks for an update whenever ``Results/`` changes; at most one writer runs at a
time, a change seen while it runs is written by the next one, and the last update of a
session is waited for.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from ..session.batches import result_stamps

log = logging.getLogger(__name__)

REPORT_SECONDS = 60.0


def results_signature(out_dir: Path) -> tuple[int, int]:
    """(number of batch results, newest mtime): changes whenever a result appears or changes."""
    stamps = result_stamps(out_dir)
    return len(stamps), max((mtime for _size, mtime in stamps.values()), default=0)


class OutputWriter:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.written: tuple[int, int] = (-1, -1)  # Results/ when the STAR files were updated
        self.reported: tuple[int, int] = (-1, -1)  # ... and when the report was
        self._report_time = -REPORT_SECONDS
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.out_dir / "logs" / "session_outputs.log"

    def _reap(self, wait: bool) -> bool:
        """True when no writer is running (after waiting for it if ``wait``)."""
        if self._proc is None:
            return True
        code = self._proc.wait() if wait else self._proc.poll()
        if code is None:
            return False
        if code != 0:
            log.warning("session STAR files/report not updated (exit %d); see %s", code, self._log)
        self._proc = None
        return True

    def update(self, wait: bool = False) -> None:
        """Start an update if ``Results/`` changed since the last one (and none is running):
        the STAR files at every change, the report at most every ``REPORT_SECONDS`` (the
        page reloads itself every minute); with ``wait``, finish any running update, do the
        last one, report included, and wait for it."""
        if not self._reap(wait):
            return
        signature = results_signature(self.out_dir)
        stale = signature != self.reported
        report = stale and (wait or time.monotonic() - self._report_time >= REPORT_SECONDS)
        if signature == self.written and not report:
            return
        argv = [sys.executable, "-m", "emotf.outputs", *([] if report else ["--no-report"])]
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log, "ab") as handle:
            self._proc = subprocess.Popen(
                [*argv, os.fspath(self.out_dir)],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self.written = signature
        if report:
            self.reported, self._report_time = signature, time.monotonic()
        if wait:
            self._reap(True)
