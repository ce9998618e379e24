"""Per-batch parts of the session STAR files.

A finished batch gets, under ``.emotf/star_parts/<batch>/``, one ``<file>.rows`` per session
STAR file (that batch's rows, rendered as they appear in the session file except the optics
group cell, which holds the batch's own group) and ``part.json``: for every file its columns,
the position of ``rlnOpticsGroup``, the batch's optics groups (with the parameters that
decide the session-wide number) and which movie each run of rows belongs to. ``part.json``
is written last: a part without it does not exist. Rows come from ``Results/<batch>.json``
(as the full rebuild of :mod:`emotf.outputs` selects them) or, for ``merge`` tables such as
``particles.star``, from the batch's own STAR file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..config import Config
from ..curation import curate
from ..fsutil import atomic_write_json, atomic_write_text, read_json
from ..pipeline import Pipeline, SessionStar, upgrade_record
from ..pipeline.snake import ACCEPTED_STAR, accepted_table
from ..star import optics_key, star_columns
from .star_text import cell, read_loops, value_of

VERSION = 1
META = "part.json"
GROUP = "rlnOpticsGroup"


@dataclass(frozen=True)
class TableSpec:
    """One session STAR file: its declaration and which records make its rows."""

    file: str
    star: SessionStar
    wanted: tuple[str, ...]  # steps a movie must have succeeded at
    accepted: bool = False  # only the micrographs curation accepts


def session_specs(pipeline: Pipeline) -> list[TableSpec]:
    """The session STAR files of ``pipeline``, in the order the full rebuild writes them."""
    specs = [
        TableSpec(s.session_star.file, s.session_star, (s.name, *pipeline.ancestors(s.name)))
        for s in pipeline
        if s.session_star is not None
    ]
    if accepted_table(pipeline):
        ctf = pipeline.owner_of("defocus_u")
        assert ctf is not None and ctf.session_star is not None
        wanted = (ctf.name, *pipeline.ancestors(ctf.name))
        specs.append(TableSpec(ACCEPTED_STAR, ctf.session_star, wanted, accepted=True))
    return specs


def signature(pipeline: Pipeline, specs: list[TableSpec], config: Config) -> str:
    """What the rows of every part depend on besides the batch's own files."""
    decl = [
        [s.file, s.star.table, s.star.optics, s.star.merge, s.wanted, s.accepted]
        + [star_columns(pipeline, s.star)]
        for s in specs
    ]
    data = [VERSION, decl, float(config["motioncor"]["bin_factor"]), config.get("curation", {})]
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def parts_dir(out_dir: Path) -> Path:
    return Path(out_dir) / ".emotf" / "star_parts"


def spec_columns(pipeline: Pipeline, spec: TableSpec) -> tuple[list[str], int | None]:
    """Columns of a (not ``merge``) session file and where ``rlnOpticsGroup`` is."""
    columns = [column for _name, column in star_columns(pipeline, spec.star)]
    if not spec.star.optics:
        return columns, None
    at = min(len(columns), 1 if spec.star.table == "movies" else 2)
    columns.insert(at, GROUP)
    return columns, at


