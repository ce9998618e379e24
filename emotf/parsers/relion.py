"""RELION STAR files: per-micrograph motion STAR and particle coordinate STAR.

Motion STAR, as ``relion_run_motioncorr`` (3.1) writes one per micrograph and as emotf writes
for MotionCor2/3 results (like emwrap):

* ``data_general``: key/value pairs ``rlnImageSizeX/Y/Z``, ``rlnMicrographMovieName``,
  ``rlnMicrographBinning``, ``rlnMicrographOriginalPixelSize``, ``rlnMicrographDoseRate``,
  ``rlnMicrographPreExposure``, ``rlnVoltage``, ``rlnMicrographStartFrame``,
  ``rlnMotionModelVersion``;
* ``data_global_shift``: loop ``rlnMicrographFrameNumber`` (1-based),
  ``rlnMicrographShiftX/Y`` (unbinned pixels, the correction applied to each frame);
* ``data_local_shift`` (optional): loop frame, ``rlnCoordinateX/Y`` (patch centre),
  ``rlnMicrographShiftX/Y``. Other blocks (``local_motion_model``, ``hot_pixels``) are ignored.

Coordinate STAR (``relion_autopick``, crYOLO ``STAR/``): one unnamed ``data_`` loop with
``rlnCoordinateX/Y`` (particle centres) and optionally ``rlnAutopickFigureOfMerit``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd
import starfile

from ..fsutil import atomic_write_star
from ..records import NO_FOM, MotionResult, ParseError, Pick

log = logging.getLogger(__name__)

SHIFT_SENTINEL = 9999.0
LOCAL_COLUMNS = [
    "rlnMicrographFrameNumber",
    "rlnCoordinateX",
    "rlnCoordinateY",
    "rlnMicrographShiftX",
    "rlnMicrographShiftY",
]
GENERAL_DEFAULTS: dict[str, Any] = {
    "rlnMicrographBinning": 1.0,
    "rlnMicrographPreExposure": 0.0,
    "rlnMicrographStartFrame": 1,
    "rlnMotionModelVersion": 0,
}


def read_star(path: Path) -> dict[str, Any]:
    """All blocks of a STAR file (``{}`` for an empty file); ParseError if unreadable."""
    path = Path(path)
    try:
        if path.stat().st_size == 0 or not path.read_text(errors="replace").strip():
            return {}
        blocks = starfile.read(path, always_dict=True)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc
    except Exception as exc:  # starfile/pandas raise several types on damaged input
        raise ParseError(f"{path}: not a readable STAR file ({exc})") from exc
    return dict(blocks)


def _numbers(table: pd.DataFrame, name: str, path: Path) -> list[float]:
    """Finite numbers of column ``name``; shift columns also reject the ±9999 sentinels."""
    if name not in table.columns:
        raise ParseError(f"{path}: column {name} missing")
    values = pd.to_numeric(table[name], errors="coerce").astype(float).tolist()
    limit = SHIFT_SENTINEL if "Shift" in name else math.inf
    bad = [v for v in values if not math.isfinite(v) or abs(v) >= limit]
    if bad:
        raise ParseError(f"{path}: invalid values in {name} ({bad[0]})")
    return values


def read_motion_star(path: Path) -> tuple[MotionResult, dict[str, Any]]:
    """Global (and local) shifts of one micrograph plus its ``data_general`` values."""
    path = Path(path)
    blocks = read_star(path)
    table = blocks.get("global_shift")
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise ParseError(f"{path}: no data_global_shift table")
    frames = [int(v) for v in _numbers(table, "rlnMicrographFrameNumber", path)]
    xs = _numbers(table, "rlnMicrographShiftX", path)
    ys = _numbers(table, "rlnMicrographShiftY", path)
    order = sorted(range(len(frames)), key=frames.__getitem__)
    result = MotionResult(shifts=[(xs[i], ys[i]) for i in order])
    local = blocks.get("local_shift")
    if isinstance(local, pd.DataFrame) and not local.empty:
        cols = [_numbers(local, name, path) for name in LOCAL_COLUMNS]
        result.local = [(int(f), cx, cy, dx, dy) for f, cx, cy, dx, dy in zip(*cols, strict=True)]
    general = blocks.get("general")
    info: dict[str, Any] = {}
    if isinstance(general, dict):
        info = dict(general)
    elif isinstance(general, pd.DataFrame) and len(general) == 1:
        info = general.iloc[0].to_dict()
    return result, info


def write_motion_star(path: Path, result: MotionResult, general: dict[str, Any]) -> None:
    """Write a RELION 3.1 motion STAR for ``result`` (as when MotionCor2/3 ran).

    ``general`` supplies ``data_general``; binning, pre-exposure, start frame and motion model
    version default to RELION's values, ``rlnImageSizeZ`` to the number of frames.
    """
    info = {**GENERAL_DEFAULTS, "rlnImageSizeZ": len(result.shifts), **general}
    blocks: dict[str, Any] = {
        "general": info,
        "global_shift": pd.DataFrame(
            {
                "rlnMicrographFrameNumber": list(range(1, len(result.shifts) + 1)),
                "rlnMicrographShiftX": [float(s[0]) for s in result.shifts],
                "rlnMicrographShiftY": [float(s[1]) for s in result.shifts],
            }
        ),
    }
    if result.local:
        local = pd.DataFrame(result.local, columns=LOCAL_COLUMNS)
        local["rlnMicrographFrameNumber"] = local["rlnMicrographFrameNumber"].astype(int)
        blocks["local_shift"] = local
    atomic_write_star(Path(path), blocks)


def _coordinate_table(blocks: dict[str, Any]) -> pd.DataFrame | None:
    tables = [b for b in blocks.values() if isinstance(b, pd.DataFrame)]
    for table in tables:
        if "rlnCoordinateX" in table.columns:
            return table
    return tables[0] if tables else None


def _score(fom: float) -> float | None:
    return None if not math.isfinite(fom) or math.isclose(fom, NO_FOM) else fom


def read_coordinates_star(path: Path) -> list[Pick]:
    """Particle centres from a RELION coordinate STAR (autopick, crYOLO STAR, emotf).

    An empty file or an empty loop gives ``[]``; the score is ``rlnAutopickFigureOfMerit``;
    ``None`` (no score) without that column, for RELION's ``-999`` (manual picks) or a
    non-number.
    """
    path = Path(path)
    table = _coordinate_table(read_star(path))
    if table is None or table.empty:
        return []
    xs = _numbers(table, "rlnCoordinateX", path)
    ys = _numbers(table, "rlnCoordinateY", path)
    if "rlnAutopickFigureOfMerit" in table.columns:
        foms = pd.to_numeric(table["rlnAutopickFigureOfMerit"], errors="coerce").astype(float)
        scores: list[float | None] = [_score(v) for v in foms.tolist()]
    else:
        scores = [None] * len(xs)
    return [Pick(x, y, s) for x, y, s in zip(xs, ys, scores, strict=True)]


def write_coordinates_star(path: Path, picks: list[Pick]) -> None:
    """Coordinate STAR with the columns ``relion_autopick`` writes (class 0, psi −999).

    A pick without a score gets RELION's ``-999`` figure of merit.
    """
    table = pd.DataFrame(
        {
            "rlnCoordinateX": [float(p.x) for p in picks],
            "rlnCoordinateY": [float(p.y) for p in picks],
            "rlnAutopickFigureOfMerit": [
                NO_FOM if p.score is None else float(p.score) for p in picks
            ],
            "rlnClassNumber": [0] * len(picks),
            "rlnAnglePsi": [-999.0] * len(picks),
        }
    )
    atomic_write_star(Path(path), {"": table})
