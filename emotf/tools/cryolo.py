"""crYOLO prediction: the config.json and the ``cryolo_predict.py`` argv."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def config_json(box_size: int, max_boxes: int = 700) -> dict[str, Any]:
    """PhosaurusNet general-model configuration with a low-pass filter applied on the fly."""
    return {
        "model": {
            "architecture": "PhosaurusNet",
            "input_size": 1024,
            "max_box_per_image": max_boxes,
            "norm": "STANDARD",
            "num_patches": 1,
            "filter": [0.1, "filtered"],
            "anchors": [box_size, box_size],
        },
        "other": {"log_path": "logs/"},
    }


def predict_argv(exe: str, config: Path, model: Path, mics: Path, out: Path, threshold: float,
                 cpus: int, gpu: str | None) -> list[str]:  # fmt: skip
    argv = [
        exe,
        "-c",
        str(config),
        "-w",
        str(model),
        "-i",
        f"{mics}/",
        "-o",
        f"{out}/",
        "-t",
        f"{threshold:g}",
        "-nc",
        str(max(1, cpus)),
        "--otf",
    ]
    if gpu is not None:
        argv += ["-g", gpu]
    return argv
