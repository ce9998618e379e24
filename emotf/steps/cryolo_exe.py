"""crYOLO backend of the picking step: one ``cryolo_predict.py`` run per batch.

crYOLO can end with ``IndexError: list index out of range`` when it found nothing: the
micrographs it wrote no pick file for are then done with zero particles, not failed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..parsers.cryolo import find_cryolo_outputs, find_cryolo_picks
from ..parsers.relion import write_coordinates_star
from ..records import ParseError, Pick
from ..tools import cryolo as cy
from .base import Record, StepContext, StepError, StepOutput, error_tail, run_tool
from .picking import coordinates_path, step_dir

log = logging.getLogger(__name__)


def run_cryolo(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    c = ctx.config["cryolo"]
    if not c.get("model"):
        raise StepError("cryolo backend needs cryolo.model (the .h5 weights) in config.yaml")
    work = step_dir(ctx.batch) / "cryolo_work"
    mics = work / "micrographs"
    mics.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for n, (key, row) in enumerate(rows.items(), start=1):
        stem = f"mic-{n:06d}"
        link = mics / f"{stem}.mrc"
        if not link.is_symlink():
            os.symlink(os.path.abspath(row["micrograph"]), link)
        stems[key] = stem
    config = work / "config.json"
    config.write_text(json.dumps(cy.config_json(int(c["box_size"])), indent=1))
    argv = cy.predict_argv(c.get("executable") or "cryolo_predict.py", config, Path(c["model"]),
                           mics, work / "out", float(c["threshold"]), ctx.threads,
                           "0" if ctx.gpus else None)  # fmt: skip
    proc = run_tool(argv, step_dir(ctx.batch) / "cryolo.log")
    crashed_empty = proc.returncode != 0 and cy.zero_pick_crash(f"{proc.stdout}\n{proc.stderr}")
    for key, row in rows.items():
        picks: list[Pick]
        if crashed_empty and find_cryolo_outputs(work / "out", stems[key]) is None:
            log.info("crYOLO found no particle in %s (its zero-pick IndexError)", key)
            picks = []
        else:
            try:
                picks = find_cryolo_picks(work / "out", stems[key], float(c["threshold"]))
            except ParseError as exc:
                out.fail(key, f"{exc}; {error_tail(proc)}")
                continue
        coords = coordinates_path(ctx.batch, row["micrograph"])
        write_coordinates_star(coords, picks)
        out.succeed(key, coordinates=coords.as_posix(), particles=len(picks))
