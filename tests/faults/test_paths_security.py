"""Allowed roots fail closed, against a real EMhub 1.0.2 + redis-server.

A worker whose configuration lists no ``raw_roots``/``otf_roots`` refuses every session task
with one clear error event and creates no processing folder (it used to accept any path).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import yaml
from harness import EmhubServer
from workerproc import WORKER, WorkerProcess, last_event, otf_task_of, wait_for

pytestmark = pytest.mark.slow


def test_a_worker_without_roots_refuses_every_session(
    emhub_server: EmhubServer, tmp_path: Path
) -> None:
    worker = WorkerProcess(emhub_server, tmp_path)
    config = yaml.safe_load(worker.config.read_text())
    del config["otf"]["raw_roots"], config["otf"]["otf_roots"]
    config["otf"]["otf_root"] = str(emhub_server.otf_root)
    worker.config.write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere_raw"  # outside the server's raw root
    elsewhere.mkdir()
    inside = emhub_server.raw_root / "noroots_raw"
    inside.mkdir()
    tasks = {}
    for name, raw in (("noroots_out", elsewhere), ("noroots_in", inside)):
        sid = emhub_server.create_session(name, raw, tasks=[[WORKER, {"action": "otf"}]])
        tasks[name] = (otf_task_of(emhub_server, sid), raw)
    worker.start()
    try:
        for name, (task_id, raw) in tasks.items():
            wait_for(lambda t=task_id: emhub_server.is_done(t), 90, f"task {name}")
            error = last_event(emhub_server, task_id).get("error", "")
            assert re.search(r"no (otf\.raw_roots|allowed folders) configured", error), error
            errors = [e for e in emhub_server.task_history(task_id) if "error" in e]
            assert len(errors) == 1, errors
            assert not (emhub_server.otf_root / f"{raw.name}_OTF").exists()
            assert not Path(f"{raw}_OTF").exists()
        assert worker.alive()
    finally:
        worker.kill(signal.SIGTERM)
