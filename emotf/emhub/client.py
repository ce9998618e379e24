"""EMhub REST client for workers (verified against EMhub 1.0.2).

Every call is ``POST /api/<name>`` with a JSON body. EMhub reports server-side failures as
HTTP 200 with ``{"error": "..."}``; those raise :class:`EmhubError` (or
:class:`EmhubReconnectNeeded` when Redis lost the worker's stream/group). Transport errors,
timeouts and 5xx replies are transient: they are retried with bounded exponential backoff,
then raised as :class:`EmhubUnavailable`. Credentials are never logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

LONG_POLL_TIMEOUT = 90.0  # the server blocks get_new_tasks for 60 s
RECONNECT_MARKERS = ("NOGROUP", "Unregistered host", "Invalid token")


class EmhubError(RuntimeError):
    """The server answered with an error (HTTP 200 {"error": ...} or a 4xx)."""


class EmhubReconnectNeeded(EmhubError):
    """The worker's stream or group is gone (Redis restarted): call connect_worker again."""


class EmhubUnavailable(EmhubError):
    """The server could not be reached (or answered 5xx) after the allowed retries."""


class EmhubAuthError(EmhubError):
    """Login refused: wrong user name or password."""


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    args: dict[str, Any]

    @classmethod
    def from_reply(cls, data: dict[str, Any]) -> Task:
        args = data.get("args") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = {"_unparsed": args}
        if not isinstance(args, dict):
            args = {"_unparsed": args}
        return cls(id=str(data.get("id", "")), name=str(data.get("name", "")), args=args)


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
    def _post_once(self, endpoint: str, body: Any, timeout: float) -> Any:
        try:
            reply = self._http.post(f"{self.url}/api/{endpoint}", json=body, timeout=timeout)
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # server died mid-reply
        ) as exc:
            reason = type(exc).__name__
            raise EmhubUnavailable(f"{endpoint}: cannot reach {self.url}: {reason}") from None
        if reply.status_code >= 500:
            raise EmhubUnavailable(f"{endpoint}: server error HTTP {reply.status_code}")
        if reply.status_code == 401:
            raise EmhubAuthError(f"{endpoint}: not logged in (HTTP 401)")
        if reply.status_code >= 400:
            raise EmhubError(f"{endpoint}: HTTP {reply.status_code}")
        try:
            data = reply.json()
        except ValueError as exc:
            raise EmhubError(f"{endpoint}: reply is not JSON") from exc
        if isinstance(data, dict) and "error" in data:
            message = str(data["error"])
            if any(marker in message for marker in RECONNECT_MARKERS):
                raise EmhubReconnectNeeded(f"{endpoint}: {message}")
            raise EmhubError(f"{endpoint}: {message}")
        return data

    def post(self, endpoint: str, body: Any, timeout: float | None = None) -> Any:
        """POST with bounded retries of transient failures and one re-login on HTTP 401."""
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
                if not delays:
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
        data = self.post("get_pending_tasks", self._token_attrs())
        return [Task.from_reply(t) for t in data.get("tasks", [])]

    def get_new_tasks(self, timeout: float = LONG_POLL_TIMEOUT) -> list[Task]:
        """Long poll: the server holds the request up to 60 s when no task is queued."""
        data = self.post("get_new_tasks", self._token_attrs(), timeout=timeout)
        return [Task.from_reply(t) for t in data.get("tasks", [])]

    def get_all_tasks(self) -> list[tuple[Task, str, str]]:
        """(task, worker, status) of every task EMhub holds; status is ``pending`` (delivered,
        not done), ``done`` or ``""`` (never delivered)."""
        data = self.post("get_all_tasks", self._token_attrs())
        return [
            (Task.from_reply(t), str(t.get("worker", "")), str(t.get("status", "")))
            for t in data.get("tasks", [])
            if isinstance(t, dict)
        ]

    def update_task(self, task_id: str, event: dict[str, Any]) -> None:
        self.post("update_task", self._token_attrs(task_id=task_id, event=flatten_event(event)))

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
