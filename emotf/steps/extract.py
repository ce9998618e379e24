"""Particle extraction step (the workflow's ``extract`` rule): ``relion_preprocess --extract``.

Input: the batch's micrographs that have a CTF fit and picks. Writes the particle stacks
under ``Extract/<batch>/`` and ``Extract/<batch>/particles.star`` (RELION, with optics), and
``Extract/<batch>/extract.json``. A movie with no picks, or whose picks all fall off the
micrograph, fails this (optional) step with that reason; the movie stays done.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..parsers.relion import read_star
from ..views.star import write_micrographs_star
from .base import (
    Record,
    StepContext,
    StepError,
    StepOutput,
    error_tail,
    load_output,
    merged_ok,
    run_tool,
    start_output,
)

log = logging.getLogger(__name__)

TARGET_DIAMETER_PX = 64  # particle diameter in the rescaled box (default rescaling)
COORD_SUFFIX = "_autopick.star"  # what the picking step writes beside each micrograph path


def step_dir(batch: str) -> Path:
    return Path("Extract") / batch


def _even(value: float) -> int:
    return max(16, 2 * math.ceil(value / 2))


def boxes(config: dict[str, Any], pixel_size: float) -> tuple[int, int | None]:
    """(box, rescaled box or None) in pixels of the micrograph of ``pixel_size`` Å."""
    ex = config["extract"]
    diameter_px = float(config["cryolo"]["diameter_max"]) / pixel_size
    box = int(ex["box_size"] or _even(1.5 * diameter_px))
    rescaled = ex["rescaled_box"]
    if rescaled is None and diameter_px > TARGET_DIAMETER_PX:
        rescaled = _even(box * TARGET_DIAMETER_PX / diameter_px)
    return box, (int(rescaled) if rescaled and int(rescaled) != box else None)


def relion_argv(ctx: StepContext, star: Path, box: int, rescaled: int | None) -> list[str]:
    ex = ctx.config["extract"]
    folder = step_dir(ctx.batch)
    argv = [
        ex.get("executable") or "relion_preprocess",
        "--i",
        str(star),
        "--coord_dir",
        f"AutoPick/{ctx.batch}/",
        "--coord_suffix",
        COORD_SUFFIX,
        "--part_star",
        str(folder / "particles.star"),
        "--part_dir",
        f"{folder}/",
        "--extract",
        "--extract_size",
        str(box),
    ]
    if rescaled:
        argv += ["--scale", str(rescaled)]
    if ex["normalise"]:
        argv += ["--norm", "--bg_radius", str(int(0.375 * (rescaled or box)))]
    if ex["invert_contrast"]:
        argv.append("--invert_contrast")
    return argv


def _per_micrograph(star: Path) -> dict[str, int]:
    table = read_star(star).get("particles")
    if not isinstance(table, pd.DataFrame) or "rlnMicrographName" not in table:
        return {}
    return {str(k): int(v) for k, v in table["rlnMicrographName"].value_counts().items()}


def _extract(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    folder = step_dir(ctx.batch)
    first = next(iter(rows.values()))
    pixel = float(first["pixel_size"]) * float(first.get("binning", 1.0))
    box, rescaled = boxes(ctx.config, pixel)
    star = folder / "micrographs_in.star"
    write_micrographs_star(
        star,
        rows,
        ctx.config["acquisition"],
        with_ctf=True,
        binning=float(ctx.config["motioncor"]["bin_factor"]),
    )
    proc = run_tool(relion_argv(ctx, star, box, rescaled), folder / "relion_preprocess.log")
    particles = ctx.outputs["star"]
    if proc.returncode != 0 or not particles.is_file():
        raise StepError(f"relion_preprocess failed: {error_tail(proc)}")
    found = _per_micrograph(particles)
    size = rescaled or box
    for key, row in rows.items():
        n = found.get(row["micrograph"], 0)
        if n == 0:
            out.fail(
                key,
                f"no particle could be extracted ({row['particles']} picks, box "
                f"{box} px: all too close to the edge?)",
            )
            continue
        out.succeed(
            key,
            particles_extracted=n,
            particles_star=particles.as_posix(),
            particle_stack=(folder / Path(row["micrograph"]).with_suffix(".mrcs")).as_posix(),
            extract_box=size,
            extract_pixel_size=round(pixel * box / size, 5),
        )


def _empty_star(path: Path) -> None:
    """A valid particles STAR with no rows (RELION writes none when nothing was extracted)."""
    from ..fsutil import atomic_write_star

    atomic_write_star(path, {"particles": pd.DataFrame({"rlnMicrographName": []})})


def run(ctx: StepContext) -> StepOutput:
    backend = ctx.config["extract"].get("backend", "relion")
    out = start_output(ctx, "extract", backend)
    step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
    rows = merged_ok(
        *(
            load_output(ctx.inputs[name])
            for name in ("import_json", "motioncor_json", "ctffind_json", "picking_json")
        )
    )
    picked = {k: r for k, r in rows.items() if int(r.get("particles") or 0) > 0}
    for key in rows.keys() - picked.keys():
        out.fail(key, "no particles picked: nothing to extract")
    if picked and backend == "recorded":  # benchmarks only
        from .recorded import run_extract as run_recorded

        run_recorded(ctx, out, picked)
    elif picked:
        try:
            _extract(ctx, out, picked)
        except StepError as exc:  # an optional step: its movies fail, the batch goes on
            for key in picked:
                out.fail(key, str(exc))
    if not ctx.outputs["star"].is_file():
        _empty_star(ctx.outputs["star"])
    out.write(ctx.outputs["json"])
    return out
