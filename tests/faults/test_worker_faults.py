"""Faults around the worker, against a real EMhub 1.0.2 + redis-server (see conftest.py).

Each test ends by checking exact movie counts: every movie found is done or failed exactly
once, in one manifest, with one row in each session STAR file, and the raw folder holds
exactly what the test put there: each session is simulated in a staging folder before the
worker starts, its snapshot is the expected raw tree, and a thread copies the movies in.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from harness import EmhubServer
from workerproc import (
    NEEDS_RELION,
    PARAMS,
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

from emotf.epu import movie_xml_path
from emotf.session.progress import ProgressReader
from emotf.session.runner import live_snakemake
from emotf.sim import SimParams, simulate_session
from emotf.views.stats import session_stats

pytestmark = [pytest.mark.slow, NEEDS_RELION]


Snapshot = dict[str, tuple[int, int, int, str]]


def staged_session(server: EmhubServer, name: str, n_movies: int, interval: float, seed: int,
                   gate: tuple[int, threading.Event] | None = None,
                   ) -> tuple[int, str, Path, threading.Thread, Snapshot]:  # fmt: skip
    """``new_session``, with the session simulated first in a staging folder outside the raw
    roots: returns the snapshot the raw folder must have at the end (taken before anything
    starts) and a thread (not started) that copies one movie in every ``interval`` s: its
    XML, then the movie under a ``.part`` name (not a movie glob) renamed into place;
    ``copy2`` keeps every file's mtime, so the final raw tree equals the staged one. With
    ``gate`` (n, event), the movies after the first n are copied only once the event is set
    (so a slow machine cannot finish the session before the test is done with it)."""
    sid, task_id, raw, _writer = new_session(server, name, n_movies, interval, seed)
    stage = server.raw_root.parent / "staging" / name
    simulate_session(stage, SimParams(**{**PARAMS.__dict__, "seed": seed}), n_movies)
    expected = tree_snapshot(stage)
    movies = sorted(k for k in expected if k.endswith(("_fractions.tiff", "_Fractions.mrc")))

    def copy_in() -> None:
        for number, key in enumerate(movies):
            if gate is not None and number == gate[0]:
                gate[1].wait(900)
            xml = movie_xml_path(Path(key)).as_posix()
            (raw / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stage / xml, raw / xml)
            shutil.copy2(stage / key, raw / f"{key}.part")
            os.replace(raw / f"{key}.part", raw / key)
            time.sleep(interval)  # pacing of the stream, not an assertion
        for rel, entry in expected.items():  # the rest (ground truth, gain): at the end
            if stat.S_ISREG(entry[0]) and not (raw / rel).exists():
                shutil.copy2(stage / rel, raw / rel)

    return sid, task_id, raw, threading.Thread(target=copy_in, daemon=True), expected


def assert_raw_is(raw: Path, expected: Snapshot) -> None:
    """The raw tree holds exactly the staged files, each unmodified (mode, size, mtime,
    content); folders exist with the same mode (their mtimes are those of the copy)."""
    after = tree_snapshot(raw)
    assert sorted(after) == sorted(expected)
    for rel, entry in expected.items():
        if stat.S_ISDIR(entry[0]):
            assert after[rel][0] == entry[0], rel
        else:
            assert after[rel] == entry, rel


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
    emotf = server.get_session(sid)["extra"]["emotf"]
    assert emotf["movies_done"] == n
    # the statistics the worker kept per batch (and in its session index across the kills)
    # are those of a walk over every final record
    assert emotf["stats"] == json.loads(json.dumps(session_stats(ProgressReader(out).summaries())))


def test_worker_killed_at_three_moments_loses_nothing(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    n, last_kill = 10, threading.Event()
    sid, task_id, raw, writer, raw_expected = staged_session(
        emhub_server, "kill3", n, 1.5, 21, gate=(8, last_kill)
    )
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
    last_kill.set()  # the last two movies arrive after the last kill
    writer.join()
    wait_for(lambda: emhub_server.is_done(task_id), 420, "the task to finish after 3 kills")
    assert_exact(emhub_server, task_id, sid, out, n)
    assert_raw_is(raw, raw_expected)
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
    log_before = len(worker.log_text())
    emhub_server.stop_http()
    try:
        cpu0 = sum(proc.cpu_times()[:2])  # the worker's own user+system time (not Snakemake's)
        time.sleep(outage)  # the length of the outage, not a wait for an outcome
        cpu_seconds = sum(proc.cpu_times()[:2]) - cpu0
        results_during = count(out / "Results")
        assert len(emhub_server.task_history(task_id)) == events_before  # server really down
    finally:
        emhub_server.start_http()
    assert results_during > results_before  # processing went on while EMhub was down
    # A retry loop without backoff (the fault guarded against) keeps a core busy: CPU time
    # close to the outage's length, and thousands of failed polls. The worker polls with
    # exponential backoff from 1 s, and its other work (reading progress files every second)
    # takes a few percent of a core; a quarter of the outage leaves room for a loaded machine
    # and is still far below a busy loop.
    assert cpu_seconds < 0.25 * outage, f"worker used {cpu_seconds:.1f} s CPU in {outage:.0f} s"
    failed_polls = worker.log_text()[log_before:].count("polling failed")
    assert failed_polls <= outage, f"{failed_polls} failed polls in {outage:.0f} s"
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
    # the worker saw its group gone and connected again (the event, in its log); a task
    # created now reaches it through the new group
    wait_for(lambda: "NOGROUP" in worker.log_text(), 60, "the worker to notice NOGROUP")
    later = emhub_server.create_task(WORKER, "session", {"action": "nope", "session_id": 900004})
    wait_for(lambda: emhub_server.is_done(later), 120, "a task after reconnecting")
    assert len([e for e in emhub_server.task_history(later) if "error" in e]) == 1
    assert "NOGROUP" in worker.log_text() and worker.alive()


def test_read_only_processing_folder_ends_the_task_with_a_clear_error(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    sid, task_id, raw, writer, raw_expected = staged_session(emhub_server, "rofs", 8, 3.0, 23)
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
        final = last_event(emhub_server, task_id)
        assert "not writable" in final.get("error", ""), final
        assert str(out) in final["error"] and "stack" not in final
        assert worker.alive()
        assert not live_snakemake(out)
        assert_raw_is(raw, raw_expected)  # raw data untouched
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
