"""Import step: check each movie, read its EPU metadata, link it into ``Movies/``.

Outputs ``Import/<batch>/import.json`` and a RELION ``movies.star`` of the good movies.
Metadata come from the movie's EPU XML; values EPU does not record (Cs, amplitude contrast,
gain) and fallbacks for movies without XML come from ``config['acquisition']``. The frames'
pixel size is decided from the XML and the frame size (K3 super-resolution, see
:func:`emotf.epu.frame_pixel_size`); ``pixel_size_rule`` records which rule decided it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..epu import (
    EpuMetadata,
    MetadataError,
    frame_pixel_size,
    grid_square_of,
    movie_xml_path,
    parse_movie_xml,
)
from ..movies import MovieError, MovieInfo, probe_movie
from ..session.batches import read_manifest
from ..views.star import write_movies_star
from .base import StepContext, StepOutput, start_output

log = logging.getLogger(__name__)

MOVIE_LINK_DIR = "Movies"


def _pixel_fields(meta: EpuMetadata, info: MovieInfo, source: Path) -> dict[str, Any]:
    decided = frame_pixel_size(meta, info.nx, info.ny)
    if decided.warning:
        log.warning("%s: %s", source.name, decided.warning)
    return {
        "pixel_size": decided.pixel_size,
        "pixel_size_xml": meta.pixel_size,
        "pixel_size_rule": decided.rule,
        "pixel_size_warning": decided.warning,
        "super_resolution_factor": decided.super_resolution_factor,
        "xml_super_resolution_factor": meta.super_resolution_factor,
        "detector": meta.detector,
    }


def _metadata(source: Path, info: MovieInfo, acquisition: dict[str, Any]) -> dict[str, Any]:
    """Per-movie metadata. For EER ``n_frames`` counts raw EER frames and ``dose_per_frame``
    is the dose of one raw frame (the motion step groups them, ``eer_grouping``)."""
    fmt, n_frames = info.format, info.n_frames
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
            **_pixel_fields(meta, info, source),
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
        "pixel_size_rule": "config acquisition.pixel_size (no EPU XML)",
        "super_resolution_factor": 1,
        "voltage": float(acquisition["voltage"]),
        "dose_per_frame": float(acquisition["dose_per_frame"]),
        "total_dose": float(acquisition["dose_per_frame"]) * n_frames,
        "applied_defocus": None,
        "timestamp": None,
        "metadata": "config",
    }


class LinkError(MovieError):
    """``Movies/<key>`` cannot be made without touching a file emotf did not make."""


def _link(workdir: Path, key: str, source: Path) -> str:
    """Link ``Movies/<key>`` to the movie. Nothing there is ever deleted or replaced: a
    path that exists and is not that link, or a symlinked folder on the way, is an error."""
    link = Path(MOVIE_LINK_DIR) / key
    target = workdir / link
    for parent in [*reversed(link.parents)][1:]:
        if (workdir / parent).is_symlink():
            raise LinkError(
                f"{parent}/ is a symbolic link; emotf only links movies inside its "
                "own Movies/ folder"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if target.is_symlink() and os.path.realpath(target) == os.path.realpath(source):
            return link.as_posix()
        raise LinkError(f"{link} already exists and is not a link to this movie; left as is")
    os.symlink(os.path.abspath(source), target)
    return link.as_posix()


def import_movie(ctx: StepContext, out: StepOutput, key: str, source: Path) -> None:
    try:
        info = probe_movie(source)
        meta = _metadata(source, info, ctx.config["acquisition"])
        link = _link(ctx.workdir, key, source)
    except (MovieError, MetadataError) as exc:
        out.fail(key, str(exc))
        return
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
