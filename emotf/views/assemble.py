"""A session STAR file assembled from the parts of its batches: session-wide optics groups
(numbered by first use, as the full rebuild numbers them), the head of the file, and the
rows of each part with its groups renumbered."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .star_parts import GROUP, TableSpec, copy_rows, used_groups
from .star_text import HEADER, NA, cell, loop_block, loop_head


@dataclass
class Layout:
    """What a session file's head says: its optics groups and columns."""

    columns: list[str]
    optics: list[Any] = field(default_factory=list)  # group parameters, by number - 1
    rows: list[dict[str, str] | None] = field(default_factory=list)  # merge: group's cells
    grouped: bool = False  # an optics block is written
    mappings: dict[str, dict[str, str]] = field(default_factory=dict)  # batch: local → global

    def known(self, key: Any) -> str | None:
        """The session-wide number of an optics group; None for a new one."""
        text = json.dumps(key)
        for i, known in enumerate(self.optics):
            if json.dumps(known) == text:
                return str(i + 1)
        return None

    def number(self, key: Any, row: dict[str, str] | None) -> str:
        """The session-wide number of an optics group (a new one is added)."""
        number = self.known(key)
        if number is not None:
            return number
        self.optics.append(key)
        self.rows.append(row)
        return str(len(self.optics))


def plan(
    out_dir: Path,
    spec: TableSpec,
    columns: list[str],
    order: list[str],
    metas: dict[str, dict[str, Any]],
    drops: dict[str, set[str]],
) -> Layout:
    """The layout of a file holding the parts of ``order``. ``columns``: the declared
    columns (a ``merge`` file takes the union of its parts' columns)."""
    layout = Layout(list(columns) if not spec.star.merge else [])
    layout.grouped = bool(spec.star.optics) and not spec.star.merge
    for batch in order:
        meta = metas[batch]["tables"][spec.file]
        if spec.star.merge:
            layout.columns += [c for c in meta["columns"] if c not in layout.columns]
        local = {entry[0]: entry for entry in meta["optics"]}
        mapping: dict[str, str] = {}
        if spec.star.merge and meta["group_col"] is not None:
            layout.grouped = True
            tokens = [entry[0] for entry in meta["optics"]]
        else:
            tokens = used_groups(out_dir, batch, metas[batch], spec.file, drops.get(batch, set()))
        for token in tokens:
            mapping[token] = layout.number(local[token][1], local[token][2])
        layout.mappings[batch] = mapping
    return layout


def _optics_block(spec: TableSpec, layout: Layout, acquisition: list[float]) -> str:
    if not layout.grouped:
        return ""
    if spec.star.merge:
        names: list[str] = []
        for row in layout.rows:
            names += [c for c in row or {} if c not in names]
        lines = []
        for i, row in enumerate(layout.rows, 1):
            cells = {**(row or {}), GROUP: str(i), "rlnOpticsGroupName": f"opticsGroup{i}"}
            lines.append([cells.get(c, NA) for c in names])
        return loop_block("optics", names, lines)
    names = [
        "rlnOpticsGroupName",
        GROUP,
        "rlnMicrographOriginalPixelSize",
        "rlnVoltage",
        "rlnSphericalAberration",
        "rlnAmplitudeContrast",
    ]
    binned = any(k[2] != 1.0 for k in layout.optics)
    if binned or spec.star.table == "micrographs":
        names.append("rlnMicrographPixelSize")
    rows = []
    for i, (pixel, kv, binning) in enumerate(layout.optics, 1):
        values: list[Any] = [f"opticsGroup{i}", i, pixel, kv, *acquisition]
        if len(names) == 7:
            values.append(round(pixel * binning, 6) if binned else pixel)
        rows.append([cell(v) for v in values])
    return loop_block("optics", names, rows)


def head(spec: TableSpec, layout: Layout, acquisition: list[float]) -> str:
    """Everything before the rows: optics block and the table's column list."""
    return (
        HEADER
        + _optics_block(spec, layout, acquisition)
        + loop_head(spec.star.table, layout.columns)
    )


def write_rows(
    out: IO[str],
    out_dir: Path,
    spec: TableSpec,
    layout: Layout,
    batches: list[str],
    metas: dict[str, dict[str, Any]],
    drops: dict[str, set[str]],
) -> int:
    """Write the rows of ``batches``; returns how many."""
    rows = 0
    for batch in batches:
        rows += copy_rows(
            out,
            out_dir,
            batch,
            metas[batch],
            spec.file,
            layout.mappings[batch],
            layout.columns,
            drops.get(batch, set()),
        )
    return rows
