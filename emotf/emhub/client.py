"""EMhub REST client for workers (verified against EMhub 1.0.2).

Every call is ``POST /api/<name>`` with a JSON body. EMhub reports server-side failures as
HTTP 200 with ``{"error": "..."}``; those raise :class:`EmhubError` (or
:class:`EmhubReconnectNeeded` when Redis lost the worker's stream/group). Transport errors,
timeouts and 5xx replies are transient: they are retried with bounded exponential backoff,
then raised as :class:`EmhubUnavailable`. A failure after the request may have reached the
server (read timeout, reply cut off, 5xx) is :class:`EmhubUncertain`: callers that must not
send something twice (a task's final event) ask for no blind resend. Credentials are never
logged, and text from the server is passed through :func:`clean` before it is.

Replies listing tasks are parsed by :mod:`emotf.emhub.tasks` (bounded, never raising).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from .safe_text import clean
from .tasks import Task, tasks_of

__all__ = ["EmhubClient", "EmhubError", "EmhubUnavailable", "EmhubUncertain", "Task", "clean"]
log = logging.getLogger(__name__)

LONG_POLL_TIMEOUT = 90.0  # the server blocks get_new_tasks for 60 s
RECONNECT_MARKERS = ("NOGROUP", "Unregistered host", "Invalid token")


class EmhubError(RuntimeError):
    """The server answered with an error (HTTP 200 {"error": ...} or a 4xx)."""


class EmhubReconnectNeeded(EmhubError):
    """The worker's stream or group is gone (Redis restarted): call connect_worker again."""


class EmhubUnavailable(EmhubError):
    """The server could not be reached (or answered 5xx) after the allowed retries."""


class EmhubUncertain(EmhubUnavailable):
    """The request may have reached the server, but no reply came (read timeout, reply cut
    off, 5xx): the server may or may not have acted on it."""


class EmhubAuthError(EmhubError):
    """Login refused: wrong user name or password."""


def flatten_event(event: dict[str, Any]) -> dict[str, str | int | float]:
    """EMhub stores events in Redis: values must be str/int/float (no None/bool/dict/list)."""
    flat: dict[str, str | int | float] = {}
    for key, value in event.items():
        if value is None:
            flat[key] = ""
        elif isinstance(value, bool):
            flat[key] = int(value)
        elif isinstance(value, int | float | str):
            flat[key] = value
        else:
            flat[key] = json.dumps(value, default=str)
    return flat


@dataclass
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 1.0
    max_delay: float = 30.0

    def delays(self) -> list[float]:
        return [min(self.max_delay, self.first_delay * 2**i) for i in range(self.attempts - 1)]


