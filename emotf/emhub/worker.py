"""The long-running EMhub worker: connect, take tasks, run each in its own thread.

* Handlers come from an explicit registry (task name → factory); nothing the server sends
  is turned into a method name or a shell string.
* A task that fails, or whose arguments are bad, ends with one ``{"error": ..., "done": 1}``
  event (no traceback: that is logged here only); nothing one task sends or does ends the
  process.
* Transient server outages are survived: polls back off, reconnects after Redis loss.
* Pending tasks are taken again every ``pending_interval`` seconds and after every
  (re)connect: a task EMhub handed to a long poll of a process that is gone (a restart
  within 60 s) is still run. The set of started task ids keeps one from running twice.
* Every event of a task carries ``seq`` (1, 2, ... per task; a resumed task goes on from the
  events EMhub holds), kept on a resend, so a duplicate is recognisable. The final ``done``
  is sent once: after a failure that may have reached the server it is resent only if
  EMhub does not already show the task done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .client import (
    EmhubClient,
    EmhubError,
    EmhubReconnectNeeded,
    EmhubUnavailable,
    EmhubUncertain,
    Task,
    clean,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
PENDING_INTERVAL = 45.0  # seconds between re-takes of pending tasks (< EMhub's 60 s poll)


class TaskError(RuntimeError):
    """A task cannot run (bad arguments, unknown session, ...); ends the task, not the worker."""


class Reporter(Protocol):
    def __call__(self, event: dict[str, Any]) -> None: ...


class TaskHandler(Protocol):
    """Runs one task to completion.

    ``run`` returns the final event (``done`` is added), or None when interrupted by a worker
    shutdown: the task then stays pending and is taken again at the next start.
    """

    def run(self) -> dict[str, Any] | None: ...

    def stop(self, user: bool = True) -> None: ...


HandlerFactory = Callable[["Worker", Task, Reporter], TaskHandler]


@dataclass
class Running:
    task: Task
    handler: TaskHandler
    thread: threading.Thread


@dataclass
class Worker:
    client: EmhubClient
    registry: dict[str, HandlerFactory]
    specs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    poll_backoff_max: float = 60.0
    pending_interval: float = PENDING_INTERVAL
    finish_delay: float = 5.0  # first wait before the final event is tried again
    running: dict[str, Running] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)  # task ids taken by this process
    _seq: dict[str, int] = field(default_factory=dict)  # last event number per task
    _stop: threading.Event = field(default_factory=threading.Event)
    _sweep: threading.Event = field(default_factory=threading.Event)  # take pending now
    _lost: threading.Event = field(default_factory=threading.Event)  # Redis lost our group
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        delay = 2.0
        while not self._stop.is_set():
            try:
                self.client.connect_worker(self.specs)
                log.info("connected to %s as worker %s", self.client.url, self.client.worker)
                self._sweep.set()  # tasks handed to a poll of a gone process are pending
                return
            except EmhubUnavailable as exc:
                log.warning("cannot connect (%s); retrying in %.0f s", exc, delay)
            self._stop.wait(delay)
            delay = min(self.poll_backoff_max, delay * 2)

    # -- task lifecycle --------------------------------------------------------------------------
    def reporter(self, task: Task) -> Reporter:
        def report(event: dict[str, Any]) -> None:
            self.send_event(task, event)

        return report

    @property
    def stopping(self) -> threading.Event:
        """Set when the worker shuts down."""
        return self._stop

    def _reconnecting(self, call: Callable[[], T]) -> T:
        """Run ``call``, reconnecting once if Redis lost the worker's stream/group."""
        try:
            return call()
        except EmhubReconnectNeeded:
            self._lost.set()
            self.connect()
            return call()

    def _stamp(self, task: Task, event: dict[str, Any]) -> None:
        """Number ``event`` in place, once: a resend of the same dict keeps its ``seq``."""
        with self._lock:
            if "seq" not in event:
                number = self._seq.get(task.id, max(0, task.history - 1)) + 1
                self._seq[task.id] = event["seq"] = number

    def deliver(self, task: Task, event: dict[str, Any], final: bool = False) -> None:
        """One ``update_task``; raises EmhubError (EmhubUnavailable if the server is down,
        EmhubUncertain if it may have stored the event although no reply came). The event
        gets its ``seq`` (in place) at the first attempt."""
        self._stamp(task, event)
        self._reconnecting(lambda: self.client.update_task(task.id, event, final=final))

    def update_extra(self, session_id: int, extra: dict[str, Any]) -> None:
        """One ``update_session_extra``; raises like :meth:`deliver`."""
        self._reconnecting(lambda: self.client.update_session_extra(session_id, extra))

    def send_event(self, task: Task, event: dict[str, Any]) -> bool:
        """Send one progress event; False if it could not be delivered."""
        try:
            self.deliver(task, event)
            return True
        except EmhubError as exc:
            log.warning("task %s: event not delivered: %s", task.id, exc)
            return False

    def _final_stored(self, task: Task) -> bool:
        status = self._reconnecting(lambda: self.client.task_status(task.id))
        if status == "done":
            log.info("task %s: EMhub already holds its final event; not sent again", task.id)
        return status == "done"

    def finish(self, task: Task, event: dict[str, Any]) -> None:
        """Deliver the final event exactly once: retried while the server is unreachable
        (until we stop), but after a failure that may have reached the server only if EMhub
        does not show the task done; a rejection is reported once in a shorter form."""
        final = {**event, "done": 1}
        delay, check = self.finish_delay, False
        while True:
            try:
                if not (check and self._final_stored(task)):
                    self.deliver(task, final, final=True)
                break
            except EmhubUncertain as exc:
                log.warning("task %s: final event unconfirmed (%s); checking first", task.id, exc)
                check = True
            except EmhubUnavailable as exc:
                log.warning("task %s: final event not delivered yet (%s)", task.id, exc)
            except EmhubError as exc:
                log.error("task %s: server refused the final event: %s", task.id, exc)
                if "error" in final and len(str(final)) > 200:
                    final = {"error": str(final["error"])[:200], "done": 1}
                    continue
                break
            if self._stop.wait(delay):
                break
            delay = min(self.poll_backoff_max, delay * 2)
        with self._lock:
            self._seq.pop(task.id, None)

    def _execute(self, task: Task, handler: TaskHandler) -> None:
        final: dict[str, Any] | None
        try:
            final = handler.run()
        except TaskError as exc:
            log.error("task %s failed: %s", task.id, exc)
            final = {"error": str(exc)}
        except Exception as exc:  # the worker never dies from one task
            log.exception("task %s crashed", task.id)  # the traceback stays in this log
            final = {"error": clean(f"{type(exc).__name__}: {exc}", 300)}
        finally:
            with self._lock:
                self.running.pop(task.id, None)
        if final is not None:
            self.finish(task, final)

    def start_task(self, task: Task) -> None:
        with self._lock:
            if task.id in self.running or task.id in self.started:
                return
            self.started.add(task.id)
        if task.invalid:
            log.warning("task %s refused: %s", task.id, task.invalid)
            self.finish(task, {"error": task.invalid})
            return
        factory = self.registry.get(task.name)
        if factory is None:
            self.finish(task, {"error": f"no handler for task name {clean(task.name, 100)}"})
            return
        try:
            handler = factory(self, task, self.reporter(task))
        except TaskError as exc:
            self.finish(task, {"error": str(exc)})
            return
        except Exception as exc:
            log.exception("task %s: handler could not start", task.id)
            self.finish(task, {"error": clean(f"{type(exc).__name__}: {exc}", 300)})
            return
        thread = threading.Thread(
            target=self._execute, args=(task, handler), name=f"task-{task.id}", daemon=True
        )
        with self._lock:
            self.running[task.id] = Running(task, handler, thread)
        thread.start()

    def handlers_of(self, predicate: Callable[[Running], bool]) -> list[Running]:
        with self._lock:
            return [r for r in self.running.values() if predicate(r)]

    # -- main loop --------------------------------------------------------------------------------
    def dispatch(self, task: Task, source: str) -> None:
        """Start one task; whatever goes wrong stays with that task (logged)."""
        with self._lock:
            if task.id in self.started:
                return
        args = clean(sorted(task.args)[:20], 200)
        log.info("task %s (%s): %s %s", task.id, source, clean(task.name, 80), args)
        try:
            self.start_task(task)
        except Exception:  # noqa: BLE001 - one task never ends the worker
            log.exception("task %s: could not be started", task.id)

    def poll_once(self, pending: bool = False) -> None:
        if pending:
            self.take_pending()
            return
        for task in self.client.get_new_tasks():
            self.dispatch(task, "new")

    def take_pending(self) -> None:
        """Start the tasks EMhub shows pending for this worker that this process has not
        started (e.g. handed to the long poll of a process that is gone)."""
        for task in self._reconnecting(self.client.get_pending_tasks):
            self.dispatch(task, "taken from the pending list")

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            self._sweep.wait(self.pending_interval)
            self._sweep.clear()
            if self._stop.is_set():
                return
            try:
                if self._lost.is_set():  # whichever thread saw it and reconnected
                    self._lost.clear()
                    self.recover_undelivered()
                else:
                    self.take_pending()
            except EmhubError as exc:
                log.warning("pending tasks not listed (%s); next try in %.0f s",
                            exc, self.pending_interval)  # fmt: skip
            except Exception:  # noqa: BLE001 - the sweep goes on whatever the reply was
                log.exception("pending tasks not listed")

    def recover_undelivered(self) -> None:
        """After Redis lost our stream, EMhub recreates the group at the stream's end, so
        tasks queued in between would never be delivered: take them (and the pending ones)
        from the task list. Run by the sweep after any thread reconnected."""
        for task, worker, status in self.client.get_all_tasks():
            if worker == self.client.worker and status in ("", "pending"):
                self.dispatch(task, "taken from the task list after reconnecting")

    def run(self) -> None:
        self.connect()
        threading.Thread(target=self._sweep_loop, name="pending-tasks", daemon=True).start()
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.poll_once()
                delay = 1.0
                continue
            except EmhubReconnectNeeded as exc:
                log.warning("%s: reconnecting", exc)
                self._lost.set()  # the sweep then takes what Redis will never deliver
                self.connect()
                continue
            except EmhubError as exc:
                log.warning("polling failed (%s); next try in %.0f s", exc, delay)
            except Exception:  # noqa: BLE001 - an unexpected reply never ends the worker
                log.exception("polling failed unexpectedly; next try in %.0f s", delay)
            self._stop.wait(delay)
            delay = min(self.poll_backoff_max, delay * 2)

    def shutdown(self, wait: float = 30.0) -> None:
        """Stop polling; running tasks are interrupted and stay pending for the next start."""
        self._stop.set()
        self._sweep.set()
        for item in self.handlers_of(lambda r: True):
            item.handler.stop(user=False)
        deadline = time.time() + wait
        for item in self.handlers_of(lambda r: True):
            item.thread.join(max(0.0, deadline - time.time()))
