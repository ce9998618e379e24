"""The emotf worker against a real EMhub 1.0.2 server and redis-server (see conftest.py).

The worker runs as a real subprocess (``python -m emotf worker``), the simulator writes
movies over time, and the tests read what EMhub stores: the task history in Redis and the
session's ``extra``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from harness import EmhubServer
from workerproc import (
    NEEDS_RELION,
    WORKER,
    Factory,
    last_event,
    manifest_keys,
    new_session,
    result_records,
    wait_for,
)

pytestmark = [pytest.mark.slow, NEEDS_RELION]


def test_otf_session_streams_to_emhub_and_finishes(
    emhub_server: EmhubServer, worker_factory: Factory
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
    assert emotf["particles"] == int(final["particles"]) == emotf["stats"]["particles"]
    latency = emotf["figures"]["latency_found_to_ctffind_s"]
    assert 0 < latency["p50"] <= latency["p95"]
    assert int(final["extracted"]) == 5 and emotf["particles_extracted"] > 0
    assert extra["raw"]["movies"] == 5 and extra["raw"]["path"] == str(raw)
    assert extra["raw"]["size"] == sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
    otf = Path(extra["otf"]["path"])
    assert otf == emhub_server.otf_root / "stream1_OTF" and extra["otf"]["status"] == "finished"
    assert len(list((otf / "Results").glob("b*.json"))) >= 3
    assert worker.alive()


def test_bad_tasks_end_with_an_error_and_the_worker_stays_up(
    emhub_server: EmhubServer, worker_factory: Factory
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


def test_stop_task_stops_the_run(emhub_server: EmhubServer, worker_factory: Factory) -> None:
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
    from emotf.session.runner import live_snakemake

    assert live_snakemake(out) == []  # Snakemake was interrupted, not left running


def test_worker_killed_mid_session_resumes_with_exact_counts(
    emhub_server: EmhubServer, worker_factory: Factory
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
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == 6  # no movie batched twice, none lost
    assert sorted(result_records(out)) == sorted(keys)
    assert emhub_server.get_session(sid)["extra"]["emotf"]["movies_done"] == 6
