"""Per-batch parts of the session STAR files.

A finished batch gets one file ``.emotf/star_parts/<batch>.part``: a first line of JSON
saying, for every session STAR file, its columns, the position of ``rlnOpticsGroup``, the
batch's optics groups (with the parameters that decide the session-wide number) and where
its section is; then per file a section: a line of JSON (which movie each run of rows
belongs to) and the batch's rows, rendered as they appear in the session file except the
optics group cell, which holds the batch's own group. It is written atomically. Rows come
from ``Results/<batch>.json`` (as the full rebuild of :mod:`emotf.outputs` selects them)
or, for ``merge`` tables such as ``particles.star``, from the batch's own STAR file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..config import Config
from ..curation import curate
from ..fsutil import atomic_write_text, read_json
from ..pipeline import Pipeline, SessionStar, upgrade_record
from ..pipeline.snake import ACCEPTED_STAR, accepted_table
from .star import optics_key, star_columns
from .star_text import cell, read_loops, unquote, value_of

VERSION = 2
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
    owners = [owner_of.get(unquote(r[name]), "") if name >= 0 else "" for r in table.rows]
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
    """Write the part of a finished batch (from its ``Results/<batch>.json``): one file,
    a line of JSON (what each table holds and where) and then the tables' rows."""
    records = [
        upgrade_record(m) for m in read_json(out_dir / "Results" / f"{batch}.json")["movies"]
    ]
    by_micrograph = {str(r["micrograph"]): r["key"] for r in records if r.get("micrograph")}
    tables: dict[str, Any] = {}
    sections: list[str] = []
    offset = 0
    for spec in specs:
        if spec.star.merge:
            meta, lines = _merge_rows(spec, out_dir, batch, by_micrograph)
        else:
            meta, lines = _table_rows(spec, pipeline, records, config)
        section = "".join(lines) or "[]\n"
        size = len(section.encode("utf-8"))
        meta.update(rows=max(0, len(lines) - 1), offset=offset, size=size)
        offset += size
        sections.append(section)
        tables[spec.file] = meta
    part = {"version": VERSION, "sig": sig, "source": source, "tables": tables}
    head = json.dumps(part) + "\n"
    atomic_write_text(part_path(out_dir, batch), head + "".join(sections))
    return {**part, "body": len(head.encode("utf-8"))}


def part_path(out_dir: Path, batch: str) -> Path:
    return parts_dir(out_dir) / f"{batch}.part"


def read_part(out_dir: Path, batch: str) -> dict[str, Any] | None:
    """What a batch's part holds (its first line); None when missing or unreadable."""
    try:
        with open(part_path(out_dir, batch), "rb") as handle:
            head = handle.readline()
        part = json.loads(head)
    except (OSError, ValueError):
        return None
    if not isinstance(part, dict) or part.get("version") != VERSION:
        return None
    return {**part, "body": len(head)}


def _section(out_dir: Path, batch: str, part: dict[str, Any], file: str) -> tuple[Any, str]:
    """(movie runs, rows text) of one table of a part."""
    meta = part["tables"][file]
    with open(part_path(out_dir, batch), "rb") as handle:
        handle.seek(part["body"] + meta["offset"])
        text = handle.read(meta["size"]).decode("utf-8")
    first, _newline, rows = text.partition("\n")
    return json.loads(first), rows


def kept_lines(
    out_dir: Path, batch: str, part: dict[str, Any], file: str, drop: set[str]
) -> Iterator[str]:
    """The rows of a part's table, without those of movies in ``drop``."""
    runs, rows = _section(out_dir, batch, part, file)
    lines = iter(rows.splitlines(keepends=True))
    for key, count in runs:
        for _i in range(count):
            line = next(lines)
            if key not in drop:
                yield line


def used_groups(
    out_dir: Path, batch: str, part: dict[str, Any], file: str, drop: set[str]
) -> list[str]:
    """The table's optics group cells in order of first use by its kept rows."""
    meta = part["tables"][file]
    at = meta["group_col"]
    if at is None:
        return []
    if not drop:
        return [entry[0] for entry in meta["optics"]]
    seen: dict[str, None] = {}
    for line in kept_lines(out_dir, batch, part, file, drop):
        seen.setdefault(line.rstrip("\n").split("\t")[at], None)
    return list(seen)


def copy_rows(
    out: IO[str],
    out_dir: Path,
    batch: str,
    part: dict[str, Any],
    file: str,
    mapping: dict[str, str],
    columns: list[str],
    drop: set[str],
) -> int:
    """Write the table's kept rows to ``out``, optics groups renumbered by ``mapping`` and
    cells placed under the session file's ``columns``; returns how many."""
    meta = part["tables"][file]
    at = meta["group_col"]
    same = meta["columns"] == columns
    identity = at is None or all(mapping.get(e[0], e[0]) == e[0] for e in meta["optics"])
    if same and identity and not drop:
        out.write(_section(out_dir, batch, part, file)[1])
        return int(meta["rows"])
    where = [meta["columns"].index(c) if c in meta["columns"] else -1 for c in columns]
    rows = 0
    for line in kept_lines(out_dir, batch, part, file, drop):
        rows += 1
        cells = line.rstrip("\n").split("\t")
        if at is not None:
            cells[at] = mapping.get(cells[at], cells[at])
        if not same:
            cells = [cells[i] if 0 <= i < len(cells) else "<NA>" for i in where]
        out.write("\t".join(cells) + "\n")
    return rows
