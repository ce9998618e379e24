"""Shared fixtures: a real EMhub 1.0.2 + redis-server on loopback for worker tests."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "emhub"))

from harness import EmhubServer  # noqa: E402
from workerproc import WORKER, WorkerProcess  # noqa: E402


def emhub_venv() -> Path:
    return Path(os.environ.get("EMOTF_EMHUB_VENV", ROOT / ".venv-emhub"))


@pytest.fixture(scope="session")
def emhub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmhubServer]:
    venv = emhub_venv()
    missing = [p for p in (venv / "bin" / "flask",) if not p.exists()]
    if shutil.which("redis-server") is None:
        missing.append(Path("redis-server"))
    if missing:
        reason = f"EMhub test server not installed ({', '.join(map(str, missing))})"
        if os.environ.get("EMOTF_REQUIRE_EMHUB"):
            pytest.fail(reason + " but EMOTF_REQUIRE_EMHUB is set")
        pytest.skip(reason + ": run tests/emhub/setup_server.sh")
    server = EmhubServer(venv, tmp_path_factory.mktemp("emhub"), [WORKER])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker_factory(emhub_server: EmhubServer, tmp_path: Path
                   ) -> Iterator[Callable[..., WorkerProcess]]:  # fmt: skip
    """Start ``python -m emotf worker`` processes; each is stopped (SIGTERM) at teardown."""
    started: list[WorkerProcess] = []

    def make(**kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(emhub_server, tmp_path, **kwargs)
        worker.start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.kill(signal.SIGTERM)
