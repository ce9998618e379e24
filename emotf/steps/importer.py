"""Import step: check each movie, read its EPU metadata, link it into ``Movies/``.

Outputs ``Import/<batch>/import.json`` and a RELION ``movies.star`` of the good movies.
Metadata come from the movie's EPU XML; values EPU does not record (Cs, amplitude contrast,
gain) and fallbacks for movies without XML come from ``config['acquisition']``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..batches import read_manifest
from ..epu import MetadataError, grid_square_of, movie_xml_path, parse_movie_xml
from ..movies import MovieError, probe_movie
from ..star import write_movies_star
from .base import StepContext, StepOutput, start_output

log = logging.getLogger(__name__)

MOVIE_LINK_DIR = "Movies"


def _metadata(source: Path, fmt: str, n_frames: int, acquisition: dict[str, Any]) -> dict[str, Any]:
    xml = movie_xml_path(source)
    if xml.exists():
        meta = parse_movie_xml(xml)
        if fmt != "eer" and meta.n_fractions != n_frames:
            raise MovieError(
                f"movie has {n_frames} frames but its EPU XML says {meta.n_fractions} "
                "(truncated or incomplete file)"
            )
        dose_per_frame = meta.total_dose / n_frames if n_frames else meta.dose_per_frame
        return {
            "pixel_size": meta.pixel_size,
            "voltage": meta.voltage,
            "dose_per_frame": dose_per_frame,
            "total_dose": meta.total_dose,
            "applied_defocus": meta.applied_defocus,
            "timestamp": meta.timestamp,
            "metadata": "xml",
        }
    if acquisition.get("pixel_size") is None or acquisition.get("dose_per_frame") is None:
        raise MetadataError(
            f"missing metadata: no EPU XML {xml.name} and no acquisition.pixel_size/"
            "dose_per_frame fallback configured"
        )
    return {
        "pixel_size": float(acquisition["pixel_size"]),
        "voltage": float(acquisition["voltage"]),
        "dose_per_frame": float(acquisition["dose_per_frame"]),
        "total_dose": float(acquisition["dose_per_frame"]) * n_frames,
        "applied_defocus": None,
        "timestamp": None,
        "metadata": "config",
    }


def _link(workdir: Path, key: str, source: Path) -> str:
    link = Path(MOVIE_LINK_DIR) / key
    target = workdir / link
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if os.path.realpath(target) == os.path.realpath(source):
            return link.as_posix()
        target.unlink()  # a stale link we made earlier; never a user file (Movies/ is ours)
    os.symlink(os.path.abspath(source), target)
    return link.as_posix()


def import_movie(ctx: StepContext, out: StepOutput, key: str, source: Path) -> None:
    try:
        info = probe_movie(source)
        meta = _metadata(source, info.format, info.n_frames, ctx.config["acquisition"])
    except (MovieError, MetadataError) as exc:
        out.fail(key, str(exc))
        return
    link = _link(ctx.workdir, key, source)
    out.succeed(
        key,
        movie=link,
        source=os.fspath(source),
        format=info.format,
        n_frames=info.n_frames,
        shape=[info.ny, info.nx],
        grid_square=grid_square_of(key),
        **meta,
    )


def run(ctx: StepContext) -> StepOutput:
    manifest = read_manifest(ctx.inputs["manifest"])
    out = start_output(ctx, "import", "emotf")
    for movie in manifest.movies:
        import_movie(ctx, out, movie.key, Path(movie.path))
        out.movies[movie.key]["found"] = movie.found
    write_movies_star(ctx.outputs["star"], out.ok(), ctx.config["acquisition"])
    out.write(ctx.outputs["json"])
    return out
