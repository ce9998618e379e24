"""RELION-compatible STAR outputs (written with the ``starfile`` library).

Rows are per-movie records (see ``emotf.steps.base``); columns and their RELION names come
from the pipeline's field declarations (``star`` of each field, ``session_star`` of each
step). Optics groups are made from distinct (pixel size, voltage) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import atomic_write_star
from ..pipeline import Pipeline, SessionStar, builtin_pipeline

if TYPE_CHECKING:
    import pandas as pd

Row = Mapping[str, Any]


OpticsKey = tuple[float, float, float]  # movie pixel size (Å), voltage (kV), binning


def optics_key(row: Row, binning: float) -> OpticsKey:
    """The optics group parameters of a record (``binning`` when it has none)."""
    return (
        round(float(row["pixel_size"]), 5),
        round(float(row["voltage"]), 3),
        round(float(row.get("binning") or binning), 4),
    )


def optics_groups(rows: Iterable[Row], binning: float = 1.0) -> dict[OpticsKey, int]:
    """Optics groups by movie pixel size, voltage and each movie's own binning (× 2 for
    super-resolution frames); ``binning`` for records without one."""
    groups: dict[OpticsKey, int] = {}
    for row in rows:
        groups.setdefault(optics_key(row, binning), len(groups) + 1)
    return groups


def optics_table(groups: dict[OpticsKey, int], acquisition: Mapping[str, Any]) -> pd.DataFrame:
    import pandas as pd  # imported when used: appending to session files needs no pandas

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
    if any(k[2] != 1.0 for k in groups):
        table["rlnMicrographPixelSize"] = [round(k[0] * k[2], 6) for k in groups]
    return table


def star_columns(pipeline: Pipeline, star: SessionStar) -> list[tuple[str, str]]:
    """(record field, RELION column) of a declared STAR table, in declaration order."""
    out = []
    for name in star.columns:
        spec = pipeline.field(name)
        if spec is not None and spec.star:
            out.append((name, spec.star))
    return out


def write_table_star(
    path: Path,
    star: SessionStar,
    rows: Mapping[str, Row],
    acquisition: Mapping[str, Any],
    binning: float = 1.0,
    pipeline: Pipeline | None = None,
) -> None:
    """One declared table (``star``) of ``rows``, with an optics block when it has one."""
    import pandas as pd

    pipeline = pipeline or builtin_pipeline()
    records = list(rows.values())
    table = pd.DataFrame(
        {
            column: [r.get(name, "") for r in records]
            for name, column in star_columns(pipeline, star)
        }
    )
    blocks: dict[str, Any] = {}
    if star.optics:
        groups = optics_groups(records, binning)
        optics = optics_table(groups, acquisition)
        if star.table == "micrographs" and "rlnMicrographPixelSize" not in optics:
            optics["rlnMicrographPixelSize"] = optics["rlnMicrographOriginalPixelSize"]
        insert_at = min(len(table.columns), 1 if star.table == "movies" else 2)
        table.insert(insert_at, "rlnOpticsGroup", [groups[optics_key(r, binning)] for r in records])
        blocks["optics"] = optics
    blocks[star.table] = table
    atomic_write_star(path, blocks)


def _declared(field: str) -> SessionStar:
    """The session STAR declaration of the step that writes ``field``."""
    pipeline = builtin_pipeline()
    step = pipeline.owner_of(field)
    if step is None or step.session_star is None:
        raise KeyError(f"no step declares a STAR table with field {field!r}")
    return step.session_star


def write_movies_star(path: Path, rows: Mapping[str, Row], acquisition: Mapping[str, Any]) -> None:
    """A movies STAR (per batch: the input of RELION's motion correction)."""
    write_table_star(path, _declared("movie"), rows, acquisition)


def write_micrographs_star(
    path: Path,
    rows: Mapping[str, Row],
    acquisition: Mapping[str, Any],
    with_ctf: bool = False,
    binning: float = 1.0,
) -> None:
    """A micrographs STAR (motion) or, with ``with_ctf``, with the CTF columns."""
    star = _declared("defocus_u" if with_ctf else "micrograph")
    write_table_star(path, star, rows, acquisition, binning)


def write_coordinate_index(path: Path, rows: Mapping[str, Row]) -> None:
    """RELION 4 style ``autopick.star``: micrograph → its coordinate file."""
    write_table_star(path, _declared("coordinates"), rows, {})
