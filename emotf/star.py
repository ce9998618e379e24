"""RELION-compatible STAR outputs (written with the ``starfile`` library).

Rows are the per-movie records of the step JSON files (see ``emotf.steps.base``); optics
groups are made from distinct (pixel size, voltage) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .fsutil import atomic_write_star

Row = Mapping[str, Any]


def optics_groups(rows: Iterable[Row]) -> dict[tuple[float, float], int]:
    groups: dict[tuple[float, float], int] = {}
    for row in rows:
        key = (round(float(row["pixel_size"]), 5), round(float(row["voltage"]), 3))
        groups.setdefault(key, len(groups) + 1)
    return groups


def optics_table(
    groups: dict[tuple[float, float], int], acquisition: Mapping[str, Any], binning: float = 1.0
) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "rlnOpticsGroupName": [f"opticsGroup{n}" for n in groups.values()],
            "rlnOpticsGroup": list(groups.values()),
            "rlnMicrographOriginalPixelSize": [k[0] for k in groups],
            "rlnVoltage": [k[1] for k in groups],
            "rlnSphericalAberration": [float(acquisition["cs"])] * len(groups),
            "rlnAmplitudeContrast": [float(acquisition["amplitude_contrast"])] * len(groups),
        }
    )
    if binning != 1.0:
        table["rlnMicrographPixelSize"] = table["rlnMicrographOriginalPixelSize"] * binning
    return table


def _group_of(groups: dict[tuple[float, float], int], row: Row) -> int:
    return groups[(round(float(row["pixel_size"]), 5), round(float(row["voltage"]), 3))]


def write_movies_star(path: Path, rows: Mapping[str, Row], acquisition: Mapping[str, Any]) -> None:
    groups = optics_groups(rows.values())
    movies = pd.DataFrame(
        {
            "rlnMicrographMovieName": [r["movie"] for r in rows.values()],
            "rlnOpticsGroup": [_group_of(groups, r) for r in rows.values()],
        }
    )
    atomic_write_star(path, {"optics": optics_table(groups, acquisition), "movies": movies})


def micrograph_columns(rows: Iterable[Row], groups: dict[tuple[float, float], int]) -> pd.DataFrame:
    rows = list(rows)
    return pd.DataFrame(
        {
            "rlnMicrographName": [r["micrograph"] for r in rows],
            "rlnMicrographMetadata": [r.get("motion_star", "") for r in rows],
            "rlnOpticsGroup": [_group_of(groups, r) for r in rows],
            "rlnAccumMotionTotal": [r["motion_total"] for r in rows],
            "rlnAccumMotionEarly": [r["motion_early"] for r in rows],
            "rlnAccumMotionLate": [r["motion_late"] for r in rows],
        }
    )


def ctf_columns(rows: Iterable[Row]) -> pd.DataFrame:
    rows = list(rows)
    return pd.DataFrame(
        {
            "rlnCtfImage": [r["ctf_image"] for r in rows],
            "rlnDefocusU": [r["defocus_u"] for r in rows],
            "rlnDefocusV": [r["defocus_v"] for r in rows],
            "rlnCtfAstigmatism": [abs(r["defocus_u"] - r["defocus_v"]) for r in rows],
            "rlnDefocusAngle": [r["defocus_angle"] for r in rows],
            "rlnCtfFigureOfMerit": [r["ctf_score"] for r in rows],
            "rlnCtfMaxResolution": [r["ctf_resolution"] for r in rows],
        }
    )


def write_micrographs_star(
    path: Path,
    rows: Mapping[str, Row],
    acquisition: Mapping[str, Any],
    with_ctf: bool = False,
    binning: float = 1.0,
) -> None:
    """``micrographs.star`` (motion) or, with ``with_ctf``, ``micrographs_ctf.star``."""
    groups = optics_groups(rows.values())
    table = micrograph_columns(rows.values(), groups)
    if with_ctf:
        table = pd.concat([table, ctf_columns(rows.values())], axis=1)
    optics = optics_table(groups, acquisition, binning)
    if "rlnMicrographPixelSize" not in optics:
        optics["rlnMicrographPixelSize"] = optics["rlnMicrographOriginalPixelSize"]
    atomic_write_star(path, {"optics": optics, "micrographs": table})


def write_coordinate_index(path: Path, rows: Mapping[str, Row]) -> None:
    """RELION 4 style ``autopick.star``: micrograph → its coordinate file."""
    table = pd.DataFrame(
        {
            "rlnMicrographName": [r["micrograph"] for r in rows.values()],
            "rlnMicrographCoordinates": [r["coordinates"] for r in rows.values()],
        }
    )
    atomic_write_star(path, {"coordinate_files": table})
