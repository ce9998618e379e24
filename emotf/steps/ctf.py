"""CTF estimation step: our numpy CTFFIND-style estimator (CPU) or CTFFIND4/5.

Runs on the non-dose-weighted sum. Writes CTFFIND-format ``.txt``/``_avrot.txt`` per
micrograph whatever the backend, plus ``CtfFind/<batch>/ctffind.json`` and
``micrographs_ctf.star``.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..ctf import CtfSearch
from ..ctf.ctffind_format import estimate_file
from ..ctf.model import Optics
from ..parsers.ctffind import ice_ring_density, read_avrot, read_ctffind_txt
from ..records import CtfResult, ParseError
from ..views.star import write_micrographs_star
from .base import Record, StepContext, StepError, StepOutput, load_output, merged_ok, start_output

log = logging.getLogger(__name__)


def step_dir(batch: str) -> Path:
    return Path("CtfFind") / batch


def search_params(config: dict[str, Any], row: Record) -> CtfSearch:
    c = config["ctffind"]
    applied = row.get("applied_defocus")
    return CtfSearch(
        box=int(c["box"]),
        min_res=float(c["min_res"]),
        max_res=float(c["max_res"]),
        min_defocus=float(c["min_defocus"]),
        max_defocus=float(c["max_defocus"]),
        step=float(c["step"]),
        expected_defocus=float(applied) if applied else None,
    )


def optics_of(config: dict[str, Any], row: Record) -> Optics:
    acq = config["acquisition"]
    return Optics(float(row["voltage"]), float(acq["cs"]), float(acq["amplitude_contrast"]))


def out_stem(batch: str, row: Record) -> Path:
    return step_dir(batch) / Path(row["movie"]).with_suffix("")


def ctf_fields(result: CtfResult, stem: Path, image: str) -> dict[str, Any]:
    res = result.resolution if math.isfinite(result.resolution) else 999.0
    fields = {
        "ctf_image": image,
        "ctf_txt": f"{stem}.txt",
        "defocus_u": round(result.defocus_u, 2),
        "defocus_v": round(result.defocus_v, 2),
        "defocus_angle": round(result.angle, 3),
        "defocus": round(0.5 * (result.defocus_u + result.defocus_v), 2),
        "astigmatism": round(abs(result.defocus_u - result.defocus_v), 2),
        "ctf_score": round(result.score, 5),
        "ctf_resolution": round(res, 3),
    }
    if result.thickness is not None:
        fields["thickness"] = result.thickness
    return fields


def _estimate_one(
    args: tuple[str, str, float, Optics, CtfSearch],
) -> tuple[CtfResult, dict[str, float | None]]:
    mic, stem, pixel_size, optics, params = args
    est = estimate_file(Path(mic), Path(stem), pixel_size, optics, params)
    quality = {
        "ctf_uncertainty": None if est.uncertainty is None else round(est.uncertainty, 1),
        "ctf_angle_uncertainty": None
        if est.angle_uncertainty is None
        else round(est.angle_uncertainty, 2),
    }
    return est.result, quality


def _ice(stem: Path) -> float | None:
    try:
        return float(ice_ring_density(read_avrot(Path(f"{stem}_avrot.txt"))[0]))
    except (ParseError, OSError, IndexError):
        return None


def run_emotf(ctx: StepContext, out: StepOutput, rows: dict[str, Record]) -> None:
    jobs = {}
    for key, row in rows.items():
        stem = out_stem(ctx.batch, row)
        stem.parent.mkdir(parents=True, exist_ok=True)
        pixel = float(row["pixel_size"]) * float(row.get("binning", 1.0))
        jobs[key] = (
            row["micrograph_nodw"],
            str(stem),
            pixel,
            optics_of(ctx.config, row),
            search_params(ctx.config, row),
        )
    workers = max(1, min(ctx.threads, len(jobs)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(_estimate_one, job) for key, job in jobs.items()}
        for key, future in futures.items():
            stem = Path(jobs[key][1])
            try:
                result, quality = future.result()
            except Exception as exc:  # one bad micrograph never fails the batch
                out.fail(key, f"CTF estimation failed: {exc}")
                continue
            out.succeed(
                key,
                ice_ring_density=_ice(stem),
                **ctf_fields(result, stem, f"{stem}.ctf:mrc"),
                **quality,
            )


def collect_ctffind(out: StepOutput, key: str, stem: Path) -> None:
    try:
        result = read_ctffind_txt(Path(f"{stem}.txt"))[0]
    except (ParseError, OSError, IndexError) as exc:
        out.fail(key, f"CTFFIND output unreadable: {exc}")
        return
    out.succeed(key, ice_ring_density=_ice(stem), **ctf_fields(result, stem, f"{stem}.ctf:mrc"))


def run(ctx: StepContext) -> StepOutput:
    backend = ctx.config["ctffind"]["backend"]
    out = start_output(ctx, "ctffind", backend)
    rows = merged_ok(
        load_output(ctx.inputs["import_json"]), load_output(ctx.inputs["motioncor_json"])
    )
    step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
    if rows and backend == "emotf":
        run_emotf(ctx, out, rows)
    elif rows and backend == "recorded":  # benchmarks only
        from .recorded import run_ctffind as run_recorded

        run_recorded(ctx, out, rows)
    elif rows:
        from .ctffind_exe import run_ctffind

        run_ctffind(ctx, out, rows)
    if not set(out.movies) <= set(rows):
        raise StepError("CTF step produced records for unknown movies")
    merged = {k: {**rows[k], **v} for k, v in out.ok().items()}
    write_micrographs_star(ctx.outputs["star"], merged, ctx.config["acquisition"], with_ctf=True)
    out.write(ctx.outputs["json"])
    return out
