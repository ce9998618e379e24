"""Pieces shared by the session actions (otf, monitor, transfer) and the periodic tasks."""

from __future__ import annotations

import logging
import threading
from typing import Any

from .client import EmhubError, Task
from .worker import TaskError, Worker

log = logging.getLogger(__name__)


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


def number_arg(task: Task, name: str, default: float, minimum: float = 0.0) -> float:
    """A numeric task argument (``sleep``, ``repeat``); TaskError if it is not a number."""
    value = task.args.get(name, default)
    if isinstance(value, bool):
        raise TaskError(f"task {task.id}: {name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TaskError(f"task {task.id}: {name} must be a number") from None
    if number < minimum or number != number or number > 1e9:
        raise TaskError(f"task {task.id}: {name} out of range")
    return number


def read_session(worker: Worker, session_id: int) -> dict[str, Any]:
    try:
        return worker.client.get_session(session_id)
    except EmhubError as exc:
        raise TaskError(f"session {session_id}: {exc}") from exc


def read_config(worker: Worker, name: str) -> dict[str, Any]:
    try:
        return worker.client.get_config(name)
    except EmhubError as exc:
        raise TaskError(f"config:{name}: {exc}") from exc


def microscope_name(worker: Worker, session: dict[str, Any]) -> str | None:
    try:
        resources = worker.client.get_resources()
    except EmhubError as exc:
        raise TaskError(f"resources: {exc}") from exc
    names = {r.get("id"): r.get("name") for r in resources}
    name = names.get(session.get("resource_id"))
    return str(name) if name else None


class StoppableTask:
    """Base of the tasks that loop until done or stopped. ``stop(user=False)`` is a worker
    shutdown: ``run`` then returns None and the task stays pending for the next start."""

    def __init__(self, worker: Worker, task: Task) -> None:
        self.worker, self.task = worker, task
        self._stop = threading.Event()
        self._user_stop = False

    def stop(self, user: bool = True) -> None:
        self._user_stop = self._user_stop or user
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if stopped meanwhile."""
        return self._stop.wait(max(0.0, seconds))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()
