"""``session`` / ``monitor``: keep the session's ``extra.raw`` statistics from its raw folder.

As the stock session worker does: scan ``extra.raw.path``, merge the statistics into
``extra.raw`` (and set ``extra.updated``), send them (without the per-extension dict) as a
task event, every ``sleep`` seconds (default 60), ``repeat`` times (default 1; 0 = until
stopped); the last scan's event carries ``done``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .client import EmhubError, Task
from .extra import send_merged
from .paths import MAX_PATH, within_roots
from .raw_stats import task_info
from .raw_walker import RawWalker
from .session_common import StoppableTask, number_arg, read_session
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)


def raw_folder(session: dict[str, Any], roots: list[str]) -> Path:
    """The session's ``extra.raw.path``, checked against the allowed roots; it must exist."""
    path = ((session.get("extra") or {}).get("raw") or {}).get("path")
    if not isinstance(path, str) or not path.strip():
        raise TaskError(f"session {session.get('id')} has no extra.raw.path")
    if len(path) > MAX_PATH or "\x00" in path:
        raise TaskError("extra.raw.path is not a valid path")
    folder = within_roots(path, roots, "raw data path")
    if not folder.is_dir():
        raise TaskError(f"raw data folder {folder} does not exist")
    return folder


class MonitorTask(StoppableTask):
    def __init__(self, worker: Worker, task: Task, session_id: int, report: Reporter) -> None:
        super().__init__(worker, task)
        self.session_id, self.report = session_id, report
        self.repeat = int(number_arg(task, "repeat", 1))
        self.sleep = number_arg(task, "sleep", 60)
        self.roots = list(worker.settings.get("otf", {}).get("raw_roots", []))

    def _send(self, info: dict[str, Any]) -> None:
        try:
            send_merged(self.worker, self.session_id, {"raw": info})
        except EmhubError as exc:  # the next scan sends the newest state again
            log.warning("session %s: extra.raw not updated: %s", self.session_id, exc)

    def run(self) -> dict[str, Any] | None:
        folder = raw_folder(read_session(self.worker, self.session_id), self.roots)
        log.info("session %s: monitoring %s", self.session_id, folder)
        count, walker = 0, RawWalker()  # re-walks only what changed (issue 18)
        while True:
            info = walker.info(folder)
            self._send(info)
            count += 1
            if self.repeat and count >= self.repeat:
                return task_info(info)
            self.report(task_info(info))
            if self.wait(self.sleep):
                return {"status": "stopped", **task_info(info)} if self._user_stop else None
