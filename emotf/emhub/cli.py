"""``emotf worker``: the EMhub worker service."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from .client import EmhubClient, EmhubError
from .cluster_task import lsf_handler, slurm_handler
from .command_task import allowlist, command_handler
from .frames_task import frames_handler
from .safe_text import escape_log_lines
from .secret import reexec_without_password
from .session_task import session_handler
from .settings import load_settings
from .specs import host_specs
from .worker import PENDING_INTERVAL, HandlerFactory, Worker

log = logging.getLogger(__name__)


class WorkerShutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave the polling loop at once (a
    BaseException, so no ``except Exception`` that keeps the worker alive can swallow it)."""


# Task names this worker handles. Anything else ends with an error event. ``command`` runs
# only names from the facility's allowlist (worker configuration ``commands``).
REGISTRY: dict[str, HandlerFactory] = {
    "session": session_handler,
    "command": command_handler,
    "frames": frames_handler,
    "cluster-slurm": slurm_handler,
    "cluster-lsf": lsf_handler,
}


def cmd_worker(args: argparse.Namespace) -> int:
    reexec_without_password()  # returns only when EMHUB_PASSWORD is not in the environment
    escape_log_lines()  # a task name or server message cannot forge a log line
    settings = load_settings(Path(args.config) if args.config else None)
    allowlist(settings)  # a bad allowlist stops the worker at start, not at the first task
    emhub = settings["emhub"]
    if args.name:
        emhub["worker"] = args.name
    client = EmhubClient(emhub["url"], emhub["user"], emhub["password"], emhub["worker"])
    interval = args.pending_interval or float(emhub.get("pending_interval", PENDING_INTERVAL))
    worker = Worker(client, dict(REGISTRY), specs=host_specs(), settings=settings,
                    pending_interval=interval)  # fmt: skip

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one shutdown is enough
        raise WorkerShutdown(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("emotf worker %s starting (server %s)", emhub["worker"], emhub["url"])
    try:
        worker.run()  # interrupted by the signal even inside the 60 s long poll
    except WorkerShutdown as reason:
        log.warning("%s: shutting down; running tasks stay pending for the next start", reason)
    except EmhubError as exc:  # e.g. wrong password, host not in config:hosts
        log.error("worker stopped: %s", exc)
        return 1
    finally:
        worker.shutdown(wait=120)
    return 0


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be above 0 and at most 3600 seconds")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("worker", help="run the EMhub worker (a long-running service)")
    p.add_argument("--config", help="worker configuration YAML (see emotf.emhub.settings)")
    p.add_argument("--name", help="worker name registered in EMhub (default: hostname)")
    p.add_argument(
        "--pending-interval",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="take this worker's pending tasks again this often: a task EMhub handed to the "
        "long poll of a stopped worker runs after at most this long "
        f"(default: emhub.pending_interval, else {PENDING_INTERVAL:.0f})",
    )
    p.set_defaults(func=cmd_worker)
