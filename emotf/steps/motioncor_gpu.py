"""MotionCor2 / MotionCor3 backend of the motion correction step.

The batch's movies are linked as ``movie-000001<suffix>`` into a work folder; MotionCor runs
once for the batch (≥ 1.6 / MC3) or once per movie (≤ 1.5). Outputs are renamed to RELION's
convention (dose-weighted → ``X.mrc``, plain sum → ``X_noDW.mrc``, :func:`rename_to_relion`)
and a RELION motion STAR is written per micrograph, so later steps cannot tell which program ran.

EER movies get ``-InEer`` with ``-FmIntFile`` (:func:`fmint_lines`): ``motioncor.eer_grouping``
raw EER frames are summed into each rendered frame, so MotionCor's shifts and the dose per
frame used for the motion statistics are per rendered frame.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..movies import aligned_frame_row, eer_grouping, motion_binning
from ..parsers.motioncor import find_motion_result
from ..parsers.relion import write_motion_star
from ..records import ParseError
from ..tools import motioncor as mc
from .base import Record, StepContext, StepOutput, error_tail, run_tool
from .motioncor import motion_fields, resolve_gain, step_dir

SUFFIX = {"tiff": ".tiff", "mrc": ".mrc", "eer": ".eer"}


def _fmint_file(ctx: StepContext, row: Record, work: Path) -> Path | None:
    """EER only: the ``-FmIntFile`` for the batch (MotionCor fits its one line to each movie's
    own frame count), ``<raw frames> <group> <dose per raw frame>``."""
    if row["format"] != "eer":
        return None
    group = eer_grouping(row, ctx.config["motioncor"])
    lines = mc.fmint_lines(int(row["n_frames"]), group, float(row["dose_per_frame"]))
    path = work / "fmint.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _frame_row(ctx: StepContext, row: Record) -> Record:
    """``row`` with the frames MotionCor aligns and the dose of each: for EER, ``n // group``
    rendered frames (MotionCor spreads the remainder over the last ones) of ``group`` raw
    frames' dose; otherwise the movie's own (emotf passes ``-Throw 0 -Trunc 0``)."""
    group = eer_grouping(row, ctx.config["motioncor"])
    return {**aligned_frame_row(row, ctx.config["motioncor"]),
            "n_frames": int(row["n_frames"]) // group}  # fmt: skip


def _params(ctx: StepContext, row: Record, fmint: Path | None) -> mc.MotionCorParams:
    c, acq = ctx.config["motioncor"], ctx.config["acquisition"]
    return mc.MotionCorParams(
        pixel_size=float(row["pixel_size"]),
        voltage=float(row["voltage"]),
        dose_per_frame=float(row["dose_per_frame"]),
        cs=float(acq["cs"]),
        amplitude_contrast=float(acq["amplitude_contrast"]),
        patches=(int(c["patches"][0]), int(c["patches"][1])),
        bfactor=float(c["bfactor"]),
        bin_factor=motion_binning(row, c["bin_factor"]),  # -FtBin 2 for super-resolution
        gain=resolve_gain(ctx.config),
        gain_flip=int(acq["gain_flip"]),
        gain_rot=int(acq["gain_rot"]),
        gpu="0",
        fmint_file=fmint,
    )


def _finish(ctx: StepContext, out: StepOutput, key: str, row: Record, work: Path, stem: str,
            log_dir: Path) -> None:  # fmt: skip
    _dw, plain = mc.outputs(work / "out", stem)
    if not plain.is_file():
        out.fail(key, "MotionCor wrote no micrograph (see the motioncor log)")
        return
    frames = _frame_row(ctx, row)
    try:
        result = find_motion_result(log_dir, stem, int(frames["n_frames"]))
    except ParseError as exc:
        out.fail(key, f"MotionCor shifts unreadable: {exc}")
        return
    final = step_dir(ctx.batch) / Path(row["movie"]).with_suffix("")
    mic, nodw = mc.rename_to_relion(work / "out", stem, final)
    star = Path(f"{final}.star")
    general = {
        "rlnImageSizeZ": len(result.shifts),
        "rlnMicrographMovieName": row["movie"],
        "rlnMicrographBinning": motion_binning(row, ctx.config["motioncor"]["bin_factor"]),
        "rlnMicrographOriginalPixelSize": float(row["pixel_size"]),
        "rlnMicrographDoseRate": float(frames["dose_per_frame"]),
        "rlnMicrographPreExposure": 0.0,
        "rlnVoltage": float(row["voltage"]),
        "rlnMicrographStartFrame": 1,
        "rlnMotionModelVersion": 0,
    }
    if row["format"] == "eer":
        general["rlnEERGrouping"] = eer_grouping(row, ctx.config["motioncor"])
        general["rlnEERUpsampling"] = 1
    write_motion_star(star, result, general)
    out.succeed(
        key,
        micrograph=mic.as_posix(),
        micrograph_nodw=(nodw or mic).as_posix(),
        motion_star=star.as_posix(),
        **motion_fields(result, frames, motion_binning(row, ctx.config["motioncor"]["bin_factor"])),
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
    fmint = _fmint_file(ctx, first, work)
    if mc.uses_logdir(program, c["version"]):
        argv = mc.batch_argv(
            exe,
            program,
            first["format"],
            work / "movies",
            SUFFIX[first["format"]],
            work / "out",
            log_dir,
            _params(ctx, first, fmint),
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
            _params(ctx, row, fmint),
        )
        proc = run_tool(argv, log_path)
        _finish(ctx, out, key, row, work, stem, log_dir)
        if not out.movies[key]["ok"] and proc.returncode != 0:
            out.movies[key]["reason"] += f"; {error_tail(proc)}"
