"""The ``session`` task: ``otf`` runs a session's on-the-fly processing, ``stop`` ends it.

Task args (EMhub adds ``session_id``): ``{"action": "otf", "session_id": N}``, optional
``"stop": 1`` (stop that session's OTF) or ``{"action": "stop", "session_id": N}``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..ledger import figures, ledger
from ..otf import FolderNotWritable, OtfOptions, OtfSession, Status
from ..project import prepare_folder
from ..stats import session_stats
from .client import EmhubError, Task
from .outbox import Outbox
from .paths import otf_paths
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)

ACTIONS = ("otf", "stop")


def session_id_of(task: Task) -> int:
    value = task.args.get("session_id")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TaskError(
            f"task {task.id}: session_id must be an integer, got {type(value).__name__}"
        )
    try:
        number = int(value)
    except ValueError:
        raise TaskError(
            f"task {task.id}: session_id {str(value)[:40]!r} is not an integer"
        ) from None
    if number <= 0:
        raise TaskError(f"task {task.id}: session_id must be positive")
    return number


def acquisition_overrides(session: dict[str, Any]) -> dict[str, Any]:
    """Fallback optics from the EMhub session (used for movies without EPU XML)."""
    acq = session.get("acquisition") or {}
    out: dict[str, Any] = {}
    for key, name in (
        ("voltage", "voltage"),
        ("cs", "cs"),
        ("pixel_size", "pixel_size"),
        ("dose", "dose_per_frame"),
    ):
        try:
            value = float(acq[key])
        except (KeyError, TypeError, ValueError):
            continue
        if value > 0:
            out[name] = value
    return {"acquisition": out} if out else {}


def task_event(status: Status) -> dict[str, Any]:
    """Progress as an EMhub event. EMhub ends a task at any event holding the key ``done``,
    so the movie counts are named ``movies_done`` / ``movies_failed``."""
    event = status.as_dict()
    event["movies_done"] = event.pop("done")
    event["movies_failed"] = event.pop("failed")
    return event


class StopTask:
    """``action: stop``: stop the running ``otf`` task of the same session."""

    def __init__(self, worker: Worker, task: Task, session_id: int) -> None:
        self.worker, self.task, self.session_id = worker, task, session_id

    def run(self) -> dict[str, Any]:
        targets = self.worker.handlers_of(
            lambda r: isinstance(r.handler, OtfTask) and r.handler.session_id == self.session_id
        )
        for item in targets:
            item.handler.stop(user=True)
        for item in targets:
            item.thread.join(120)
        return {"status": "stopped" if targets else "nothing to stop", "stopped": len(targets)}

    def stop(self, user: bool = True) -> None:
        pass


class OtfTask:
    """A session's OTF processing. Its progress goes through its own :class:`Outbox`, not
    the worker's per-event reporter."""

    def __init__(self, worker: Worker, task: Task, session_id: int) -> None:
        self.worker, self.task = worker, task
        self.session_id = session_id
        self.settings: dict[str, Any] = dict(worker.settings.get("otf", {}))
        self._stop = threading.Event()
        self._user_stop = False
        self.otf: OtfSession | None = None
        self._last_sent: tuple[float, str] = (0.0, "")
        self.session: dict[str, Any] = {}
        self.outbox = Outbox(
            lambda event: worker.deliver(task, event),
            lambda extra: worker.update_extra(self.session_id, extra),
            name=f"task-{task.id}-outbox",
        )

    def stop(self, user: bool = True) -> None:
        self._user_stop = self._user_stop or user
        self._stop.set()
        if self.otf is not None:
            self.otf.request_stop()

    def _prepare(self) -> OtfSession:
        client = self.worker.client
        try:
            self.session = client.get_session(self.session_id)
            sessions_config = client.get_config("sessions")
        except EmhubError as exc:
            raise TaskError(f"session {self.session_id}: {exc}") from exc
        raw, out, overrides, profile = otf_paths(
            self.session, sessions_config, self.settings, self._microscope()
        )
        config = prepare_folder(out, raw, {**acquisition_overrides(self.session), **overrides})
        options = OtfOptions(
            idle_timeout=float(self.settings.get("idle_timeout", 1800)),
            poll_interval=float(self.settings.get("poll_interval", 5)),
            profile=profile,
            max_runs=int(self.settings.get("max_runs", 2)),
        )
        return OtfSession(out, config, options)

    def _microscope(self) -> str | None:
        if not self.settings.get("microscopes"):
            return None
        names = {r.get("id"): r.get("name") for r in self.worker.client.get_resources()}
        name = names.get(self.session.get("resource_id"))
        return str(name) if name else None

    def _extra(self, status: Status, out_dir: Path) -> dict[str, Any]:
        extra = self.session.get("extra") or {}
        raw = dict(extra.get("raw") or {})
        assert self.otf is not None
        raw.update(self.otf.raw_stats())
        otf = dict(extra.get("otf") or {})
        otf.update(path=str(out_dir), status=otf.get("status") or "created")
        emotf = {**task_event(status), "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        records = self.otf.progress.summaries()
        emotf["stats"] = session_stats(records)
        emotf["figures"] = figures(ledger(self.otf.out_dir, self.otf.progress), records)
        return {"raw": raw, "otf": otf, "emotf": emotf}

    def _publish(self, status: Status, force: bool = False) -> None:
        """Queue the progress event and the session's ``extra``; never blocks on the server
        (the outbox delivers them, and keeps the newest while EMhub is down)."""
        assert self.otf is not None
        event = task_event(status)
        key = repr(sorted(event.items()))
        interval = float(self.settings.get("report_interval", 30))
        last_time, last_key = self._last_sent
        if not force and key == last_key and time.time() - last_time < interval:
            return
        self.outbox.put("event", event)
        self.outbox.put("extra", self._extra(status, self.otf.out_dir))
        self._last_sent = (time.time(), key)

    def run(self) -> dict[str, Any] | None:
        try:
            self.otf = self._prepare()
            if self._stop.is_set():
                self.otf.request_stop()
            try:
                status = self.otf.run_loop(self._publish)
            except FolderNotWritable as exc:
                raise TaskError(str(exc)) from exc
            if status.state == "stopped" and not self._user_stop:
                return None  # worker shutdown: the task stays pending and resumes later
            self._publish(status, force=True)
            # buffered updates first (in order), then the final event
            if not self.outbox.flush(self.worker.stopping):
                return None
            return {**task_event(status), "otf_path": str(self.otf.out_dir)}
        except Exception:
            self.outbox.flush(self.worker.stopping)  # the last progress, then the error
            raise
        finally:
            self.outbox.close()


def session_handler(worker: Worker, task: Task, report: Reporter) -> OtfTask | StopTask:
    action = task.args.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise TaskError(f"unknown session action {str(action)[:60]!r}; known: {', '.join(ACTIONS)}")
    session_id = session_id_of(task)
    if action == "stop" or task.args.get("stop"):
        return StopTask(worker, task, session_id)
    return OtfTask(worker, task, session_id)
