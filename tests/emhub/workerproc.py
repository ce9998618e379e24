"""The emotf worker as a real subprocess, plus helpers shared by the worker and fault tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import EmhubServer

from emotf.sim import SimParams, simulate_session

WORKER = "emotf-test-host"
PARAMS = SimParams(size=512, n_frames=12, format="tiff", gain=False)
# LoG picking diameters (Å) that suit PARAMS' particles
LOG_DIAMETERS = {"diameter_min": 120, "diameter_max": 180}
NEEDS_RELION = pytest.mark.skipif(
    shutil.which("relion_run_motioncorr") is None, reason="RELION missing"
)
# Processes run through this prefix obey file permissions even as root (no DAC override),
# so tests can make files unreadable or folders read-only on a CI machine that runs as root.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def as_user_prefix() -> list[str]:
    return NO_DAC if os.geteuid() == 0 else []


class WorkerProcess:
    def __init__(
        self,
        server: EmhubServer,
        workdir: Path,
        idle_timeout: float = 15,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        verbosity: str = "-v",
    ) -> None:
        self.config = workdir / f"worker-{time.time_ns()}.yaml"
        base: dict[str, Any] = {
            "emhub": {"url": server.url, "user": "admin", "worker": WORKER},
            "otf": {
                "raw_roots": [str(server.raw_root)],
                "otf_roots": [str(server.otf_root)],
                "idle_timeout": idle_timeout,
                "poll_interval": 1,
                "report_interval": 2,
                "config": {
                    "batches": {"size": 2, "tail_seconds": 3, "settle_seconds": 1},
                    "cryolo": LOG_DIAMETERS,
                },
            },
        }
        for key, value in (settings or {}).items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        self.config.write_text(yaml.safe_dump(base))
        self.log = workdir / f"{self.config.stem}.log"
        self.env = {"EMHUB_PASSWORD": "admin"} if env is None else env  # never on argv
        self.prefix = list(prefix or [])
        self.verbosity = verbosity
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "EMHUB_PASSWORD"}
        env.update(self.env)
        argv = [
            sys.executable,
            "-m",
            "emotf",
            self.verbosity,
            "worker",
            "--config",
            str(self.config),
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.prefix + argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(150)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


Factory = Callable[..., WorkerProcess]  # the ``worker_factory`` fixture (conftest.py)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 1) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def new_session(server: EmhubServer, name: str, n_movies: int, interval: float, seed: int,
                params: SimParams = PARAMS) -> tuple[int, str, Path, threading.Thread]:  # fmt: skip
    """An EMhub session whose otf task is queued for WORKER, and a thread that will write
    its movies (not started)."""
    raw = server.raw_root / name
    raw.mkdir()
    sid = server.create_session(name, raw, tasks=[[WORKER, {"action": "otf"}]])
    task_id = otf_task_of(server, sid)
    params = SimParams(**{**params.__dict__, "seed": seed})
    writer = threading.Thread(target=simulate_session, args=(raw, params, n_movies),
                              kwargs={"interval": interval}, daemon=True)  # fmt: skip
    return sid, task_id, raw, writer


def otf_task_of(server: EmhubServer, sid: int) -> str:
    """The id of the ``otf`` task EMhub queued when it created session ``sid``."""
    return next(
        t
        for t, a in server.session_tasks(WORKER)
        if type(a.get("session_id")) is int and a["session_id"] == sid and a.get("action") == "otf"
    )


def last_event(server: EmhubServer, task_id: str) -> dict[str, str]:
    history = server.task_history(task_id)
    return history[-1] if history else {}


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """(mode, size, mtime_ns, sha256) of every entry below ``root`` (links not followed)."""
    snap: dict[str, tuple[int, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = ""
        if path.is_file() and not path.is_symlink():
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:
                digest = "unreadable"
        snap[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return snap


def manifest_keys(out: Path) -> list[str]:
    return [m["key"] for p in sorted((out / "batches").glob("b*.json"))
            for m in json.loads(p.read_text())["movies"]]  # fmt: skip


def result_records(out: Path) -> dict[str, dict[str, Any]]:
    """Each movie's record from its newest batch result."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "Results").glob("b*.json")):
        for movie in json.loads(path.read_text())["movies"]:
            records[movie["key"]] = movie
    return records


def star_duplicates(out: Path) -> dict[str, int]:
    """For every session STAR file: the number of duplicated micrograph/movie rows."""
    import starfile

    found: dict[str, int] = {}
    for name in ("movies.star", "micrographs.star", "micrographs_ctf.star", "autopick.star"):
        path = out / name
        if not path.exists():
            continue
        data = starfile.read(path, always_dict=True)
        for block in data.values():
            if not hasattr(block, "columns"):
                continue
            for column in ("rlnMicrographMovieName", "rlnMicrographName"):
                if column in block.columns:
                    found[f"{name}:{column}"] = int(block[column].duplicated().sum())
                    break
    return found
