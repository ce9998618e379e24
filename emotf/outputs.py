"""Session-wide RELION STAR files, one per step that declares a ``session_star``, merged
from every finished batch's results (or, for ``merge`` tables such as ``particles.star``,
concatenated from the per-batch STAR files), plus the curated micrographs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from .batches import list_batches
from .config import Config
from .curation import curate
from .fsutil import atomic_write_star
from .made import MadeFiles
from .parsers.relion import read_star
from .pipeline import Pipeline, SessionStar
from .pipeline.snake import ACCEPTED_STAR, accepted_table
from .progress import ProgressReader
from .star import write_table_star

log = logging.getLogger(__name__)


def _rows(records: list[dict[str, Any]], pipeline: Pipeline, step: str) -> dict[str, Any]:
    """Records of the movies that succeeded at ``step`` and at every step it needs."""
    wanted = [step, *pipeline.ancestors(step)]
    return {
        r["key"]: r for r in records if all((r.get("steps") or {}).get(s) is True for s in wanted)
    }


def merge_batch_stars(out_dir: Path, star: SessionStar, batches: list[str]) -> int:
    """Concatenate the per-batch tables ``star.merge``; optics groups are renumbered by
    their parameters. Returns the number of rows."""
    optics: list[pd.DataFrame] = []
    tables: list[pd.DataFrame] = []
    for batch in batches:
        path = out_dir / str(star.merge).format(batch=batch)
        if not path.is_file():
            continue
        blocks = read_star(path)
        table = blocks.get(star.table)
        if not isinstance(table, pd.DataFrame) or table.empty:
            continue
        group = blocks.get("optics")
        if isinstance(group, pd.DataFrame) and "rlnOpticsGroup" in table:
            table, group = _renumber(table, group, optics)
            optics.append(group)
        tables.append(table)
    blocks_out: dict[str, Any] = {}
    if optics:
        merged = pd.concat(optics, ignore_index=True).drop_duplicates("rlnOpticsGroup")
        blocks_out["optics"] = merged.sort_values("rlnOpticsGroup").reset_index(drop=True)
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    blocks_out[star.table] = rows
    atomic_write_star(out_dir / star.file, blocks_out)
    return len(rows)


def _renumber(
    table: pd.DataFrame, group: pd.DataFrame, known: list[pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    params = [c for c in group.columns if c not in ("rlnOpticsGroup", "rlnOpticsGroupName")]
    seen = {
        tuple(row[params]): int(row["rlnOpticsGroup"])
        for frame in known
        for _i, row in frame.iterrows()
    }
    mapping: dict[int, int] = {}
    group = group.copy()
    for i, row in group.iterrows():
        key = tuple(row[params])
        number = seen.setdefault(key, len(seen) + 1)
        mapping[int(row["rlnOpticsGroup"])] = number
        group.loc[i, "rlnOpticsGroup"] = number
        group.loc[i, "rlnOpticsGroupName"] = f"opticsGroup{number}"
    table = table.copy()
    table["rlnOpticsGroup"] = table["rlnOpticsGroup"].map(mapping)
    return table, group


def write_session_stars(
    out_dir: Path, config: Config, records: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """(Re)write the session STAR files of the folder's pipeline; return rows per file."""
    out_dir = Path(out_dir)
    reader = ProgressReader(out_dir)
    pipeline = reader.pipeline
    if records is None:
        records = reader.results()
    acq = config["acquisition"]
    binning = float(config["motioncor"]["bin_factor"])
    written: dict[str, int] = {}
    made = MadeFiles(out_dir)
    for step in pipeline:
        star = step.session_star
        if star is None or not made.may_write(star.file):
            continue
        if star.merge:
            written[star.file] = merge_batch_stars(out_dir, star, list_batches(out_dir))
        else:
            rows = _rows(records, pipeline, step.name)
            write_table_star(out_dir / star.file, star, rows, acq, binning, pipeline)
            written[star.file] = len(rows)
        made.wrote(star.file)
    if accepted_table(pipeline) and made.may_write(ACCEPTED_STAR):
        ctf_step = pipeline.owner_of("defocus_u")
        assert ctf_step is not None and ctf_step.session_star is not None
        rows = _rows(records, pipeline, ctf_step.name)
        accepted, _rejected = curate(list(rows.values()), config.get("curation", {}))
        write_table_star(
            out_dir / ACCEPTED_STAR,
            ctf_step.session_star,
            {r["key"]: r for r in accepted},
            acq,
            binning,
            pipeline,
        )
        written[ACCEPTED_STAR] = len(accepted)
        made.wrote(ACCEPTED_STAR)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m emotf.outputs FOLDER``: rewrite a folder's session STAR files and report."""
    import sys

    from .config import read_folder_config
    from .report import write_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    folder = Path((sys.argv[1:] if argv is None else argv)[0])
    config = read_folder_config(folder)
    write_session_stars(folder, config)
    try:
        write_report(folder, config)
    except Exception:  # the STAR files are written; a report problem is only logged
        log.exception("report.html not updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
