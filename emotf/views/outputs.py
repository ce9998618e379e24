"""Session-wide RELION STAR files, one per step that declares a ``session_star``, merged
from every finished batch's results (or, for ``merge`` tables such as ``particles.star``,
concatenated from the per-batch STAR files), plus the curated micrographs.

:func:`write_session_stars` keeps them up to date batch by batch (:mod:`emotf.views`: the
new batch's rows are appended, the cost does not grow with the session).
:func:`write_session_stars_full` is the full rebuild from every record, the reference the
incremental files are tested against. ``python -m emotf.outputs [--rebuild] FOLDER``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..curation import curate
from ..fsutil import atomic_write_star, read_json
from ..pipeline import Pipeline, SessionStar, upgrade_record
from ..pipeline.snake import ACCEPTED_STAR, accepted_table
from ..session.batches import list_batches
from .made import MadeFiles
from .session_stars import update_session_stars
from .star import write_table_star

if TYPE_CHECKING:  # the full rebuild imports them when it runs; an update needs neither
    import pandas as pd

    from ..session.progress import ProgressReader

log = logging.getLogger(__name__)


def _rows(records: list[dict[str, Any]], pipeline: Pipeline, step: str) -> dict[str, Any]:
    """Records of the movies that succeeded at ``step`` and at every step it needs."""
    wanted = [step, *pipeline.ancestors(step)]
    return {
        r["key"]: r for r in records if all((r.get("steps") or {}).get(s) is True for s in wanted)
    }


def merge_batch_stars(
    out_dir: Path,
    star: SessionStar,
    batches: list[str],
    superseded: dict[str, set[str]] | None = None,
) -> int:
    """Concatenate the per-batch tables ``star.merge``; optics groups are renumbered by
    their parameters. Rows of the micrographs in ``superseded[batch]`` (movies a later
    batch holds again) are left out. Returns the number of rows."""
    import pandas as pd

    from ..parsers.relion import read_star

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
        gone = (superseded or {}).get(batch)
        if gone and "rlnMicrographName" in table:
            table = table[~table["rlnMicrographName"].isin(gone)].reset_index(drop=True)
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


def finished_records(
    out_dir: Path, reader: ProgressReader
) -> tuple[list[dict[str, Any]], list[str], dict[str, set[str]]]:
    """Every finished batch's records of the movies it owns, the finished batches, and per
    batch the micrographs of the movies a later batch holds again."""
    owner = reader.owners()
    records: list[dict[str, Any]] = []
    finished: list[str] = []
    superseded: dict[str, set[str]] = {}
    for batch in list_batches(out_dir):
        try:
            movies = read_json(out_dir / "Results" / f"{batch}.json")["movies"]
        except (OSError, ValueError):
            continue  # running, or being written right now
        finished.append(batch)
        for m in movies:
            if owner.get(m["key"]) == batch:
                records.append(upgrade_record(m))
            elif m.get("micrograph"):
                superseded.setdefault(batch, set()).add(str(m["micrograph"]))
    return records, finished, superseded


def write_session_stars(
    out_dir: Path,
    config: Config,
    records: list[dict[str, Any]] | None = None,
    full: bool = False,
    rebuild: bool = False,
) -> dict[str, int]:
    """Bring the session STAR files of the folder's pipeline up to date; rows per file.
    Incremental (:mod:`emotf.views`); with ``rebuild`` its parts are made again from every
    record; with ``full`` (or ``records``) the reference full rebuild is written instead."""
    if full or records is not None:
        return write_session_stars_full(out_dir, config, records)
    return update_session_stars(Path(out_dir), config, rebuild=rebuild)


def write_session_stars_full(
    out_dir: Path, config: Config, records: list[dict[str, Any]] | None = None
) -> dict[str, int]:
    """(Re)write the session STAR files from every record (reading all ``Results/``)."""
    from ..session.progress import ProgressReader

    out_dir = Path(out_dir)
    reader = ProgressReader(out_dir)
    pipeline = reader.pipeline
    owned, finished, superseded = finished_records(out_dir, reader)
    if records is None:
        records = owned
    acq = config["acquisition"]
    binning = float(config["motioncor"]["bin_factor"])
    written: dict[str, int] = {}
    made = MadeFiles(out_dir)
    for step in pipeline:
        star = step.session_star
        if star is None or not made.may_write(star.file):
            continue
        if star.merge:
            written[star.file] = merge_batch_stars(out_dir, star, finished, superseded)
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
    """``python -m emotf.outputs [--rebuild | --full] FOLDER``: update a folder's session
    STAR files and its report."""
    import argparse

    from ..config import read_folder_config

    parser = argparse.ArgumentParser(prog="python -m emotf.outputs", description=main.__doc__)
    parser.add_argument("folder", type=Path, help="processing folder (with config.yaml)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--rebuild", action="store_true", help="make every per-batch part again, then assemble"
    )
    how.add_argument(
        "--full", action="store_true", help="the reference full rebuild from every record"
    )
    parser.add_argument("--no-report", action="store_true", help="STAR files only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    folder = args.folder
    config = read_folder_config(folder)
    status = 0
    try:
        write_session_stars(folder, config, full=args.full, rebuild=args.rebuild)
    except Exception:  # the report is still made; the exit code says the files were not
        log.exception("session STAR files not updated")
        status = 1
    if args.no_report:
        return status
    from .report import write_report  # matplotlib: imported only when the report is made

    try:
        write_report(folder, config)
    except Exception:  # the STAR files are written; a report problem is only logged
        log.exception("report.html not updated")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