class EmhubClient:
    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        worker: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.user = user
        self._password = password
        self.worker = worker
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.token: str | None = None
        self._sleep = sleep
        self._http = requests.Session()
        self._logged_in = False

    def __repr__(self) -> str:  # never shows the password or token
        return f"EmhubClient(url={self.url!r}, user={self.user!r}, worker={self.worker!r})"

    # -- transport ---------------------------------------------------------------------------
    @staticmethod
    def _never_sent(exc: requests.RequestException) -> bool:
        """True when the request surely did not reach the server (no connection made)."""
        if isinstance(exc, requests.ConnectTimeout):
            return True
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(exc, requests.ConnectionError) and isinstance(reason, ConnectTimeoutError)

    def _post_once(self, endpoint: str, body: Any, timeout: float) -> Any:
        try:
            reply = self._http.post(f"{self.url}/api/{endpoint}", json=body, timeout=timeout)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # server died mid-reply
        ) as exc:
            reason = type(exc).__name__
            unsent = self._never_sent(exc)
            kind = EmhubUnavailable if unsent else EmhubUncertain
            raise kind(f"{endpoint}: cannot reach {self.url}: {reason}") from None
        if reply.status_code >= 500:
            raise EmhubUncertain(f"{endpoint}: server error HTTP {reply.status_code}")
        if reply.status_code == 401:
            raise EmhubAuthError(f"{endpoint}: not logged in (HTTP 401)")
        if reply.status_code >= 400:
            raise EmhubError(f"{endpoint}: HTTP {reply.status_code}")
        try:
            data = reply.json()
        except (ValueError, RecursionError):
            raise EmhubError(f"{endpoint}: reply is not JSON (or nested too deeply)") from None
        if isinstance(data, dict) and "error" in data:
            message = clean(data["error"], 500)
            if any(marker in message for marker in RECONNECT_MARKERS):
                raise EmhubReconnectNeeded(f"{endpoint}: {message}")
            raise EmhubError(f"{endpoint}: {message}")
        return data

    def post(
        self, endpoint: str, body: Any, timeout: float | None = None, resend: bool = True
    ) -> Any:
        """POST with bounded retries of transient failures and one re-login on HTTP 401.

        With ``resend=False`` a request that may have reached the server is not sent again:
        :class:`EmhubUncertain` is raised at once (only failures to connect are retried).
        """
        timeout = self.timeout if timeout is None else timeout
        delays = self.retry.delays()
        relogged = False
        while True:
            try:
                return self._post_once(endpoint, body, timeout)
            except EmhubAuthError:
                if relogged or endpoint == "login":
                    raise
                relogged = True
                self.login()
            except EmhubUnavailable as exc:
                if not delays or (isinstance(exc, EmhubUncertain) and not resend):
                    raise
                delay = delays.pop(0)
                log.warning("%s; retrying in %.0f s", exc, delay)
                self._sleep(delay)

    # -- authentication ------------------------------------------------------------------------
    def login(self) -> None:
        try:
            data = self.post("login", {"username": self.user, "password": self._password})
        except EmhubAuthError:
            raise
        except EmhubUnavailable:
            raise
        except EmhubError as exc:
            raise EmhubAuthError(f"login as {self.user!r} refused by {self.url}") from exc
        if data != "OK":
            raise EmhubAuthError(f"login as {self.user!r} refused by {self.url}")
        self._logged_in = True

    def connect_worker(self, specs: dict[str, Any]) -> str:
        if not self._logged_in:
            self.login()
        try:
            data = self.post("connect_worker", {"attrs": {"worker": self.worker, "specs": specs}})
        except EmhubReconnectNeeded as exc:  # reconnecting cannot fix an unknown host
            raise EmhubError(
                f"worker {self.worker!r} is not registered in EMhub's config:hosts: {exc}"
            ) from None
        token = data.get("token") if isinstance(data, dict) else None
        if not token:
            raise EmhubError("connect_worker: no token in reply")
        self.token = str(token)
        return self.token

    def _token_attrs(self, **attrs: Any) -> dict[str, Any]:
        if self.token is None:
            raise EmhubReconnectNeeded("worker is not connected (no token)")
        return {"attrs": {"worker": self.worker, "token": self.token, **attrs}}

    # -- tasks -----------------------------------------------------------------------------------
    def get_pending_tasks(self) -> list[Task]:
        return tasks_of(self.post("get_pending_tasks", self._token_attrs()))

    def get_new_tasks(self, timeout: float = LONG_POLL_TIMEOUT) -> list[Task]:
        """Long poll: the server holds the request up to 60 s when no task is queued."""
        return tasks_of(self.post("get_new_tasks", self._token_attrs(), timeout=timeout))

    def get_all_tasks(self) -> list[tuple[Task, str, str]]:
        """(task, worker, status) of every task EMhub holds; status is ``pending`` (delivered,
        not done), ``done`` or ``""`` (never delivered)."""
        data = self.post("get_all_tasks", self._token_attrs())
        items = data.get("tasks") if isinstance(data, dict) else None
        listed = [t for t in items if isinstance(t, dict)] if isinstance(items, list) else []
        by_id = {task.id: task for task in tasks_of({"tasks": listed})}
        return [
            (by_id[str(t.get("id"))], str(t.get("worker", "")), str(t.get("status", "")))
            for t in listed
            if str(t.get("id")) in by_id
        ]

    def task_status(self, task_id: str) -> str:
        """EMhub's status of one of this worker's tasks (``pending``, ``done``, ``""``), or
        ``"missing"`` when EMhub no longer holds it."""
        for task, worker, status in self.get_all_tasks():
            if task.id == task_id and worker == self.worker:
                return status
        return "missing"

    def update_task(self, task_id: str, event: dict[str, Any], final: bool = False) -> None:
        """Add one event to the task's history. A ``final`` event (``done``) is not sent
        again after a failure that may have reached the server (EmhubUncertain): the
        caller checks :meth:`task_status` first, so ``done`` is stored once."""
        body = self._token_attrs(task_id=task_id, event=flatten_event(event))
        self.post("update_task", body, resend=not final)

    # -- sessions and configuration --------------------------------------------------------------
    def get_session(self, session_id: int) -> dict[str, Any]:
        if not self._logged_in:
            self.login()
        data = self.post("get_sessions", {"attrs": None, "condition": f"id={int(session_id)}"})
        if not isinstance(data, list) or not data:
            raise EmhubError(f"session {session_id} not found")
        session: dict[str, Any] = data[0]
        return session

    def get_config(self, name: str) -> dict[str, Any]:
        if not self._logged_in:
            self.login()
        data = self.post("get_config", {"attrs": {"config": name}})
        config = data.get("config") if isinstance(data, dict) else None
        if not isinstance(config, dict):
            raise EmhubError(f"config {name!r} missing in reply")
        return config

    def get_resources(self) -> list[dict[str, Any]]:
        if not self._logged_in:
            self.login()
        data = self.post("get_resources", {"attrs": ["id", "name"]})
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def update_session_extra(self, session_id: int, extra: dict[str, Any]) -> None:
        """Shallow top-level merge on the server: always send whole sub-dicts."""
        self.post("update_session_extra", self._token_attrs(id=int(session_id), extra=extra))
