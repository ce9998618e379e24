"""Several sessions on one worker (issue 13 item 1), against a real EMhub 1.0.2 + Redis.

Five sessions on three microscopes (EMhub resources with their own bookings) reach one
worker process at once, each with its own raw folder and configuration (the worker's
``otf.microscopes``): a backlog session (recorded backends, benchmarks/_recording.py), two
streaming sessions through real RELION (one has its Snakemake killed), one stopped by a
``stop`` task and one whose raw folder is refused. The worker shares two Snakemake run slots
(``otf.worker_runs``) over all of them. Checked: exact counts per session, events and
``extra`` of each session only about that session, the failures end only their own session,
never more than two Snakemake runs at once, each with ``--cores`` = cores / slots, and the
streaming sessions got slots while the backlog was still pending.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness import EmhubServer
from workerproc import (
    NEEDS_RELION,
    PARAMS,
    WORKER,
    Factory,
    last_event,
    manifest_keys,
    otf_task_of,
    result_records,
    wait_for,
)

from emotf.session.runner import live_snakemake
from emotf.sim import SimParams, simulate_session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _recording as R  # noqa: E402

pytestmark = [pytest.mark.slow, NEEDS_RELION]
SLOTS = 2


def add_microscope(server: EmhubServer, name: str) -> int:
    """A new EMhub resource and a booking of it that covers now; returns the booking id."""
    resource = server.api("create_resource", {"attrs": {
        "name": name, "status": "active", "tags": "microscope", "image": "", "color": "#00aa00",
        "extra": {"requires_application": False}}})["resource"]  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    attrs = {"title": name, "start": (now - dt.timedelta(hours=2)).isoformat(),
             "end": (now + dt.timedelta(days=2)).isoformat(), "type": "booking",
             "resource_id": resource["id"], "owner_id": 2, "creator_id": 2,
             "operator_id": 2}  # fmt: skip
    try:
        server.api("create_booking", {"attrs": attrs, "check_min_booking": False,
                                      "check_max_booking": False})  # fmt: skip
    except RuntimeError as exc:  # 1.0.2 stores the booking, then fails rendering it
        assert "display" in str(exc), exc  # (the test instance has no config:bookings)
    bookings = server.api("get_bookings", {"attrs": ["id", "resource_id"]})
    return max(int(b["id"]) for b in bookings if b["resource_id"] == resource["id"])


def session_on(server: EmhubServer, name: str, booking: int, raw: Path) -> tuple[int, str]:
    sid = server.create_session_attrs({
        "booking_id": booking, "name": name, "check_raw": False,
        "tasks": [[WORKER, {"action": "otf"}]],
        "acquisition": {"voltage": 300, "cs": 2.7, "pixel_size": 1.0, "dose": 1.5},
        "extra": {"raw": {"path": str(raw)}, "otf": {}}})  # fmt: skip
    return sid, otf_task_of(server, sid)


class RunWatch:
    """Samples every Snakemake run below the OTF root: the most at once, their ``--cores``,
    and when each processing folder was first seen running."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.most = 0
        self.at_most: list[str] = []
        self.cores: set[str] = set()
        self.first_seen: dict[str, float] = {}
        self.results_then: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        found: dict[int, tuple[int, str, list[str]]] = {}  # pid -> (ppid, cwd, argv)
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            try:
                argv = proc.info["cmdline"] or []
                if not any("snakemake" in a for a in argv[:3]) or "--unlock" in argv:
                    continue
                found[proc.pid] = (proc.info["ppid"], proc.cwd(), argv)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        # one run = its main process (a fork of Snakemake shows the same argv until it execs)
        runs = {pid: v for pid, v in found.items()
                if v[0] not in found and v[1].startswith(self.root + os.sep)}  # fmt: skip
        for _ppid, _cwd, argv in runs.values():
            self.cores.add(argv[argv.index("--cores") + 1] if "--cores" in argv else "profile")
        if len(runs) > self.most:
            self.most = len(runs)
            self.at_most = [f"{pid} in {v[1]}: {' '.join(v[2])[:200]}" for pid, v in runs.items()]
        for _ppid, cwd, _argv in runs.values():
            name = Path(cwd).name
            if name not in self.first_seen:
                self.first_seen[name] = time.time()
                self.results_then[name] = {
                    p.name: len(list((p / "Results").glob("b*.json")))
                    for p in Path(self.root).iterdir() if p.is_dir()}  # fmt: skip

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)

    def __enter__(self) -> RunWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def streamed(raw: Path, n: int, interval: float, seed: int) -> threading.Thread:
    params = SimParams(**{**PARAMS.__dict__, "seed": seed})
    return threading.Thread(target=simulate_session, args=(raw, params, n),
                            kwargs={"interval": interval}, daemon=True)  # fmt: skip


def paced_tiny_movies(raw: Path, n: int, interval: float) -> None:
    movie = R.tiny_movie()
    for i in range(n):
        R.write_tiny_movie(raw, i, movie)
        time.sleep(interval)  # the pace of the stream, not a wait for an outcome


