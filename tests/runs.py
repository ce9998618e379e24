"""Helpers shared by the tests that run emotf as a person would (subprocesses) or that
write step outputs by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotf.fsutil import atomic_write_json

if TYPE_CHECKING:
    import pytest


def scandir_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders listed with ``os.scandir`` from now on (in every module: ``os`` is one)."""
    import os

    calls: list[str] = []
    real = os.scandir

    def counting(path: Any) -> Any:
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return calls


def emotf(*args: str, timeout: float = 900, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m emotf ARGS`` (not checked: the caller asserts the exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "emotf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def emotf_run(
    session: Path, out: Path, *extra: str, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``emotf run SESSION --out OUT --once --poll 1 EXTRA``."""
    return emotf("run", str(session), "--out", str(out), "--once", "--poll", "1", *extra, **kwargs)


def emotf_status(out: Path, *extra: str) -> str:
    proc = emotf("status", str(out), *extra, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def finished_line(stdout: str) -> str:
    """The last ``[finished]`` line ``emotf run`` printed."""
    return [ln for ln in stdout.splitlines() if ln.startswith("[finished]")][-1]


def write_step(path: Path, step: str, movies: dict[str, Any], batch: str = "b000001") -> Path:
    """A step's per-batch JSON, as every step writes it."""
    atomic_write_json(
        path,
        {
            "batch": batch,
            "step": step,
            "backend": "x",
            "started": 1.0,
            "finished": 2.0,
            "movies": movies,
        },
    )
    return path
