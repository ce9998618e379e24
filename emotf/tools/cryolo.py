"""crYOLO prediction: the ``config.json`` dict and the ``cryolo_predict.py`` argv.

``cryolo_predict.py -c config.json -w model.h5 -i mics/ -o out/ -t 0.3 -nc N [-g 0 1]
[--otf] [--distance d] [--minsize a --maxsize b] [--prediction_batch_size k]
[--norm_margin m] [--cleanup]``; outputs in ``out/`` ``CBOX/ STAR/ EMAN/ DISTR/``.
emotf runs one prediction per batch folder and never uses ``--monitor`` (watch a folder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MODEL_ARCH = "PhosaurusNet"


@dataclass(frozen=True)
class CryoloFilter:
    """``LOWPASS`` (cutoff in 1/px, 0–0.5) or ``JANNI`` (denoising model .h5)."""

    kind: str = "LOWPASS"
    low_pass_cutoff: float = 0.1
    janni_model: Path | None = None
    janni_overlap: int = 24
    janni_batches: int = 3
    filtered_dir: str = "filtered_tmp/"

    def as_config(self) -> list[Any]:
        if self.kind.upper() == "LOWPASS":
            return [self.low_pass_cutoff, self.filtered_dir]
        if self.kind.upper() == "JANNI":
            if self.janni_model is None:
                raise ValueError("JANNI filter needs janni_model (e.g. gmodel_janni_20190703.h5)")
            return [str(self.janni_model), self.janni_overlap, self.janni_batches,
                    self.filtered_dir]  # fmt: skip
        raise ValueError(f"unknown crYOLO filter {self.kind!r} (LOWPASS or JANNI)")


def config_json(box_size: int | None, max_boxes: int = 700,
                image_filter: CryoloFilter | None = None) -> dict[str, Any]:  # fmt: skip
    """General-model (PhosaurusNet, input 1024) configuration.

    ``anchors`` = ``[box_size, box_size]`` px when the particle box is known (otherwise crYOLO
    uses the model's own). ``max_box_per_image`` caps picks per micrograph.
    """
    model: dict[str, Any] = {
        "architecture": DEFAULT_MODEL_ARCH,
        "input_size": 1024,
        "max_box_per_image": int(max_boxes),
        "norm": "STANDARD",
        "num_patches": 1,
        "filter": (image_filter or CryoloFilter()).as_config(),
    }
    if box_size is not None:
        if box_size <= 0:
            raise ValueError(f"box size must be positive, got {box_size}")
        model["anchors"] = [int(box_size), int(box_size)]
    return {"model": model, "other": {"log_path": "logs/"}}


def predict_argv(
    exe: str,
    config: Path,
    model: Path,
    mics: Path,
    out: Path,
    threshold: float,
    cpus: int,
    gpu: str | None,
    *,
    otf: bool = True,
    distance: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    batch_size: int | None = None,
    norm_margin: float | None = None,
    cleanup: bool = False,
) -> list[str]:
    """``cryolo_predict.py`` over the micrograph folder ``mics`` into ``out``.

    ``gpu`` ``None`` runs on the CPU (no ``-g``); ``"0 1"``/``"0,1"`` gives ``-g 0 1``.
    ``otf`` filters on the fly instead of writing filtered images.
    """
    argv = [exe, "-c", str(config), "-w", str(model), "-i", f"{mics}/", "-o", f"{out}/",
            "-t", f"{threshold:g}", "-nc", str(max(1, cpus))]  # fmt: skip
    if gpu is not None:
        argv += ["-g", *(gpu.replace(",", " ").split() or ["0"])]
    if otf:
        argv.append("--otf")
    if distance is not None:
        argv += ["--distance", str(distance)]
    if min_size is not None:
        argv += ["--minsize", str(min_size)]
    if max_size is not None:
        argv += ["--maxsize", str(max_size)]
    if batch_size is not None:
        argv += ["--prediction_batch_size", str(batch_size)]
    if norm_margin is not None:
        argv += ["--norm_margin", f"{norm_margin:g}"]
    if cleanup:
        argv.append("--cleanup")
    return argv


ZERO_PICK_CRASH = "IndexError: list index out of range"


def zero_pick_crash(stdout_or_log: str) -> bool:
    """crYOLO may end with ``IndexError: list index out of range`` when nothing was picked
    (it then writes no pick file); callers treat a micrograph without a pick file after that
    crash as done with zero picks."""
    return ZERO_PICK_CRASH in stdout_or_log
