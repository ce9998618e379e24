"""A worker restarted at once, against a real EMhub 1.0.2 + redis-server (see conftest.py).

EMhub holds each ``get_new_tasks`` call for up to 60 s inside ``XREADGROUP ... BLOCK``. When
a worker stops, the poll it had open stays blocked in Redis; Redis hands the next task to
the oldest blocked poll, the dead one, so the task sits in the worker's pending list with
only its ``created`` event. The restarted worker must still run it (issue 13, item 0a).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import EmhubServer
from workerproc import WORKER, WorkerProcess, last_event, wait_for

pytestmark = pytest.mark.slow
COMMANDS = {"commands": {"hello": ["echo", "restart-ok"]}}


class ArgsWorker(WorkerProcess):
    """``python -m emotf worker`` with extra worker options (e.g. ``--pending-interval``)."""

    def __init__(self, *args: Any, worker_args: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_args = list(worker_args or [])

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "EMHUB_PASSWORD"}
        env.update(self.env)
        argv = [sys.executable, "-m", "emotf", self.verbosity, "worker",
                "--config", str(self.config), *self.worker_args]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.prefix + argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


def blocked_polls(server: EmhubServer) -> set[str]:
    """Redis client ids of the ``get_new_tasks`` polls EMhub holds open right now."""
    return {
        str(c["id"])
        for c in server.redis().client_list()
        if c.get("cmd") == "xreadgroup" and "b" in str(c.get("flags", ""))
    }


def test_task_handed_to_a_dead_poll_still_runs(emhub_server: EmhubServer, tmp_path: Path) -> None:
    # polls left by earlier tests' workers end within 60 s; then every open poll is ours
    wait_for(lambda: not blocked_polls(emhub_server), 75, "earlier polls to end", step=0.5)
    before: set[str] = set()
    old = ArgsWorker(emhub_server, tmp_path, settings=COMMANDS)
    new = ArgsWorker(emhub_server, tmp_path, settings=COMMANDS,
                     worker_args=["--pending-interval", "2"])  # fmt: skip
    try:
        old.start()
        wait_for(lambda: bool(blocked_polls(emhub_server) - before), 60,
                 "the first worker's long poll", step=0.2)  # fmt: skip
        dead = blocked_polls(emhub_server) - before
        old.kill(signal.SIGTERM)
        assert not old.alive() and dead <= blocked_polls(emhub_server)  # its poll stays open
        new.start()  # at once, as an admin's restart does
        wait_for(lambda: bool(blocked_polls(emhub_server) - before - dead), 60,
                 "the restarted worker's long poll", step=0.2)  # fmt: skip
        task_id = emhub_server.create_task(WORKER, "command", {"cmd": "hello"})
        # well before the restarted worker's own 60 s poll could end and look again
        wait_for(lambda: emhub_server.is_done(task_id), 40, "the task to run", step=0.5)
        history = emhub_server.task_history(task_id)
        assert any("restart-ok" in e.get("output", "") for e in history), history
        assert last_event(emhub_server, task_id).get("returncode") == "0"
        assert [e for e in history if "done" in e] == history[-1:]  # ran once, one done
        log = new.log_text()
        assert f"task {task_id} (taken from the pending list)" in log  # the dead poll had it
        assert f"task {task_id} (new)" not in log
        assert new.alive()
    finally:
        for worker in (old, new):
            worker.kill(signal.SIGTERM)
