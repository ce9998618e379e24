"""The emotf worker against a real EMhub 1.0.2 server and redis-server (see conftest.py).

The worker runs as a real subprocess (``python -m emotf worker``), the simulator writes
movies over time, and the tests read what EMhub stores: the task history in Redis and the
session's ``extra``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import WORKER
from harness import EmhubServer

from emotf.sim import SimParams, simulate_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="RELION missing"),
]
PARAMS = SimParams(size=512, n_frames=12, format="tiff", gain=False)


class WorkerProcess:
    def __init__(self, server: EmhubServer, workdir: Path, idle_timeout: float = 15) -> None:
        self.config = workdir / f"worker-{time.time_ns()}.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "emhub": {"url": server.url, "user": "admin", "worker": WORKER},
                    "otf": {
                        "raw_roots": [str(server.raw_root)],
                        "otf_roots": [str(server.otf_root)],
                        "idle_timeout": idle_timeout,
                        "poll_interval": 1,
                        "report_interval": 2,
                        "config": {
                            "batches": {"size": 2, "tail_seconds": 3, "settle_seconds": 1},
                            "cryolo": {"diameter_min": 120, "diameter_max": 180},
                        },
                    },
                }
            )
        )
        self.log = workdir / f"{self.config.stem}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, EMHUB_PASSWORD="admin")  # never on the command line
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emotf", "-v", "worker", "--config", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def worker_factory(emhub_server: EmhubServer, tmp_path: Path
                   ) -> Iterator[Callable[..., WorkerProcess]]:  # fmt: skip
    started: list[WorkerProcess] = []

    def make(**kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(emhub_server, tmp_path, **kwargs)
        worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.kill(signal.SIGTERM)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def new_session(server: EmhubServer, name: str, n_movies: int, interval: float,
                seed: int) -> tuple[int, str, Path, threading.Thread]:  # fmt: skip
    raw = server.raw_root / name
    raw.mkdir()
    sid = server.create_session(name, raw, tasks=[[WORKER, {"action": "otf"}]])
    task_id = next(t for t, a in server.session_tasks(WORKER) if a.get("session_id") == sid)
    params = SimParams(**{**PARAMS.__dict__, "seed": seed})
    writer = threading.Thread(target=simulate_session, args=(raw, params, n_movies),
                              kwargs={"interval": interval}, daemon=True)  # fmt: skip
    return sid, task_id, raw, writer


def last_event(server: EmhubServer, task_id: str) -> dict[str, str]:
    history = server.task_history(task_id)
    return history[-1] if history else {}


def test_otf_session_streams_to_emhub_and_finishes(
    emhub_server: EmhubServer, worker_factory: Callable[..., WorkerProcess]
) -> None:
    sid, task_id, raw, writer = new_session(emhub_server, "stream1", 5, 1.5, seed=11)
    writer.start()
    worker = worker_factory()
    wait_for(lambda: emhub_server.is_done(task_id), 300, "the otf task to finish")
    writer.join()
    final = last_event(emhub_server, task_id)
    assert final["done"] == "1" and final["status"] == "finished", final
    assert int(final["movies_found"]) == 5 and int(final["movies_done"]) == 5
    assert int(final["movies_failed"]) == 0
    history = emhub_server.task_history(task_id)
    assert any(e.get("status") == "running" for e in history)  # progress was streamed
    extra = emhub_server.get_session(sid)["extra"]
    assert extra["emotf"]["movies_done"] == 5 and extra["emotf"]["status"] == "finished"
    assert extra["emotf"]["stats"]["particles"] == int(final["particles"]) > 0
    emotf = extra["emotf"]
    assert (
        emotf["accepted"] + emotf["rejected"] == 5 and int(final["accepted"]) == emotf["accepted"]
    )
    assert emotf["figures"]["particles"] == int(final["particles"])
    assert 0 < emotf["figures"]["latency_found_to_ctf_s"]["p50"]
    assert (
        emotf["figures"]["latency_found_to_ctf_s"]["p95"]
        >= emotf["figures"]["latency_found_to_ctf_s"]["p50"]
    )
    assert extra["raw"]["movies"] == 5 and extra["raw"]["path"] == str(raw)
    assert extra["raw"]["size"] == sum(p.stat().st_size for p in raw.rglob("*_fractions.tiff"))
    otf = Path(extra["otf"]["path"])
    assert otf == emhub_server.otf_root / "stream1_OTF" and extra["otf"]["status"] == "created"
    assert len(list((otf / "Results").glob("b*.json"))) >= 3
    assert worker.alive()


def test_bad_tasks_end_with_an_error_and_the_worker_stays_up(
    emhub_server: EmhubServer, worker_factory: Callable[..., WorkerProcess]
) -> None:
    worker = worker_factory()
    bad = {
        "unknown name": ("reboot", {"session_id": 1}),
        "unknown action": ("session", {"action": "delete_everything", "session_id": 1}),
        "no session id": ("session", {"action": "otf"}),
        "text session id": ("session", {"action": "otf", "session_id": "1; rm -rf /"}),
        "unknown session": ("session", {"action": "otf", "session_id": 99999}),
        "huge string": ("session", {"action": "x" * 100000, "session_id": 1}),
    }
    ids = {
        label: emhub_server.create_task(WORKER, name, args) for label, (name, args) in bad.items()
    }
    for label, task_id in ids.items():
        wait_for(lambda t=task_id: emhub_server.is_done(t), 60, f"task '{label}'")
        final = last_event(emhub_server, task_id)
        assert final.get("error"), (label, final)
        assert len(final["error"]) < 500, label
        errors = [e for e in emhub_server.task_history(task_id) if "error" in e]
        assert len(errors) == 1, (label, errors)  # reported once, not in a loop
    assert worker.alive()


def test_stop_task_stops_the_run(
    emhub_server: EmhubServer, worker_factory: Callable[..., WorkerProcess]
) -> None:
    sid, task_id, _raw, writer = new_session(emhub_server, "stopme", 30, 2.0, seed=12)
    writer.start()
    worker_factory(idle_timeout=120)
    wait_for(lambda: int(last_event(emhub_server, task_id).get("imported", 0)) >= 1, 240,
             "the first imported movies")  # fmt: skip
    stop_id = emhub_server.create_task(WORKER, "session", {"action": "stop", "session_id": sid})
    wait_for(lambda: emhub_server.is_done(task_id), 180, "the otf task to stop")
    wait_for(lambda: emhub_server.is_done(stop_id), 60, "the stop task")
    assert last_event(emhub_server, task_id)["status"] == "stopped"
    assert emhub_server.get_session(sid)["extra"]["emotf"]["status"] == "stopped"
    out = emhub_server.otf_root / "stopme_OTF"
    time.sleep(3)
    from emotf.runner import live_snakemake

    assert live_snakemake(out) == []  # Snakemake was interrupted, not left running


def test_worker_killed_mid_session_resumes_with_exact_counts(
    emhub_server: EmhubServer, worker_factory: Callable[..., WorkerProcess]
) -> None:
    sid, task_id, raw, writer = new_session(emhub_server, "resume1", 6, 2.0, seed=13)
    writer.start()
    first = worker_factory()
    wait_for(lambda: int(last_event(emhub_server, task_id).get("batches_done", 0)) >= 1, 240,
             "a first finished batch")  # fmt: skip
    first.kill(signal.SIGKILL)
    assert not emhub_server.is_done(task_id)
    worker_factory()  # the pending task is taken again at start
    wait_for(lambda: emhub_server.is_done(task_id), 300, "the resumed task to finish")
    writer.join()
    final = last_event(emhub_server, task_id)
    assert final["status"] == "finished"
    assert int(final["movies_found"]) == 6 and int(final["movies_done"]) == 6, final
    out = emhub_server.otf_root / "resume1_OTF"
    keys = [m["key"] for p in sorted((out / "batches").glob("b*.json"))
            for m in json.loads(p.read_text())["movies"]]  # fmt: skip
    assert len(keys) == len(set(keys)) == 6  # no movie batched twice, none lost
    results = [m["key"] for p in (out / "Results").glob("b*.json")
               for m in json.loads(p.read_text())["movies"]]  # fmt: skip
    assert sorted(results) == sorted(keys)
    assert emhub_server.get_session(sid)["extra"]["emotf"]["movies_done"] == 6
