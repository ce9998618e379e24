"""Entry point of the workflow's rules: ``run: run_step("motioncor", input, output, ...)``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..gpu import allocate
from .base import StepContext, visible_gpus


def _steps() -> dict[str, Callable[[StepContext], Any]]:
    from . import ctf, extract, importer, motioncor, picking, results

    return {
        "import": importer.run,
        "motioncor": motioncor.run,
        "ctffind": ctf.run,
        "picking": picking.run,
        "extract": extract.run,
        "results": results.run,
    }


class _ThisThread(logging.Filter):
    """Pass only records logged by the thread that created the filter: with
    ``--force-use-threads`` several jobs run in one Snakemake process at once."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.ident


_level_lock = threading.Lock()
_level_users: list[int] = []  # saved level of the ``emotf`` logger while steps run


@contextmanager
def _step_log(path: Path) -> Iterator[None]:
    """Send this thread's ``emotf`` log records to the rule's log file during a step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThisThread())
    logger = logging.getLogger("emotf")
    with _level_lock:
        _level_users.append(logger.level)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        yield
    finally:
        with _level_lock:
            logger.removeHandler(handler)
            saved = _level_users.pop()
            if not _level_users:
                logger.setLevel(saved)
        handler.close()


def run_step(
    step: str,
    input: Any,
    output: Any,
    log: Any,
    threads: int,
    resources: Any,
    wildcards: Any,
    config: dict[str, Any],
) -> None:
    """Run one step for one batch from a rule's ``run:`` block (raises on failure)."""
    with _step_log(Path(str(log[0]))):
        try:
            with allocate(int(getattr(resources, "gpu", 0) or 0)) as gpus, visible_gpus(gpus):
                ctx = StepContext(
                    batch=str(wildcards.batch),
                    config=dict(config),
                    inputs={name: Path(str(value)) for name, value in input.items()},
                    outputs={name: Path(str(value)) for name, value in output.items()},
                    threads=int(threads),
                    gpus=gpus,
                )
                _steps()[step](ctx)
        except Exception:
            logging.getLogger(__name__).exception("step %s failed", step)
            raise