def _table_rows(
    spec: TableSpec, pipeline: Pipeline, records: list[dict[str, Any]], config: Config
) -> tuple[dict[str, Any], list[str]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        if all((r.get("steps") or {}).get(s) is True for s in spec.wanted):
            rows[r["key"]] = r
    if spec.accepted:
        accepted, _rejected = curate(list(rows.values()), config.get("curation", {}))
        rows = {r["key"]: r for r in accepted}
    binning = float(config["motioncor"]["bin_factor"])
    fields = star_columns(pipeline, spec.star)
    columns, at = spec_columns(pipeline, spec)
    keys: list[Any] = []
    lines: list[str] = []
    owners: list[str] = []
    for key, r in rows.items():
        cells = [cell(r.get(name, "")) for name, _column in fields]
        if at is not None:
            group = list(optics_key(r, binning))
            if group not in keys:
                keys.append(group)
            cells.insert(at, str(keys.index(group) + 1))
        lines.append("\t".join(cells) + "\n")
        owners.append(key)
    optics = [[str(i), k, None] for i, k in enumerate(keys, 1)]
    return {"columns": columns, "group_col": at, "optics": optics}, _with_runs(lines, owners)


def _merge_rows(
    spec: TableSpec, out_dir: Path, batch: str, owner_of: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    empty: dict[str, Any] = {"columns": [], "group_col": None, "optics": []}
    path = out_dir / str(spec.star.merge).format(batch=batch)
    if not path.is_file():
        return empty, []
    loops = read_loops(path)
    table = loops.get(spec.star.table)
    if table is None or not table.rows:
        return empty, []
    meta: dict[str, Any] = {"columns": table.columns, "group_col": None, "optics": []}
    group = loops.get("optics")
    if group is not None and GROUP in table.columns and GROUP in group.columns:
        meta["group_col"] = table.columns.index(GROUP)
        params = [c for c in group.columns if c not in (GROUP, "rlnOpticsGroupName")]
        for row in group.rows:
            values = dict(zip(group.columns, row, strict=False))
            key = [value_of(values.get(c, "")) for c in params]
            meta["optics"].append([values.get(GROUP, ""), key, values])
    name = table.columns.index("rlnMicrographName") if "rlnMicrographName" in table.columns else -1
    owners = [owner_of.get(value_of(r[name]), "") if name >= 0 else "" for r in table.rows]
    return meta, _with_runs(["\t".join(r) + "\n" for r in table.rows], owners)


def _with_runs(lines: list[str], owners: list[str]) -> list[str]:
    """``lines`` preceded by one line of JSON: [[movie key, rows], ...] runs."""
    runs: list[list[Any]] = []
    for key in owners:
        if runs and runs[-1][0] == key:
            runs[-1][1] += 1
        else:
            runs.append([key, 1])
    return [json.dumps(runs) + "\n", *lines]


def build_part(
    out_dir: Path,
    batch: str,
    pipeline: Pipeline,
    specs: list[TableSpec],
    config: Config,
    sig: str,
    source: list[int],
) -> dict[str, Any]:
    """Write the part of a finished batch (from its ``Results/<batch>.json``)."""
    records = [
        upgrade_record(m) for m in read_json(out_dir / "Results" / f"{batch}.json")["movies"]
    ]
    by_micrograph = {str(r["micrograph"]): r["key"] for r in records if r.get("micrograph")}
    folder = parts_dir(out_dir) / batch
    tables: dict[str, Any] = {}
    for spec in specs:
        if spec.star.merge:
            meta, lines = _merge_rows(spec, out_dir, batch, by_micrograph)
        else:
            meta, lines = _table_rows(spec, pipeline, records, config)
        atomic_write_text(folder / f"{spec.file}.rows", "".join(lines))
        meta["rows"] = len(lines) - 1 if lines else 0
        tables[spec.file] = meta
    part = {"version": VERSION, "sig": sig, "source": source, "tables": tables}
    atomic_write_json(folder / META, part)
    return part


def read_part(out_dir: Path, batch: str) -> dict[str, Any] | None:
    try:
        part = read_json(parts_dir(out_dir) / batch / META)
    except (OSError, ValueError):
        return None
    return part if isinstance(part, dict) and part.get("version") == VERSION else None


def _rows_file(out_dir: Path, batch: str, file: str) -> Path:
    return parts_dir(out_dir) / batch / f"{file}.rows"


def kept_lines(out_dir: Path, batch: str, file: str, drop: set[str]) -> Iterator[str]:
    """The rows of a part, without those of movies in ``drop``."""
    with open(_rows_file(out_dir, batch, file), encoding="utf-8") as handle:
        first = handle.readline()
        runs = json.loads(first) if first else []
        for key, count in runs:
            for _i in range(count):
                line = handle.readline()
                if key not in drop:
                    yield line


def used_groups(
    out_dir: Path, batch: str, file: str, meta: dict[str, Any], drop: set[str]
) -> list[str]:
    """The part's optics group cells in order of first use by its kept rows."""
    at = meta["group_col"]
    if at is None:
        return []
    if not drop:
        return [entry[0] for entry in meta["optics"]]
    seen: dict[str, None] = {}
    for line in kept_lines(out_dir, batch, file, drop):
        seen.setdefault(line.rstrip("\n").split("\t")[at], None)
    return list(seen)


def copy_rows(
    out: IO[str],
    out_dir: Path,
    batch: str,
    file: str,
    meta: dict[str, Any],
    mapping: dict[str, str],
    columns: list[str],
    drop: set[str],
) -> int:
    """Write the part's kept rows to ``out``, optics groups renumbered by ``mapping`` and
    cells placed under the session file's ``columns``."""
    at = meta["group_col"]
    same = meta["columns"] == columns
    identity = at is None or all(mapping.get(e[0], e[0]) == e[0] for e in meta["optics"])
    if same and identity and not drop:
        with open(_rows_file(out_dir, batch, file), encoding="utf-8") as handle:
            handle.readline()
            shutil.copyfileobj(handle, out)
        return int(meta["rows"])
    where = [meta["columns"].index(c) if c in meta["columns"] else -1 for c in columns]
    rows = 0
    for line in kept_lines(out_dir, batch, file, drop):
        rows += 1
        cells = line.rstrip("\n").split("\t")
        if at is not None:
            cells[at] = mapping.get(cells[at], cells[at])
        if not same:
            cells = [cells[i] if 0 <= i < len(cells) else "<NA>" for i in where]
        out.write("\t".join(cells) + "\n")
    return rows
