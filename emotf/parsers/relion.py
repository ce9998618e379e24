"""RELION STAR files: per-micrograph motion STAR and particle coordinate STAR.

Motion STAR (``relion_run_motioncorr`` writes one per micrograph; emotf writes the same for
MotionCor2/3 results): ``data_general`` (image size, movie name, binning, pixel size, dose
rate, pre-exposure, voltage, start frame, motion model version), ``data_global_shift``
(``rlnMicrographFrameNumber`` 1-based, ``rlnMicrographShiftX/Y`` in unbinned pixels: the
correction applied to each frame) and optionally ``data_local_shift``.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import starfile

from ..fsutil import publish
from ..records import MotionResult, ParseError, Pick


def _read(path: Path) -> dict[str, Any]:
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises several types on damaged input
        raise ParseError(f"{path}: not a readable STAR file ({exc})") from exc
    return dict(blocks)


def _column(table: Any, name: str, path: Path) -> list[float]:
    if not isinstance(table, pd.DataFrame) or name not in table.columns:
        raise ParseError(f"{path}: column {name} missing")
    values = [float(v) for v in table[name]]
    if any(not math.isfinite(v) or v <= -9999 for v in values):
        raise ParseError(f"{path}: invalid values in {name}")
    return values


def read_motion_star(path: Path) -> tuple[MotionResult, dict[str, Any]]:
    """Global (and local) shifts of one micrograph plus its ``data_general`` values."""
    path = Path(path)
    blocks = _read(path)
    shifts_table = blocks.get("global_shift")
    frames = _column(shifts_table, "rlnMicrographFrameNumber", path)
    xs = _column(shifts_table, "rlnMicrographShiftX", path)
    ys = _column(shifts_table, "rlnMicrographShiftY", path)
    if not frames:
        raise ParseError(f"{path}: no frames in data_global_shift")
    order = sorted(range(len(frames)), key=frames.__getitem__)
    result = MotionResult(shifts=[(xs[i], ys[i]) for i in order])
    local = blocks.get("local_shift")
    if isinstance(local, pd.DataFrame) and not local.empty:
        names = [
            "rlnMicrographFrameNumber",
            "rlnCoordinateX",
            "rlnCoordinateY",
            "rlnMicrographShiftX",
            "rlnMicrographShiftY",
        ]
        if all(n in local.columns for n in names):
            result.local = [
                (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]))
                for r in local[names].itertuples(index=False)
            ]
    general = blocks.get("general")
    info: dict[str, Any] = {}
    if isinstance(general, dict):
        info = dict(general)
    elif isinstance(general, pd.DataFrame) and len(general) == 1:
        info = general.iloc[0].to_dict()
    return result, info


def _write_star(path: Path, blocks: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".star", dir=path.parent)
    os.close(fd)
    try:
        starfile.write(blocks, tmp, overwrite=True)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_motion_star(path: Path, result: MotionResult, general: dict[str, Any]) -> None:
    """Write a RELION motion STAR (as relion_run_motioncorr does) for ``result``."""
    blocks: dict[str, Any] = {
        "general": dict(general),
        "global_shift": pd.DataFrame(
            {
                "rlnMicrographFrameNumber": list(range(1, len(result.shifts) + 1)),
                "rlnMicrographShiftX": [s[0] for s in result.shifts],
                "rlnMicrographShiftY": [s[1] for s in result.shifts],
            }
        ),
    }
    if result.local:
        blocks["local_shift"] = pd.DataFrame(
            result.local,
            columns=[
                "rlnMicrographFrameNumber",
                "rlnCoordinateX",
                "rlnCoordinateY",
                "rlnMicrographShiftX",
                "rlnMicrographShiftY",
            ],
        )
    _write_star(Path(path), blocks)


def read_coordinates_star(path: Path) -> list[Pick]:
    """Particle centres from a RELION coordinate STAR (autopick, crYOLO STAR, emotf)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return []
    blocks = _read(path)
    table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)), None)
    if table is None or table.empty:
        return []
    xs = _column(table, "rlnCoordinateX", path)
    ys = _column(table, "rlnCoordinateY", path)
    scores = (
        [float(v) for v in table["rlnAutopickFigureOfMerit"]]
        if "rlnAutopickFigureOfMerit" in table.columns
        else [0.0] * len(xs)
    )
    return [Pick(x, y, s) for x, y, s in zip(xs, ys, scores, strict=True)]


def write_coordinates_star(path: Path, picks: list[Pick]) -> None:
    table = pd.DataFrame(
        {
            "rlnCoordinateX": [p.x for p in picks],
            "rlnCoordinateY": [p.y for p in picks],
            "rlnAutopickFigureOfMerit": [p.score for p in picks],
        }
    )
    _write_star(Path(path), {"": table})
