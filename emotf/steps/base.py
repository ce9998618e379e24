"""What every step shares: its context, its per-movie records and its JSON output.

Each step of a batch reads the previous step's JSON, processes the movies that succeeded
there and writes ``<Step>/<batch>/<step>.json``::

    {"batch": "b000001", "step": "motioncor", "backend": "relion",
     "started": 1.7e9, "finished": 1.7e9,
     "movies": {"<key>": {"ok": true, "time": 1.7e9, ...step fields},
                "<key>": {"ok": false, "time": 1.7e9, "reason": "..."}}}

A movie that fails is recorded with its reason and dropped from later steps; the batch
itself only fails when the step cannot run at all (e.g. its program is missing).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..fsutil import atomic_write_json, read_json

log = logging.getLogger(__name__)

Record = dict[str, Any]


class StepError(RuntimeError):
    """The step cannot run for the whole batch (configuration or environment problem)."""


@dataclass
class StepContext:
    batch: str
    config: Config
    inputs: dict[str, Path]
    outputs: dict[str, Path]
    threads: int = 1
    gpus: list[str] = field(default_factory=list)
    workdir: Path = field(default_factory=Path.cwd)


@dataclass
class StepOutput:
    batch: str
    step: str
    backend: str
    started: float
    finished: float = 0.0
    movies: dict[str, Record] = field(default_factory=dict)

    def ok(self) -> dict[str, Record]:
        return {k: v for k, v in self.movies.items() if v.get("ok")}

    def succeed(self, key: str, **fields: Any) -> None:
        self.movies[key] = {"ok": True, "time": time.time(), **fields}

    def fail(self, key: str, reason: str) -> None:
        log.warning("%s: movie %s failed: %s", self.step, key, reason)
        self.movies[key] = {"ok": False, "time": time.time(), "reason": reason}

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "step": self.step,
            "backend": self.backend,
            "started": self.started,
            "finished": self.finished,
            "movies": self.movies,
        }

    def write(self, path: Path) -> None:
        self.finished = time.time()
        atomic_write_json(path, self.to_dict())


def start_output(ctx: StepContext, step: str, backend: str) -> StepOutput:
    return StepOutput(batch=ctx.batch, step=step, backend=backend, started=time.time())


def load_output(path: Path) -> StepOutput:
    try:
        data = read_json(path)
        return StepOutput(
            batch=data["batch"],
            step=data["step"],
            backend=data["backend"],
            started=float(data["started"]),
            finished=float(data["finished"]),
            movies=dict(data["movies"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepError(f"cannot read step output {path}: {exc}") from exc


def merged_ok(*outputs: StepOutput) -> dict[str, Record]:
    """Movies that succeeded in every given step, with the fields of all of them merged."""
    if not outputs:
        return {}
    keys = set(outputs[-1].ok())
    for out in outputs[:-1]:
        keys &= set(out.ok())
    merged: dict[str, Record] = {}
    for key in outputs[-1].ok():
        if key in keys:
            record: Record = {}
            for out in outputs:
                record.update(out.movies[key])
            merged[key] = record
    return merged


_thread = threading.local()  # per job thread: the GPUs allocated to the running step


@contextmanager
def visible_gpus(gpus: list[str]) -> Iterator[None]:
    """Programs started by this thread's step (``run_tool``) see exactly these devices,
    numbered from 0. Thread-local, so concurrent jobs in one Snakemake never mix them."""
    saved = getattr(_thread, "gpus", None)
    _thread.gpus = list(gpus)
    try:
        yield
    finally:
        _thread.gpus = saved


def tool_env(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """``env`` (default: this process's) with the step's ``CUDA_VISIBLE_DEVICES``."""
    gpus = getattr(_thread, "gpus", None)
    if not gpus:
        return env
    return {**(os.environ if env is None else env), "CUDA_VISIBLE_DEVICES": ",".join(gpus)}


def run_tool(
    argv: Sequence[str],
    log_path: Path | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a program (argv list, never a shell), appending its output to ``log_path``."""
    log.info("running %s", " ".join(str(a) for a in argv))
    try:
        proc = subprocess.run(
            [str(a) for a in argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=tool_env(env),
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise StepError(f"program not found: {argv[0]} ({exc})") from exc
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"$ {' '.join(str(a) for a in argv)}\n{proc.stdout}\n{proc.stderr}\n")
    return proc


_PROGRESS = re.compile(
    r"~~\(|^\s*\d+(\.\d+)?/\s*[\d?.]+\s*(sec|min|hrs)|^\s*\[?oo\]?\s*$|^\s*\.+\s*$"
)
_SOURCE = re.compile(r"^\s*in:\s+\S+,\s*line\s+\d+")
_CAUSE = re.compile(
    r"error|fail|cannot|can't|could not|not found|no such|invalid|mismatch|"
    r"do not match|denied|abort|exception|killed",
    re.IGNORECASE,
)
_FILE = re.compile(
    r"(?<![\w<])(?:[\w.~-]*/)+[\w.-]+|\b[\w.-]+\.(?:tiff?|mrcs?|eer|star|txt|dm4|gain)\b",
    re.IGNORECASE,
)


def _meaningful(text: str) -> list[str]:
    """Lines of a program's output without progress bars, source locations and backtraces."""
    lines: list[str] = []
    in_trace = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("=== Backtrace"):
            in_trace = True
            continue
        if in_trace:
            in_trace = not line.startswith("=====")
            continue
        if line and not _PROGRESS.search(line) and not _SOURCE.match(line):
            lines.append(line)
    return lines


def _after_error_marker(lines: list[str]) -> list[str]:
    """RELION-style ``ERROR:`` followed by the message on the next line(s)."""
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.upper().startswith("ERROR"):
            rest = line.split(":", 1)[1].strip() if ":" in line else ""
            message = rest or (lines[i + 1] if i + 1 < len(lines) else "")
            if message and not message.upper().startswith("ERROR") and message not in found:
                found.append(message)
    return found


def error_tail(proc: subprocess.CompletedProcess[str], lines: int = 3) -> str:
    """A short failure reason naming the cause, as a program reported it.

    Prefer the message after an ``ERROR`` marker, then stderr's last lines that read like a
    cause, then stdout's; progress bars, source locations and backtraces are dropped, and
    file names are replaced by ``<file>`` so that movies failing for one cause share one
    reason (failures are grouped by reason).
    """
    err, out = _meaningful(proc.stderr or ""), _meaningful(proc.stdout or "")
    cause = _after_error_marker(err) or _after_error_marker(out)
    if not cause:
        cause = [ln for ln in err if _CAUSE.search(ln)][-lines:] or err[-lines:]
    if not cause:
        cause = [ln for ln in out if _CAUSE.search(ln)][-lines:] or out[-lines:]
    text = " | ".join(dict.fromkeys(_FILE.sub("<file>", ln) for ln in cause)) or "no output"
    code = proc.returncode
    status = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return f"{status}: {text}"[:500]
