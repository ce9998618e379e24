"""The ``session`` task, with the actions EMhub's create-session form and staff queue.

Task args (EMhub adds ``session_id``):

* ``{"action": "otf"}``: the session's on-the-fly processing (below); ``"stop": 1`` stops it.
* ``{"action": "stop_otf"}`` (the stock name) or ``{"action": "stop"}``: stop that session's
  running ``otf`` task.
* ``{"action": "monitor"}``: keep ``extra.raw`` up to date from the raw folder
  (:mod:`.monitor`).
* ``{"action": "transfer"}``: move the EPU frames folder to storage (:mod:`.transfer`).

``otf`` waits until ``extra.raw.path`` names an existing folder (a ``transfer`` task sets it
when it starts), honours ``extra.otf.workflow`` (``none``: no processing, the task ends at
once) and ``extra.otf.cryolo_model`` (config ``cryolo.model``), and keeps ``extra.otf.status``
true: ``created`` → ``running`` → ``finished`` / ``stopped`` / ``failed``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError, deep_merge
from ..project import prepare_folder
from ..session.folder_lock import FolderBusy
from ..session.ledger import figures
from ..session.otf import FolderNotWritable, OtfOptions, OtfSession, Status
from ..session.slots import worker_slots
from ..trust import TrustPolicy, UntrustedFolder
from ..views.stats import session_stats
from .client import Task
from .extra import send_merged
from .live_page import ensure_project_db
from .monitor import MonitorTask
from .outbox import Outbox
from .paths import MAX_PATH, otf_paths, within_roots
from .raw_stats import now_text
from .raw_walker import RawWalker
from .session_common import (
    StoppableTask,
    microscope_name,
    read_config,
    read_session,
    session_id_of,
)
from .transfer_task import TransferTask
from .worker import Reporter, TaskError, TaskHandler, Worker

log = logging.getLogger(__name__)

ACTIONS = ("otf", "stop_otf", "stop", "monitor", "transfer")
__all__ = ["ACTIONS", "OtfTask", "StopTask", "session_handler", "session_id_of", "task_event"]


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


def cryolo_override(otf: dict[str, Any]) -> dict[str, Any]:
    """``extra.otf.cryolo_model`` (the session's crYOLO model) as a config override."""
    model = otf.get("cryolo_model")
    if not isinstance(model, str) or not model.strip():
        return {}
    if len(model) > MAX_PATH or "\x00" in model:
        raise TaskError("extra.otf.cryolo_model is not a valid path")
    return {"cryolo": {"model": model.strip()}}


def task_event(status: Status) -> dict[str, Any]:
    """Progress as an EMhub event. EMhub ends a task at any event holding the key ``done``,
    so the movie counts are named ``movies_done`` / ``movies_failed``."""
    event = status.as_dict()
    event["movies_done"] = event.pop("done")
    event["movies_failed"] = event.pop("failed")
    return event


class StopTask:
    """``stop_otf`` / ``stop``: stop the running ``otf`` task of the same session (it then
    sets ``extra.otf.status`` to ``stopped`` and ends)."""

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


class OtfTask(StoppableTask):
    """A session's OTF processing. Its progress goes through its own :class:`Outbox`; each
    ``extra`` update is merged into the session's current values (:mod:`.extra`)."""

    def __init__(self, worker: Worker, task: Task, session_id: int) -> None:
        super().__init__(worker, task)
        self.session_id = session_id
        self.settings: dict[str, Any] = dict(worker.settings.get("otf", {}))
        self.otf: OtfSession | None = None
        self.raw_dir: Path | None = None
        self.out_dir: Path | None = None  # known once the paths are checked
        self._raw: tuple[float, dict[str, Any]] = (0.0, {})  # when extra.raw was computed
        self._walker = RawWalker()  # re-walks only what changed (issue 18)
        self._sent: dict[str, Any] = {}  # the raw/otf sub-dicts last sent (extra.send_merged)
        self._last_sent: tuple[float, str] = (0.0, "")
        self.outbox = Outbox(
            lambda event: worker.deliver(task, event),
            self._send_extra,
            name=f"task-{task.id}-outbox",
        )

    def _send_extra(self, extra: dict[str, Any]) -> None:
        running = (extra.get("otf") or {}).get("status", "running") == "running"
        send_merged(self.worker, self.session_id, extra, self._sent, force=not running)

    def stop(self, user: bool = True) -> None:
        super().stop(user)
        if self.otf is not None:
            self.otf.request_stop()

    # -- preparation -------------------------------------------------------------------------
    def _wait_for_raw(self) -> dict[str, Any]:
        """The session, once ``extra.raw.path`` names an existing folder that holds a movie
        (a ``transfer`` task sets the path when it starts, before EPU has written anything;
        the idle timeout counts from the first movie), or when the wait (``otf.raw_wait``,
        default ``idle_timeout``) is over (then ``otf_paths`` says what is missing)."""
        roots = list(self.settings.get("raw_roots", []))
        wait = float(self.settings.get("raw_wait", self.settings.get("idle_timeout", 1800)))
        poll = float(self.settings.get("poll_interval", 5))
        deadline = time.time() + wait
        while True:
            session = read_session(self.worker, self.session_id)
            otf_path = ((session.get("extra") or {}).get("otf") or {}).get("path")
            if isinstance(otf_path, str) and 0 < len(otf_path) <= MAX_PATH:  # refused at once
                within_roots(otf_path, list(self.settings.get("otf_roots", [])), "OTF path")
            path = ((session.get("extra") or {}).get("raw") or {}).get("path")
            if isinstance(path, str) and path and len(path) <= MAX_PATH and "\x00" not in path:
                folder = within_roots(path, roots, "raw data path")
                if folder.is_dir() and self._walker.info(folder)["movies"] > 0:
                    return session
            if time.time() >= deadline or self.wait(poll):
                return session

    def _prepare(self, session: dict[str, Any]) -> OtfSession:
        sessions_config = read_config(self.worker, "sessions")
        microscope = (
            microscope_name(self.worker, session) if self.settings.get("microscopes") else None
        )
        raw, out, overrides, profile = otf_paths(
            session, sessions_config, self.settings, microscope
        )
        self.out_dir = out
        otf_extra = (session.get("extra") or {}).get("otf") or {}
        overrides = deep_merge(overrides, cryolo_override(otf_extra))
        scope = (self.settings.get("microscopes") or {}).get(microscope or "", {})
        rule_dirs = [*self.settings.get("rule_dirs", []), *scope.get("rule_dirs", [])]
        groups = list(self.settings.get("trusted_groups", []))
        try:
            config = prepare_folder(
                out,
                raw,
                {**acquisition_overrides(session), **overrides},
                rule_dirs=rule_dirs,
                policy=TrustPolicy.with_groups(groups),
                owner=f"emhub session {self.session_id}",
            )
        except (ConfigError, FolderBusy, UntrustedFolder) as exc:
            raise TaskError(str(exc)) from exc
        ensure_project_db(out)
        self.raw_dir = raw
        self.outbox.put("extra", {"otf": {"path": str(out), "status": "created"}})
        options = OtfOptions(
            idle_timeout=float(self.settings.get("idle_timeout", 1800)),
            poll_interval=float(self.settings.get("poll_interval", 5)),
            profile=profile,
            max_runs=int(self.settings.get("max_runs", 2)),
            batches_per_run=int(self.settings.get("batches_per_run", OtfOptions.batches_per_run)),
            max_attempts=int(self.settings.get("max_attempts", OtfOptions.max_attempts)),
            slots=worker_slots(self.worker, self.settings),  # shared by the worker's sessions
            slot_key=f"session-{self.session_id}",
            trusted_groups=groups,
            holder=f"worker task {self.task.id} (session {self.session_id})",
        )
        return OtfSession(out, config, options)

    # -- reporting ---------------------------------------------------------------------------
    def _raw_info(self, final: bool) -> dict[str, Any]:
        """``extra.raw`` of the raw folder, walked at most every ``report_interval`` seconds
        while the session runs (re-walking only the folders that changed and the files
        still being written), and once more at the end."""
        assert self.raw_dir is not None
        when, info = self._raw
        if (
            final
            or not info
            or time.time() - when >= float(self.settings.get("report_interval", 30))
        ):
            self._raw = (time.time(), self._walker.info(self.raw_dir))
        return self._raw[1]

    def _extra(self, status: Status) -> dict[str, Any]:
        assert self.otf is not None and self.raw_dir is not None
        emotf = {**task_event(status), "updated": now_text(), "path": str(self.otf.out_dir)}
        snap = status.snapshot or self.otf.progress.snapshot()  # the figures' own read
        emotf["stats"] = session_stats(snap.part, snap.pipeline)
        emotf["figures"] = figures(snap.part, snap.pipeline.names)
        return {
            "raw": self._raw_info(final=status.state != "running"),
            "otf": {"path": str(self.otf.out_dir), "status": status.state},
            "emotf": emotf,
        }

    def _publish(self, status: Status) -> None:
        """Queue a running session's progress event and ``extra``; never blocks on the
        server. The end of a run is reported once, by :meth:`run` (final event)."""
        if status.state != "running":
            return
        event = task_event(status)
        key = repr(sorted(event.items()))
        interval = float(self.settings.get("report_interval", 30))
        last_time, last_key = self._last_sent
        if key == last_key and time.time() - last_time < interval:
            return
        self.outbox.put("event", event)
        self.outbox.put("extra", self._extra(status))
        self._last_sent = (time.time(), key)

    # -- running -----------------------------------------------------------------------------
    def _skip(self, session: dict[str, Any]) -> dict[str, Any] | None:
        otf = (session.get("extra") or {}).get("otf") or {}
        if str(otf.get("workflow", "")).strip().lower() != "none":
            return None
        log.info("session %s: extra.otf.workflow is 'none': no OTF", self.session_id)
        return {"status": "no otf", "message": "extra.otf.workflow is 'none': no OTF processing"}

    def run(self) -> dict[str, Any] | None:
        try:
            session = read_session(self.worker, self.session_id)
            skipped = self._skip(session)
            if skipped is not None:
                return skipped
            session = self._wait_for_raw()
            if self.stopped:
                return {"status": "stopped"} if self._user_stop else None
            self.otf = self._prepare(session)
            if self.stopped:
                self.otf.request_stop()
            try:
                status = self.otf.run_loop(self._publish)
            except (FolderNotWritable, FolderBusy, UntrustedFolder) as exc:
                raise TaskError(str(exc)) from exc
            if status.state == "stopped" and not self._user_stop:
                return None  # worker shutdown: the task stays pending and resumes later
            self.outbox.put("extra", self._extra(status))
            # buffered updates first (in order), then the one final event
            if not self.outbox.flush(self.worker.stopping):
                return None
            return {**task_event(status), "otf_path": str(self.otf.out_dir)}
        except Exception:
            if self.out_dir is not None:  # the error ends this session's OTF
                otf = {"status": "failed"}  # a path only if EMhub's pages can open it
                otf.update({"path": str(self.out_dir)} if self.out_dir.is_dir() else {})
                self.outbox.put("extra", {"otf": otf})
            self.outbox.flush(self.worker.stopping)  # the last progress, then the error
            raise
        finally:
            self.outbox.close()


def session_handler(worker: Worker, task: Task, report: Reporter) -> TaskHandler:
    action = task.args.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise TaskError(f"unknown session action {str(action)[:60]!r}; known: {', '.join(ACTIONS)}")
    session_id = session_id_of(task)
    if action in ("stop", "stop_otf") or (action == "otf" and task.args.get("stop")):
        return StopTask(worker, task, session_id)
    if action == "monitor":
        return MonitorTask(worker, task, session_id, report)
    if action == "transfer":
        return TransferTask(worker, task, session_id, report)
    return OtfTask(worker, task, session_id)