def assert_session(server: EmhubServer, sid: int, task_id: str, raw: Path, out: Path,
                   n: int) -> None:  # fmt: skip
    """Exact counts; every event and the extra are about this session only."""
    history = server.task_history(task_id)
    final = history[-1]
    assert final.get("status") == "finished", final
    assert int(final["movies_found"]) == n == int(final["movies_done"]), final
    assert final["otf_path"] == str(out)
    assert [e for e in history if "done" in e] == [final]
    assert all(int(e.get("movies_found", 0)) <= n for e in history), history
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == n
    assert sorted(result_records(out)) == sorted(keys)
    extra = server.get_session(sid)["extra"]
    assert extra["raw"]["path"] == str(raw) and extra["raw"]["movies"] == n
    assert extra["otf"]["path"] == str(out) and extra["emotf"]["path"] == str(out)
    assert extra["emotf"]["movies_done"] == n and extra["emotf"]["status"] == "finished"


def test_five_sessions_three_microscopes_share_the_worker_fairly(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    server = emhub_server
    recording = R.make_recording(tmp_path / "recording")
    krios2, glacios = add_microscope(server, "Krios02"), add_microscope(server, "Glacios")
    raws = {k: server.raw_root / f"multi_{k}" for k in "ABCDE"}
    outs = {k: server.otf_root / f"multi_{k}_OTF" for k in "ABCDE"}
    n_backlog, n_b, n_c = 10, 4, 4
    R.write_tiny_session(raws["A"], n_backlog)  # all there before the worker starts
    for k in "BCE":
        raws[k].mkdir()
    sessions = {
        "A": session_on(server, "multi_A", 1, raws["A"]),  # Krios01: recorded, batches of 1
        "B": session_on(server, "multi_B", krios2, raws["B"]),  # Krios02: RELION, batches of 2
        "C": session_on(server, "multi_C", glacios, raws["C"]),  # Glacios: RELION, one batch
        "D": session_on(server, "multi_D", glacios, Path("/etc")),  # refused: not a raw root
        "E": session_on(server, "multi_E", 1, raws["E"]),  # Krios01: stopped by a task
    }
    recorded = R.recorded_config(recording, 1, settle=1.0, tail=3.0)
    settings: dict[str, Any] = {"otf": {
        "worker_runs": SLOTS, "cores": 2, "idle_timeout": 12,
        "microscopes": {
            "Krios01": {"config": recorded},
            "Krios02": {"config": {"batches": {"size": 2}}},
            "Glacios": {"config": {"batches": {"size": n_c, "tail_seconds": 8}}}}}}  # fmt: skip
    writers = [streamed(raws["B"], n_b, 1.5, 31), streamed(raws["C"], n_c, 1.0, 32)]
    e_writer = threading.Thread(target=paced_tiny_movies, args=(raws["E"], 60, 1.0), daemon=True)
    with RunWatch(server.otf_root) as watch:
        worker = worker_factory(settings=settings)
        for thread in [*writers, e_writer]:
            thread.start()
        # D fails at once, alone
        wait_for(lambda: server.is_done(sessions["D"][1]), 120, "the refused session's error")
        assert "outside the allowed folders" in last_event(server, sessions["D"][1])["error"]
        # C's Snakemake is killed (process group, SIGKILL): C retries, the others go on
        wait_for(lambda: bool(live_snakemake(outs["C"])), 240, "a Snakemake run of C")
        os.killpg(os.getpgid(live_snakemake(outs["C"])[0]), signal.SIGKILL)
        # E is stopped once it has a result
        wait_for(lambda: bool(list((outs["E"] / "Results").glob("b*.json"))), 300,
                 "a first result of E")  # fmt: skip
        stop = server.create_task(WORKER, "session", {"action": "stop", "session_id":
                                                      sessions["E"][0]})  # fmt: skip
        wait_for(lambda: server.is_done(sessions["E"][1]), 180, "E to stop")
        for k in "ABC":
            wait_for(lambda t=sessions[k][1]: server.is_done(t), 600, f"session {k} to finish")
    for writer in writers:
        writer.join()
    assert server.is_done(stop)
    assert last_event(server, sessions["E"][1])["status"] == "stopped"
    assert server.get_session(sessions["E"][0])["extra"]["emotf"]["status"] == "stopped"
    for k, n in (("A", n_backlog), ("B", n_b), ("C", n_c)):
        assert_session(server, sessions[k][0], sessions[k][1], raws[k], outs[k], n)
    assert "Snakemake failed" not in str(last_event(server, sessions["C"][1]))
    assert len(list((outs["C"] / "logs" / "snakemake").glob("*.log"))) >= 2  # C was rerun
    # the worker's slots: never more runs at once, each sized to its share of the cores
    assert watch.most <= SLOTS, "\n".join(watch.at_most)
    assert watch.cores == {str(2 // SLOTS)}, watch.cores
    # fairness: B and C got their first runs while A's backlog was still pending
    for k in "BC":
        assert watch.results_then[outs[k].name][outs["A"].name] < n_backlog, watch.results_then
    assert worker.alive()
