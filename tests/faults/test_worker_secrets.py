"""The EMhub password is not in the worker process itself (issue 17 item 8), against a real
EMhub 1.0.2 + redis-server (see conftest.py).

``/proc/<pid>/environ`` shows the environment a process was started with, whatever it
removed later, and every process of the same user can read it; the tools and Snakemake run
as that user. The worker is started the hard way (password in ``EMHUB_PASSWORD``, for a
user whose password appears nowhere else), and an allowlisted command, a child of the
worker, reads the worker's environ as an attacker running as that user would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import EmhubServer
from workerproc import WORKER, Factory, last_event, wait_for

pytestmark = pytest.mark.slow
PEEK = [sys.executable, "-c",
        "import os, sys; raw = open(f'/proc/{os.getppid()}/environ', 'rb').read(); "
        "sys.stdout.write(raw.replace(b'\\0', b'\\n').decode(errors='replace'))"]  # fmt: skip


def test_password_not_in_the_worker_environ_or_cmdline(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    password = emhub_server.worker_password
    worker = worker_factory(
        settings={"emhub": {"user": emhub_server.worker_user}, "commands": {"peek": PEEK}},
        env={"EMHUB_PASSWORD": password},
    )
    assert worker.proc is not None
    task_id = emhub_server.create_task(WORKER, "command", {"cmd": "peek"})
    wait_for(lambda: emhub_server.is_done(task_id), 90, "the peek command")
    assert last_event(emhub_server, task_id).get("returncode") == "0"  # so it logged in
    output = "".join(e.get("output", "") for e in emhub_server.task_history(task_id))
    assert "PATH=" in output  # the child did read the worker's environment
    assert password not in output and "EMHUB_PASSWORD" not in output
    proc = Path(f"/proc/{worker.proc.pid}")  # the PID the harness started (kept by re-exec)
    assert password.encode() not in (proc / "environ").read_bytes()
    assert password.encode() not in (proc / "cmdline").read_bytes()
    assert b"EMHUB_PASSWORD" not in (proc / "environ").read_bytes()
    assert worker.alive() and password not in worker.log_text()
