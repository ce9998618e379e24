"""The ``frames`` task (the workers guide's example): what is in ``raw.root_frames``.

Every ``sleep`` seconds (default 30) it lists ``config:sessions raw.root_frames`` (which must
lie below ``transfer.frames_roots`` or ``otf.raw_roots``): each folder with its movie count
and size, each file with its size, and the disk usage; when anything changed it sends
``{"maxlen": 2, "entries": <JSON list>, "usage": <JSON {"total", "used"}>}`` as the guide's
handler does. It runs until stopped; a worker shutdown leaves it pending for the next start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .client import Task
from .paths import within_roots
from .raw_stats import scan_folder
from .session_common import StoppableTask, number_arg, read_config
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)


def frames_entries(root: Path) -> list[dict[str, Any]]:
    """One entry per name in ``root``: ``{name, type, size, ts[, movies]}``, by name."""
    entries: list[dict[str, Any]] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                scan = scan_folder(Path(entry.path))
                entries.append({"name": entry.name, "type": "dir", "size": scan.all.size,
                                "movies": scan.movies.count, "ts": st.st_mtime})  # fmt: skip
            elif entry.is_file(follow_symlinks=False):
                entries.append({"name": entry.name, "type": "file", "size": st.st_size,
                                "ts": st.st_mtime})  # fmt: skip
        except OSError:
            continue  # vanished while listing
    return entries


class FramesTask(StoppableTask):
    def __init__(self, worker: Worker, task: Task, report: Reporter) -> None:
        super().__init__(worker, task)
        self.report = report
        self.sleep = number_arg(task, "sleep", 30)
        otf = worker.settings.get("otf") or {}
        transfer = worker.settings.get("transfer") or {}
        self.roots = list(transfer.get("frames_roots", otf.get("raw_roots", [])))

    def _root(self) -> Path:
        root = (read_config(self.worker, "sessions").get("raw") or {}).get("root_frames")
        if not isinstance(root, str) or not root:
            raise TaskError("config:sessions has no raw.root_frames")
        folder = within_roots(root, self.roots, "raw.root_frames")
        if not folder.is_dir():
            raise TaskError(f"raw.root_frames {folder} is not a folder")
        return folder

    def run(self) -> dict[str, Any] | None:
        root = self._root()
        last = ""
        while True:
            entries = json.dumps(frames_entries(root))
            if entries != last:
                disk = shutil.disk_usage(root)
                usage = json.dumps({"total": disk.total, "used": disk.used})
                self.report({"maxlen": 2, "entries": entries, "usage": usage})
                last = entries
            if self.wait(self.sleep):
                return {"status": "stopped"} if self._user_stop else None


def frames_handler(worker: Worker, task: Task, report: Reporter) -> FramesTask:
    return FramesTask(worker, task, report)
