"""``session`` / ``transfer``: move the session's EPU frames folder to storage (:mod:`.transfer`).

Source: ``extra.raw.frames``, else ``config:sessions raw.root_frames/<session name after
':'>``; it must lie below ``transfer.frames_roots`` of the worker configuration (default:
``otf.raw_roots``), and it may not exist yet (EPU creates it when the session starts).
Destination: ``extra.raw.path`` when set (a restarted task goes on where it was), else
``raw.root/<group>/<microscope>/<year>/raw/EPU/<initial+last name>/<YYYYMMDD>_<mic>_<name>``
as the stock worker builds it (the year from the session start, not from today); it must lie
below ``otf.raw_roots``. The task sets ``extra.raw.path`` and ``extra.raw.frames`` at once, so
the session's ``otf`` task starts on the destination as soon as movies arrive there.

Worker configuration ``transfer``: ``mode`` (``move``, default, or ``copy``),
``settle_seconds`` (60), ``sleep`` (between scans, 60; the task argument ``sleep`` wins),
``idle_timeout`` (the task ends after this long with nothing new and nothing left, 3 days),
``frames_roots``. Events: ``new_files, new_movies, total_files, total_movies,
transferred_size, transfer_speed`` (MB/s of the last pass).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .client import EmhubError, Task
from .extra import send_merged
from .paths import MAX_PATH, within_roots
from .raw_stats import pretty_size
from .raw_walker import RawWalker
from .session_common import (
    StoppableTask,
    microscope_name,
    number_arg,
    read_config,
    read_session,
)
from .transfer import Transfer, TransferError, TransferLedger, movies_in
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)


def _checked(value: Any, what: str, roots: list[str]) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{what} is missing")
    if len(value) > MAX_PATH or "\x00" in value:
        raise TaskError(f"{what} is not a valid path")
    return within_roots(value, roots, what)


def user_folder(email: str) -> str:
    """``jane.doe@x`` → ``jdoe`` (as the stock worker); a name without a dot stays as is."""
    local = email.split("@")[0]
    parts = [p for p in local.split(".") if p]
    if len(parts) >= 2:
        return parts[0][0] + parts[-1]
    return parts[0] if parts else "unknown"


def session_short_name(session: dict[str, Any]) -> str:
    name = str(session.get("name") or f"session{session.get('id')}")
    name = name.split(":", 1)[1] if ":" in name else name
    if not name or "/" in name or name in (".", ".."):
        raise TaskError(f"session name {name[:60]!r} cannot be a folder name")
    return name


class TransferTask(StoppableTask):
    def __init__(self, worker: Worker, task: Task, session_id: int, report: Reporter) -> None:
        super().__init__(worker, task)
        self.session_id, self.report = session_id, report
        self._walker = RawWalker()  # each pass re-walks only the folders that changed
        self.conf: dict[str, Any] = dict(worker.settings.get("transfer") or {})
        otf = worker.settings.get("otf") or {}
        self.raw_roots = list(otf.get("raw_roots", []))
        self.frames_roots = list(self.conf.get("frames_roots", self.raw_roots))
        self.sleep = number_arg(task, "sleep", float(self.conf.get("sleep", 60)))
        self.idle = float(self.conf.get("idle_timeout", 3 * 86400))
        mode = self.conf.get("mode", "move")
        if mode not in ("move", "copy"):
            raise TaskError(f"transfer.mode must be 'move' or 'copy', not {str(mode)[:20]!r}")
        self.move = mode == "move"

    # -- paths ---------------------------------------------------------------------------
    def _destination(self, session: dict[str, Any], sconfig: dict[str, Any]) -> Path:
        raw = (session.get("extra") or {}).get("raw") or {}
        if raw.get("path"):
            return _checked(raw["path"], "raw data path", self.raw_roots)
        root = (sconfig.get("raw") or {}).get("root")
        try:
            users = self.worker.client.post("get_session_users", {"attrs": {"id": self.session_id}})
            owner = users["session_users"]["owner"]["email"]
            group = str(users["session_users"]["group"])
        except (EmhubError, KeyError, TypeError) as exc:
            raise TaskError(f"session {self.session_id}: no owner/group for the transfer "
                            f"destination ({exc})") from exc  # fmt: skip
        mic = microscope_name(self.worker, session) or "microscope"
        start = str(session.get("start") or datetime.now().isoformat())
        day = start.split("T")[0].replace("-", "")
        name = f"{day}_{mic}_{session_short_name(session)}"
        if not isinstance(root, str) or not root:
            raise TaskError("config:sessions has no raw.root for the transfer destination")
        parts = [group, mic, day[:4], "raw", "EPU", user_folder(str(owner)), name]
        if any(not p or "/" in p or p in (".", "..") for p in parts):
            raise TaskError(f"transfer destination parts {parts} are not folder names")
        return _checked(os.path.join(root, *parts), "transfer destination", self.raw_roots)

    def _source(self, session: dict[str, Any], sconfig: dict[str, Any]) -> Path:
        raw = (session.get("extra") or {}).get("raw") or {}
        frames = raw.get("frames")
        if not frames:
            root = (sconfig.get("raw") or {}).get("root_frames")
            if not isinstance(root, str) or not root:
                raise TaskError("no extra.raw.frames and no raw.root_frames in config:sessions")
            frames = os.path.join(root, session_short_name(session))
        return _checked(frames, "frames folder", self.frames_roots)

    # -- reporting -----------------------------------------------------------------------
    def _update_raw(self, source: Path, dest: Path) -> dict[str, Any]:
        info = self._walker.info(dest)
        try:
            send_merged(self.worker, self.session_id,
                        {"raw": {**info, "path": str(dest), "frames": str(source)}})  # fmt: skip
        except EmhubError as exc:  # the next pass sends the newest state again
            log.warning("session %s: extra.raw not updated: %s", self.session_id, exc)
        return info

    def _event(self, info: dict[str, Any], copied: list[Any], ledger: TransferLedger,
               seconds: float) -> dict[str, Any]:  # fmt: skip
        size = sum(c.size for c in copied)
        return {
            "new_files": len(copied),
            "new_movies": movies_in(copied),
            "total_files": info["files_total"],
            "total_movies": info["movies"],
            "transferred_size": ledger.total_size(),
            "transferred_sizeH": pretty_size(ledger.total_size()),
            "transfer_speed": round(size / 1e6 / seconds, 2) if copied and seconds > 0 else 0.0,
        }

    # -- running -------------------------------------------------------------------------
    def run(self) -> dict[str, Any] | None:
        session = read_session(self.worker, self.session_id)
        sconfig = read_config(self.worker, "sessions")
        source, dest = self._source(session, sconfig), self._destination(session, sconfig)
        dest.mkdir(parents=True, exist_ok=True)
        ledger = TransferLedger(dest.parent / f".{dest.name}.transfer.jsonl")
        engine = Transfer(source, dest, ledger, move=self.move,
                          settle=float(self.conf.get("settle_seconds", 60)))  # fmt: skip
        log.info("session %s: transfer %s -> %s (%s)", self.session_id, source, dest,
                 "move" if self.move else "copy")  # fmt: skip
        info = self._update_raw(source, dest)
        last_new = time.time()
        while True:
            started = time.time()
            try:
                copied = engine.run_once() if source.is_dir() else []
            except TransferError as exc:
                self._update_raw(source, dest)
                raise TaskError(str(exc)) from exc
            if copied:
                last_new = time.time()
                info = self._update_raw(source, dest)
                self.report(self._event(info, copied, ledger, time.time() - started))
            elif time.time() - last_new >= self.idle and engine.pending() == 0:
                info = self._update_raw(source, dest)
                return {**self._event(info, [], ledger, 0), "status": "finished"}
            if self.wait(0 if copied else self.sleep):
                final = {**self._event(info, [], ledger, 0), "status": "stopped"}
                return final if self._user_stop else None
