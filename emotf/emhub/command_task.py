"""The ``command`` task: run one of the facility's allowlisted commands.

EMhub's stock worker runs ``args.cmd`` through a shell. emotf never does: ``command`` tasks
are refused unless the worker configuration lists commands by name, and the server can only
choose a *name*. The argv comes from the worker configuration and runs without a shell::

    commands:
      disk_usage: [df, -h, /data]
      gpus: [nvidia-smi]

Task: ``{"name": "command", "args": {"cmd": "disk_usage"}}`` → events ``{"output": ...}``
and a final ``{"returncode": N, "done": 1}``. Anything else ends with one error event.
"""

from __future__ import annotations

import logging
import re
import subprocess
from typing import Any

from ..config import ConfigError
from .client import Task
from .worker import Reporter, TaskError, Worker

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_OUTPUT = 20_000  # characters of output sent to EMhub
DEFAULT_TIMEOUT = 300.0


def allowlist(settings: dict[str, Any]) -> dict[str, list[str]]:
    """The validated ``commands`` mapping of the worker configuration (may be empty)."""
    commands = settings.get("commands") or {}
    if not isinstance(commands, dict):
        raise ConfigError("worker configuration: 'commands' must map names to argv lists")
    checked: dict[str, list[str]] = {}
    for name, argv in commands.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"worker configuration: bad command name {str(name)[:64]!r}")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(f"worker configuration: command {name!r} must be a list of strings")
        checked[name] = list(argv)
    return checked


class CommandTask:
    def __init__(self, task: Task, report: Reporter, argv: list[str], timeout: float) -> None:
        self.task, self.report, self.argv, self.timeout = task, report, argv, timeout
        self.proc: subprocess.Popen[str] | None = None

    def run(self) -> dict[str, Any]:
        log.info("task %s: running allowlisted command %s", self.task.id, self.argv[0])
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise TaskError(f"command {self.argv[0]!r} cannot start: {exc.strerror}") from None
        try:
            output, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
            raise TaskError(f"command timed out after {self.timeout:.0f} s") from None
        self.report({"output": output[-MAX_OUTPUT:]})
        return {"returncode": self.proc.returncode}

    def stop(self, user: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()


def command_handler(worker: Worker, task: Task, report: Reporter) -> CommandTask:
    commands = allowlist(worker.settings)
    if not commands:
        raise TaskError("command tasks are disabled on this worker (no 'commands' allowlist)")
    name = task.args.get("cmd")
    if not isinstance(name, str) or name not in commands:
        shown = str(name)[:60]
        raise TaskError(f"command {shown!r} is not in this worker's allowlist")
    timeout = float(worker.settings.get("command_timeout", DEFAULT_TIMEOUT))
    return CommandTask(task, report, commands[name], timeout)
