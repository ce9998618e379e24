"""Faults around the worker, against a real EMhub 1.0.2 + redis-server (see conftest.py).

Each test ends by checking exact movie counts: every movie found is done or failed exactly
once, in one manifest, with one row in each session STAR file, and the raw folder is
exactly as the simulator left it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from harness import EmhubServer
from workerproc import (
    NEEDS_RELION,
    WORKER,
    Factory,
    as_user_prefix,
    last_event,
    manifest_keys,
    new_session,
    result_records,
    star_duplicates,
    tree_snapshot,
    wait_for,
)

from emotf.runner import live_snakemake

pytestmark = [pytest.mark.slow, NEEDS_RELION]


def count(folder: Path, pattern: str = "b*.json") -> int:
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def assert_exact(server: EmhubServer, task_id: str, sid: int, out: Path, n: int) -> None:
    """Every movie found once, done, in one manifest and one STAR row; nothing half-written."""
    final = last_event(server, task_id)
    assert final.get("status") == "finished", final
    assert int(final["movies_found"]) == n and int(final["movies_done"]) == n, final
    assert int(final["movies_failed"]) == 0, final
    keys = manifest_keys(out)  # parsing every manifest also proves none is half-written
    assert len(keys) == len(set(keys)) == n
    records = result_records(out)
    assert sorted(records) == sorted(keys)
    assert all(r["state"] == "done" for r in records.values())
    assert count(out / "Results") == count(out / "batches")
    duplicates = star_duplicates(out)
    assert duplicates and all(v == 0 for v in duplicates.values()), duplicates
    assert server.get_session(sid)["extra"]["emotf"]["movies_done"] == n


def test_worker_killed_at_three_moments_loses_nothing(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    n = 10
    sid, task_id, raw, writer = new_session(emhub_server, "kill3", n, 1.5, seed=21)
    out = emhub_server.otf_root / "kill3_OTF"
    rng = random.Random(2026)
    moments: list[tuple[str, Callable[[], bool]]] = [
        ("the first manifest", lambda: count(out / "batches") >= 1),
        (
            "Snakemake mid-run",
            lambda: bool(live_snakemake(out)) and count(out / "Import", "b*") >= 2,
        ),
        ("two finished batches", lambda: count(out / "Results") >= 2),
    ]
    writer.start()
    worker = worker_factory()
    for what, reached in moments:
        wait_for(reached, 300, what, step=0.2)
        time.sleep(rng.uniform(0.0, 1.5))  # a random point after the moment
        worker.kill(signal.SIGKILL)
        assert not emhub_server.is_done(task_id)
        worker = worker_factory()  # the pending task is taken again at start
    writer.join()
    raw_before = tree_snapshot(raw)
    wait_for(lambda: emhub_server.is_done(task_id), 420, "the task to finish after 3 kills")
    assert_exact(emhub_server, task_id, sid, out, n)
    assert tree_snapshot(raw) == raw_before
    assert worker.alive()


def test_emhub_down_two_minutes_processing_goes_on(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    n, outage = 8, 130.0
    sid, task_id, raw, writer = new_session(emhub_server, "outage", n, 8.0, seed=22)
    out = emhub_server.otf_root / "outage_OTF"
    writer.start()
    worker = worker_factory(idle_timeout=20)
    wait_for(lambda: count(out / "Results") >= 1, 300, "a first finished batch")
    assert worker.proc is not None
    proc = psutil.Process(worker.proc.pid)
    results_before, events_before = count(out / "Results"), len(emhub_server.task_history(task_id))
    emhub_server.stop_http()
    try:
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.time()
        time.sleep(outage)
        cpu = (sum(proc.cpu_times()[:2]) - cpu0) / (time.time() - t0)
        results_during = count(out / "Results")
        assert len(emhub_server.task_history(task_id)) == events_before  # server really down
    finally:
        emhub_server.start_http()
    assert results_during > results_before  # processing went on while EMhub was down
    assert cpu < 0.10, f"worker used {cpu:.0%} of a core while the server was down"
    wait_for(lambda: emhub_server.is_done(task_id), 360, "the task to finish after recovery")
    writer.join()
    assert_exact(emhub_server, task_id, sid, out, n)
    assert "server reachable again" in worker.log_text()
    assert worker.alive()


def test_redis_restart_without_persistence_worker_keeps_receiving_tasks(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    worker = worker_factory()
    first = emhub_server.create_task(WORKER, "session", {"action": "nope", "session_id": 900001})
    wait_for(lambda: emhub_server.is_done(first), 60, "a task before the restart")
    emhub_server.restart_redis()  # streams and consumer groups are gone (NOGROUP)
    tasks = [emhub_server.create_task(WORKER, "session", {"action": "nope", "session_id": i})
             for i in (900002, 900003)]  # fmt: skip
    for task_id in tasks:
        wait_for(lambda t=task_id: emhub_server.is_done(t), 180, f"task {task_id} after restart")
        errors = [e for e in emhub_server.task_history(task_id) if "error" in e]
        assert len(errors) == 1, errors  # handled exactly once
    time.sleep(5)  # and a task created once the worker is back in its new group
    later = emhub_server.create_task(WORKER, "session", {"action": "nope", "session_id": 900004})
    wait_for(lambda: emhub_server.is_done(later), 120, "a task after reconnecting")
    assert len([e for e in emhub_server.task_history(later) if "error" in e]) == 1
    assert "NOGROUP" in worker.log_text() and worker.alive()


def test_read_only_processing_folder_ends_the_task_with_a_clear_error(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    sid, task_id, raw, writer = new_session(emhub_server, "rofs", 8, 3.0, seed=23)
    out = emhub_server.otf_root / "rofs_OTF"
    writer.start()
    worker = worker_factory(idle_timeout=30, prefix=as_user_prefix())
    wait_for(lambda: count(out / "Results") >= 1, 300, "a first finished batch")
    results = sorted(p.name for p in (out / "Results").glob("b*.json"))
    modes = {p: p.lstat().st_mode for p in [out, *out.rglob("*")] if not p.is_symlink()}
    for path, mode in modes.items():
        os.chmod(path, mode & ~0o222)
    try:
        wait_for(lambda: emhub_server.is_done(task_id), 240, "the task to end")
        writer.join()
        raw_before = tree_snapshot(raw)
        final = last_event(emhub_server, task_id)
        assert "not writable" in final.get("error", ""), final
        assert str(out) in final["error"] and "stack" not in final
        assert worker.alive()
        assert not live_snakemake(out)
        time.sleep(3)
        assert tree_snapshot(raw) == raw_before  # raw data untouched
        assert all((out / "Results" / name).is_file() for name in results)  # nothing lost
        assert len(list(raw.rglob("*_fractions.tiff"))) == 8
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)


def test_credentials_never_leak(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    password = emhub_server.worker_password
    token = emhub_server.api("connect_worker", {"attrs": {"worker": WORKER, "specs": {}}})["token"]
    secrets_ = {"password": password, "token": str(token)}
    sid, task_id, raw, writer = new_session(emhub_server, "secrets", 3, 1.0, seed=24)
    out = emhub_server.otf_root / "secrets_OTF"
    writer.start()
    worker = worker_factory(
        settings={"emhub": {"user": emhub_server.worker_user}},
        env={"EMHUB_PASSWORD": password},  # the harder case: children must not inherit it
        verbosity="-vv",  # debug logging included
    )
    assert worker.proc is not None
    seen_children: set[int] = set()
    leaks: list[str] = []

    def inspect() -> bool:
        listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True)
        leaks.extend(f"ps: {name}" for name, s in secrets_.items() if s in listing.stdout)
        for child in psutil.Process(worker.proc.pid).children(recursive=True):  # type: ignore[union-attr]
            try:
                environ = Path(f"/proc/{child.pid}/environ").read_bytes().decode(errors="replace")
                cmdline = " ".join(child.cmdline())
            except (OSError, psutil.Error):
                continue
            seen_children.add(child.pid)
            leaks.extend(f"child {child.pid}: {n}" for n, s in secrets_.items()
                         if s in environ or s in cmdline)  # fmt: skip
        return emhub_server.is_done(task_id)

    wait_for(inspect, 300, "the session to finish", step=0.5)
    writer.join()
    assert last_event(emhub_server, task_id)["status"] == "finished"
    assert seen_children, "no child process (Snakemake) was inspected"
    history = json.dumps(emhub_server.task_history(task_id))
    session = json.dumps(emhub_server.get_session(sid))
    for name, secret in secrets_.items():
        assert secret not in worker.log_text(), f"{name} in the worker log"
        assert secret not in history, f"{name} in task events"
        assert secret not in session, f"{name} in the session"
        for path in out.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), f"{name} in {path}"
    assert not leaks, leaks
