"""The long-running EMhub worker: connect, take tasks, run each in its own thread.

* Handlers come from an explicit registry (task name → factory); nothing the server sends
  is turned into a method name or a shell string.
* A task that fails ends with one ``{"error": ..., "done": 1}`` event; the worker goes on.
* Transient server outages are survived: polls back off, reconnects after Redis loss.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .client import EmhubClient, EmhubError, EmhubReconnectNeeded, EmhubUnavailable, Task

log = logging.getLogger(__name__)


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
    running: dict[str, Running] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)  # task ids taken by this process
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        delay = 2.0
        while not self._stop.is_set():
            try:
                self.client.connect_worker(self.specs)
                log.info("connected to %s as worker %s", self.client.url, self.client.worker)
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

    def _reconnecting(self, call: Callable[[], None]) -> None:
        """Run ``call``, reconnecting once if Redis lost the worker's stream/group."""
        try:
            call()
        except EmhubReconnectNeeded:
            self.connect()
            call()

    def deliver(self, task: Task, event: dict[str, Any]) -> None:
        """One ``update_task``; raises EmhubError (EmhubUnavailable if the server is down)."""
        self._reconnecting(lambda: self.client.update_task(task.id, event))

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

    def finish(self, task: Task, event: dict[str, Any]) -> None:
        """Deliver the final event: retried while the server is unreachable (until we stop);
        a rejection by the server is reported once in a shorter form, then given up."""
        final = {**event, "done": 1}
        delay = 5.0
        while True:
            try:
                self.deliver(task, final)
                return
            except EmhubUnavailable as exc:
                log.warning("task %s: final event not delivered yet (%s)", task.id, exc)
            except EmhubError as exc:
                log.error("task %s: server refused the final event: %s", task.id, exc)
                if "error" in final and len(str(final)) > 200:
                    final = {"error": str(final["error"])[:200], "done": 1}
                    continue
                return
            if self._stop.wait(delay):
                return
            delay = min(self.poll_backoff_max, delay * 2)

    def _execute(self, task: Task, handler: TaskHandler) -> None:
        final: dict[str, Any] | None
        try:
            final = handler.run()
        except TaskError as exc:
            log.error("task %s failed: %s", task.id, exc)
            final = {"error": str(exc)}
        except Exception as exc:  # the worker never dies from one task
            log.exception("task %s crashed", task.id)
            final = {"error": f"{type(exc).__name__}: {exc}", "stack": traceback.format_exc()}
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
        factory = self.registry.get(task.name)
        if factory is None:
            self.finish(task, {"error": f"no handler for task name {task.name[:100]!r}"})
            return
        try:
            handler = factory(self, task, self.reporter(task))
        except TaskError as exc:
            self.finish(task, {"error": str(exc)})
            return
        except Exception as exc:
            log.exception("task %s: handler could not start", task.id)
            self.finish(task, {"error": f"{type(exc).__name__}: {exc}"})
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
    def poll_once(self, pending: bool = False) -> None:
        tasks = self.client.get_pending_tasks() if pending else self.client.get_new_tasks()
        for task in tasks:
            log.info("task %s: %s %s", task.id, task.name, sorted(task.args))
            self.start_task(task)

    def recover_undelivered(self) -> None:
        """After Redis lost our stream, EMhub recreates the group at the stream's end, so
        tasks queued in between would never be delivered: take them from the task list."""
        for task, worker, status in self.client.get_all_tasks():
            if worker == self.client.worker and status in ("", "pending"):
                log.info("task %s: taken from the task list after reconnecting", task.id)
                self.start_task(task)

    def run(self) -> None:
        self.connect()
        first = True
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.poll_once(pending=first)
                first = False
                delay = 1.0
            except EmhubReconnectNeeded as exc:
                log.warning("%s: reconnecting", exc)
                self.connect()
                try:
                    self.recover_undelivered()
                except EmhubError as err:
                    log.warning("could not list undelivered tasks: %s", err)
            except EmhubError as exc:
                log.warning("polling failed (%s); next try in %.0f s", exc, delay)
                self._stop.wait(delay)
                delay = min(self.poll_backoff_max, delay * 2)

    def shutdown(self, wait: float = 30.0) -> None:
        """Stop polling; running tasks are interrupted and stay pending for the next start."""
        self._stop.set()
        for item in self.handlers_of(lambda r: True):
            item.handler.stop(user=False)
        deadline = time.time() + wait
        for item in self.handlers_of(lambda r: True):
            item.thread.join(max(0.0, deadline - time.time()))
