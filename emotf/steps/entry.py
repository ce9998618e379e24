"""Entry point of the workflow's rules: ``run: run_step("motioncor", input, output, ...)``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..gpu import allocate
from .base import StepContext


def _steps() -> dict[str, Callable[[StepContext], Any]]:
    from . import ctf, importer, motioncor, picking, results

    return {
        "import": importer.run,
        "motioncor": motioncor.run,
        "ctffind": ctf.run,
        "picking": picking.run,
        "results": results.run,
    }


@contextmanager
def _step_log(path: Path) -> Iterator[None]:
    """Send the ``emotf`` loggers to the rule's log file for the duration of a step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("emotf")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


@contextmanager
def _visible_gpus(gpus: list[str]) -> Iterator[None]:
    """Programs started by the step see exactly these devices, numbered from 0."""
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


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
            with allocate(int(getattr(resources, "gpu", 0) or 0)) as gpus, _visible_gpus(gpus):
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
