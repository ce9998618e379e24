"""A real EMhub 1.0.2 server + redis-server on loopback, for the worker integration tests.

The server runs from its own venv (``tests/emhub/setup_server.sh``); tests talk to it over
HTTP like any worker would, and read task histories straight from Redis (EMhub has no JSON
API for them). Every process it starts is tracked by PID and stopped by it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
import requests

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmhubServer:
    def __init__(self, venv: Path, workdir: Path, workers: list[str]) -> None:
        self.venv = Path(venv)
        self.workdir = Path(workdir)
        self.instance = self.workdir / "instance"
        self.otf_root = self.workdir / "otf"
        self.raw_root = self.workdir / "raw"
        self.workers = list(workers)
        self.http_port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self._redis: subprocess.Popen[bytes] | None = None
        self._http: subprocess.Popen[bytes] | None = None
        self.admin = requests.Session()
        # a second admin account whose password appears nowhere else (credential-leak test)
        self.worker_user = "otf.worker@emhub.test"
        self.worker_password = "pw-" + secrets.token_hex(12)

    # -- processes ---------------------------------------------------------------------
    def build(self) -> None:
        for folder in (self.otf_root, self.raw_root):
            folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(self.venv / "bin" / "python"),
                str(HERE / "make_instance.py"),
                str(self.instance),
                str(self.redis_port),
                str(self.otf_root),
                *self.workers,
            ],
            check=True,
            capture_output=True,
            timeout=120,
            env=dict(os.environ, EMOTF_TEST_WORKER_PASSWORD=self.worker_password),
        )

    def start_redis(self) -> None:
        log = open(self.instance / "redis.log", "ab")  # noqa: SIM115 - lives with the process
        self._redis = subprocess.Popen(
            ["redis-server", str(self.instance / "redis.conf")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        client = self.redis()
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not start: {self._tail('redis.log')}")

    def start_http(self) -> None:
        env = dict(os.environ, EMHUB_INSTANCE=str(self.instance), FLASK_APP="emhub")
        log = open(self.instance / "flask.log", "ab")  # noqa: SIM115
        self._http = subprocess.Popen(
            [
                str(self.venv / "bin" / "flask"),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.http_port),
                "--with-threads",
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=self.instance,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self._http.poll() is not None:
                break
            try:
                requests.post(f"{self.url}/api/login", json={}, timeout=2)
                self.admin = requests.Session()
                self.api("login", {"username": "admin", "password": "admin"})
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"EMhub did not start: {self._tail('flask.log')}")

    def _tail(self, name: str) -> str:
        path = self.instance / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_http(self) -> None:
        self._kill(self._http)
        self._http = None

    def stop_redis(self) -> None:
        self._kill(self._redis)
        self._redis = None

    def restart_redis(self) -> None:
        """Restart without persistence: every stream and consumer group is gone."""
        self.stop_redis()
        self.start_redis()

    def start(self) -> None:
        self.build()
        self.start_redis()
        self.start_http()
        for worker in self.workers:  # a fresh Redis only delivers tasks to connected workers
            self.api("connect_worker", {"attrs": {"worker": worker, "specs": {}}})

    def stop(self) -> None:
        self.stop_http()
        self.stop_redis()

    # -- admin API -----------------------------------------------------------------------
    def api(self, endpoint: str, body: Any) -> Any:
        reply = self.admin.post(f"{self.url}/api/{endpoint}", json=body, timeout=30)
        reply.raise_for_status()
        data = reply.json()
        if isinstance(data, dict) and "error" in data:
            raise RuntimeError(f"{endpoint}: {data['error']}")
        return data

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, decode_responses=True)

    def create_session(self, name: str, raw_path: Path, tasks: list[list[Any]] | None = None,
                       otf_path: Path | None = None) -> int:  # fmt: skip
        otf = {"path": str(otf_path)} if otf_path else {}
        attrs = {
            "booking_id": 1,
            "name": name,
            "check_raw": False,
            "tasks": tasks or [],
            "acquisition": {"voltage": 300, "cs": 2.7, "pixel_size": 1.0, "dose": 1.5},
            "extra": {"raw": {"path": str(raw_path)}, "otf": otf},
        }
        data = self.api("create_session", {"attrs": attrs})
        return int(data["session"]["id"])

    def create_task(self, worker: str, name: str, args: dict[str, Any]) -> str:
        data = self.api(
            "create_task", {"attrs": {"worker": worker, "task": {"name": name, "args": args}}}
        )
        return str(data["task"]["id"])

    def get_session(self, session_id: int) -> dict[str, Any]:
        sessions = self.api("get_sessions", {"attrs": None, "condition": f"id={session_id}"})
        return dict(sessions[0])

    def task_history(self, task_id: str) -> list[dict[str, str]]:
        return [fields for _id, fields in self.redis().xrange(f"task_history:{task_id}")]

    def session_tasks(self, worker: str) -> list[tuple[str, dict[str, Any]]]:
        """(task id, args) of every task in the worker's stream whose args are a JSON map
        (the bad-args tests queue tasks whose args are a string or a list)."""
        entries = self.redis().xrange(f"{worker}:tasks")
        parsed = [(tid, _json_or_none(fields.get("args", "{}"))) for tid, fields in entries]
        return [(tid, args) for tid, args in parsed if isinstance(args, dict)]

    def is_done(self, task_id: str) -> bool:
        history = self.task_history(task_id)
        return bool(history) and "done" in history[-1]

    # -- forms and pages (issue 14) ------------------------------------------------------
    def update_config(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` (one level deep) into form ``config:<name>`` and save it; EMhub
        refreshes its Redis copy of the form at once."""
        forms = self.api("get_forms", {"attrs": ["id", "name", "definition"]})
        form = next(f for f in forms if f["name"] == f"config:{name}")
        definition = dict(form["definition"])
        for key, value in changes.items():
            old = definition.get(key)
            both = isinstance(old, dict) and isinstance(value, dict)
            definition[key] = {**old, **value} if both else value
        self.api("update_form", {"attrs": {"id": form["id"], "definition": definition}})
        return definition

    def create_session_attrs(self, attrs: dict[str, Any]) -> int:
        """``create_session`` with exactly these attrs (booking 1 unless given)."""
        data = self.api("create_session", {"attrs": {"booking_id": 1, **attrs}})
        return int(data["session"]["id"])

    def page(self, content_id: str, **params: Any) -> str:
        """The HTML EMhub renders for a content page (as the browser loads it), logged in as
        admin; raises if EMhub answers with an error page."""
        reply = self.admin.get(
            f"{self.url}/get_content", params={"content_id": content_id, **params}, timeout=60
        )
        reply.raise_for_status()
        if 'id="error-modal-title"' in reply.text:
            raise RuntimeError(f"EMhub error page for {content_id}: {reply.text[-2000:]}")
        return reply.text

    def start_web(self) -> None:
        """Like :meth:`start`, for tests that drive EMhub's pages in a browser: the instance
        also gets what the dashboard, sessions list and create-session form need
        (tests/emhub/web_instance.py)."""
        self.build()
        subprocess.run(
            [str(self.venv / "bin" / "python"), str(HERE / "web_instance.py"),
             str(self.instance), *self.workers[:1]],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start_redis()
        self.start_http()
        for worker in self.workers:
            self.api("connect_worker", {"attrs": {"worker": worker, "specs": {}}})


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
