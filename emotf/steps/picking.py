"""Particle picking step (the workflow's ``cryolo`` rule): crYOLO or RELION's LoG picker.

Writes one RELION coordinate STAR per micrograph (particle centres, pixels of the motion
corrected micrograph), ``AutoPick/<batch>/autopick.star`` (micrograph → coordinates) and
``AutoPick/<batch>/picking.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..parsers.relion import read_coordinates_star, write_coordinates_star
from ..records import ParseError
from ..views.star import write_coordinate_index, write_micrographs_star
from .base import (
    Record,
    StepContext,
    StepOutput,
    error_tail,
    load_output,
    merged_ok,
    run_tool,
    start_output,
)
from .pick_clean import Cleaned, null_threshold, outside_mask, write_cleaned

log = logging.getLogger(__name__)


def step_dir(batch: str) -> Path:
    return Path("AutoPick") / batch


def coordinates_path(batch: str, micrograph: str) -> Path:
    """Where RELION's autopick writes the picks of ``micrograph`` with ``--odir step_dir``."""
    return step_dir(batch) / f"{Path(micrograph).with_suffix('')}_autopick.star"


def _log_argv(ctx: StepContext, star: Path) -> list[str]:
    c = ctx.config["cryolo"]
    return [
        "relion_autopick",
        "--i",
        str(star),
        "--odir",
        f"{step_dir(ctx.batch)}/",
        "--pickname",
        "autopick",
        "--LoG",
        "--LoG_diam_min",
        str(c["diameter_min"]),
        "--LoG_diam_max",
        str(c["diameter_max"]),
        "--shrink",
        "0",
        "--lowpass",
        str(c["lowpass"]),
        "--LoG_adjust_threshold",
        str(c["log_threshold"]),
    ]


def _collect(out: StepOutput, key: str, coords: Path) -> bool:
    """RELION-format picks as they are (the recorded backend's replay)."""
    if not coords.is_file():
        return False
    try:
        picks = read_coordinates_star(coords)
    except ParseError as exc:
        out.fail(key, f"picking output unreadable: {exc}")
        return True
    out.succeed(key, coordinates=coords.as_posix(), particles=len(picks))
    return True


def _null_fom(batch: str, cleaned: Cleaned) -> float:
    """The FOM the micrograph's phase-randomised twin reached (see ``pick_clean``)."""
    if cleaned.null is None:
        return float("-inf")
    coords = coordinates_path(batch, cleaned.null.as_posix())
    try:
        picks = read_coordinates_star(coords) if coords.is_file() else []
    except ParseError:
        picks = []
    return null_threshold([p.score for p in picks if p.score is not None])


def _collect_cleaned(
    out: StepOutput, batch: str, key: str, raw: Path, final: Path, cleaned: Cleaned
) -> bool:
    """RELION's picks on the cleaned micrograph, without those inside the mask or not above
    what the micrograph's null twin reaches."""
    if not raw.is_file():
        return False
    try:
        picks = read_coordinates_star(raw)
    except ParseError as exc:
        out.fail(key, f"picking output unreadable: {exc}")
        return True
    xy = np.array([[p.x, p.y] for p in picks], dtype=float).reshape(-1, 2)
    keep = outside_mask(xy, cleaned.mask)
    threshold = _null_fom(batch, cleaned)
    kept = [
        p
        for p, k in zip(picks, keep, strict=True)
        if k and (p.score is None or p.score > threshold)
    ]
    final.parent.mkdir(parents=True, exist_ok=True)
    write_coordinates_star(final, kept)
    out.succeed(
        key,
        coordinates=final.as_posix(),
        particles=len(kept),
        picks_dropped=len(picks) - len(kept),
        masked_fraction=round(cleaned.masked_fraction, 4),
        fom_threshold=round(threshold, 4) if np.isfinite(threshold) else None,
    )
    return True


def _cleaned(ctx: StepContext, folder: Path, row: Record) -> Cleaned:
    """The micrograph prepared for LoG (see ``pick_clean``); the original when unreadable."""
    source = Path(row["micrograph"])
    try:
        return write_cleaned(source, folder / "clean" / source, diameter_px(ctx, row))
    except (OSError, ValueError) as exc:
        log.warning("picking on the uncleaned micrograph %s: %s", source, exc)
        return Cleaned(source, np.zeros((1, 1), dtype=bool))


def diameter_px(ctx: StepContext, row: Record) -> float:
    c = ctx.config["cryolo"]
    pixel = float(row["pixel_size"]) * float(row.get("binning", 1.0))
    return 0.5 * (float(c["diameter_min"]) + float(c["diameter_max"])) / pixel


def _run_log_group(ctx: StepContext, out: StepOutput, rows: dict[str, Record], tag: str) -> None:
    folder = step_dir(ctx.batch)
    star = folder / f"micrographs_{tag}.star"
    cleaned = {k: _cleaned(ctx, folder, r) for k, r in rows.items()}
    listed = {k: {**r, "micrograph": cleaned[k].path.as_posix()} for k, r in rows.items()}
    twins = {
        f"{k}#null": {**r, "micrograph": c.null.as_posix()}
        for k, r in rows.items()
        if (c := cleaned[k]).null is not None
    }
    write_micrographs_star(
        star,
        {**listed, **twins},
        ctx.config["acquisition"],
        binning=float(ctx.config["motioncor"]["bin_factor"]),
    )
    proc = run_tool(_log_argv(ctx, star), folder / "relion_autopick.log")
    missing = {
        k: r
        for k, r in rows.items()
        if not _collect_cleaned(
            out,
            ctx.batch,
            k,
            coordinates_path(ctx.batch, listed[k]["micrograph"]),
            coordinates_path(ctx.batch, r["micrograph"]),
            cleaned[k],
        )
    }
    if not missing:
        return
    if len(rows) > 1:
        for n, (key, row) in enumerate(missing.items()):
            _run_log_group(ctx, out, {key: row}, f"{tag}_{n}")
        return
    out.fail(next(iter(missing)), f"relion_autopick failed: {error_tail(proc)}")


def run(ctx: StepContext) -> StepOutput:
    backend = ctx.config["cryolo"]["backend"]
    out = start_output(ctx, "picking", backend)
    rows = merged_ok(
        load_output(ctx.inputs["import_json"]), load_output(ctx.inputs["motioncor_json"])
    )
    step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
    if rows and backend == "relion_log":
        _run_log_group(ctx, out, rows, "all")
    elif rows and backend == "recorded":  # benchmarks only
        from .recorded import run_picking as run_recorded

        run_recorded(ctx, out, rows)
    elif rows:
        from .cryolo_exe import run_cryolo

        run_cryolo(ctx, out, rows)
    merged = {k: {**rows[k], **v} for k, v in out.ok().items()}
    write_coordinate_index(ctx.outputs["star"], merged)
    out.write(ctx.outputs["json"])
    return out
