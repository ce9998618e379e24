"""Entry point used by the workflow's ``script:`` directives (``workflows/scripts/step.py``)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
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


def run_from_snakemake(smk: Any) -> None:
    """Run the step named by ``params.step`` for one batch, logging to the rule's log file."""
    log_file = Path(smk.log[0])
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    step = str(smk.params.step)
    requested = int(getattr(smk.resources, "gpu", 0) or 0)
    try:
        with allocate(requested) as gpus:
            if gpus:
                # programs then see exactly these devices, numbered from 0 (-Gpu 0, -g 0)
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            _run(smk, step, gpus)
    except Exception:
        logging.getLogger(__name__).exception("step %s failed", step)
        sys.exit(1)


def _run(smk: Any, step: str, gpus: list[str]) -> None:
    ctx = StepContext(
        batch=str(smk.wildcards.batch),
        config=dict(smk.config),
        inputs={name: Path(str(value)) for name, value in smk.input.items()},
        outputs={name: Path(str(value)) for name, value in smk.output.items()},
        threads=int(smk.threads),
        gpus=gpus,
    )
    _steps()[step](ctx)
