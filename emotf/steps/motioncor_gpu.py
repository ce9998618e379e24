"""MotionCor2 / MotionCor3 backend of the motion correction step.

The batch's movies are linked as ``movie-000001<suffix>`` into a work folder; MotionCor runs
once for the batch (≥ 1.6 / MC3) or once per movie (≤ 1.5). Outputs are renamed to RELION's
convention (dose-weighted → ``X.mrc``, plain sum → ``X_noDW.mrc``) and a RELION motion STAR is
written per micrograph, so later steps cannot tell which program ran.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..parsers.motioncor import find_motion_result
from ..parsers.relion import write_motion_star
from ..records import ParseError
from ..tools import motioncor as mc
from .base import Record, StepContext, StepOutput, error_tail, run_tool
from .motioncor import motion_fields, resolve_gain, step_dir

SUFFIX = {"tiff": ".tiff", "mrc": ".mrc", "eer": ".eer"}


def _params(ctx: StepContext, row: Record) -> mc.MotionCorParams:
    c, acq = ctx.config["motioncor"], ctx.config["acquisition"]
    return mc.MotionCorParams(
        pixel_size=float(row["pixel_size"]),
        voltage=float(row["voltage"]),
        dose_per_frame=float(row["dose_per_frame"]),
        cs=float(acq["cs"]),
        amplitude_contrast=float(acq["amplitude_contrast"]),
        patches=(int(c["patches"][0]), int(c["patches"][1])),
        bfactor=float(c["bfactor"]),
        bin_factor=float(c["bin_factor"]),
        gain=resolve_gain(ctx.config),
        gain_flip=int(acq["gain_flip"]),
        gain_rot=int(acq["gain_rot"]),
        gpu="0",
    )


def _finish(ctx: StepContext, out: StepOutput, key: str, row: Record, work: Path, stem: str,
            log_dir: Path) -> None:  # fmt: skip
    dw, plain = mc.outputs(work / "out", stem)
    if not plain.is_file():
        out.fail(key, "MotionCor wrote no micrograph (see the motioncor log)")
        return
    try:
        result = find_motion_result(log_dir, stem)
    except ParseError as exc:
        out.fail(key, f"MotionCor shifts unreadable: {exc}")
        return
    final = step_dir(ctx.batch) / Path(row["movie"]).with_suffix("")
    final.parent.mkdir(parents=True, exist_ok=True)
    mic, nodw, star = (Path(f"{final}{s}") for s in (".mrc", "_noDW.mrc", ".star"))
    os.replace(dw if dw.is_file() else plain, mic)
    if plain.is_file():
        os.replace(plain, nodw)
    general = {
        "rlnImageSizeZ": len(result.shifts),
        "rlnMicrographMovieName": row["movie"],
        "rlnMicrographBinning": float(ctx.config["motioncor"]["bin_factor"]),
        "rlnMicrographOriginalPixelSize": float(row["pixel_size"]),
        "rlnMicrographDoseRate": float(row["dose_per_frame"]),
        "rlnMicrographPreExposure": 0.0,
        "rlnVoltage": float(row["voltage"]),
        "rlnMicrographStartFrame": 1,
        "rlnMotionModelVersion": 0,
    }
    write_motion_star(star, result, general)
    out.succeed(
        key,
        micrograph=mic.as_posix(),
        micrograph_nodw=(nodw if nodw.is_file() else mic).as_posix(),
        motion_star=star.as_posix(),
        **motion_fields(result, row, float(ctx.config["motioncor"]["bin_factor"])),
    )


def run_motioncor(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    c = ctx.config["motioncor"]
    program = c["backend"]
    exe = c.get("executable") or ("MotionCor3" if program == "motioncor3" else "MotionCor2")
    work = step_dir(ctx.batch) / "motioncor_work"
    log_dir = work / "log"
    for folder in (work / "movies", work / "out", log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    log_path = step_dir(ctx.batch) / "motioncor.log"
    stems: dict[str, str] = {}
    for n, (key, row) in enumerate(rows.items(), start=1):
        stem = f"movie-{n:06d}"
        link = work / "movies" / f"{stem}{SUFFIX[row['format']]}"
        if not link.is_symlink():
            os.symlink(os.path.abspath(row["source"]), link)
        stems[key] = stem
    first = next(iter(rows.values()))
    if mc.uses_logdir(program, c["version"]):
        argv = mc.batch_argv(
            exe,
            program,
            first["format"],
            work / "movies",
            SUFFIX[first["format"]],
            work / "out",
            log_dir,
            _params(ctx, first),
        )
        proc = run_tool(argv, log_path)
        for key, row in rows.items():
            _finish(ctx, out, key, row, work, stems[key], log_dir)
            if not out.movies[key]["ok"] and proc.returncode != 0:
                out.movies[key]["reason"] += f"; {error_tail(proc)}"
        return
    for key, row in rows.items():  # MotionCor2 <= 1.5: one movie per run, -LogFile prefix
        stem = stems[key]
        movie = work / "movies" / f"{stem}{SUFFIX[row['format']]}"
        argv = mc.single_argv(
            exe,
            row["format"],
            movie,
            work / "out" / f"{stem}.mrc",
            log_dir / stem,
            _params(ctx, row),
        )
        proc = run_tool(argv, log_path)
        _finish(ctx, out, key, row, work, stem, log_dir)
        if not out.movies[key]["ok"] and proc.returncode != 0:
            out.movies[key]["reason"] += f"; {error_tail(proc)}"
