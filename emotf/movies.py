"""Cheap integrity checks of movie files before any program reads them.

A corrupt, truncated, empty or unreadable movie must end as a per-movie failure with a
reason, never crash a batch. ``probe_movie`` reads headers (and the last TIFF page) only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import tifffile

MOVIE_FORMATS = {".tiff": "tiff", ".tif": "tiff", ".mrc": "mrc", ".mrcs": "mrc", ".eer": "eer"}


class MovieError(ValueError):
    """A movie file cannot be processed; the message is the failure reason shown to users."""


@dataclass(frozen=True)
class MovieInfo:
    format: str
    n_frames: int
    ny: int
    nx: int


def movie_format(path: Path) -> str:
    fmt = MOVIE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise MovieError(f"unsupported movie extension {Path(path).suffix!r}")
    return fmt


def _probe_tiff(path: Path, eer: bool) -> MovieInfo:
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            n = len(pages)
            if n == 0:
                raise MovieError("TIFF has no frames")
            first = pages.first
            ny, nx = int(first.shape[-2]), int(first.shape[-1])
            if not eer:
                last = pages[n - 1]
                data = last.asarray()
                if data.shape[-2:] != (ny, nx):
                    raise MovieError(f"TIFF frame {n} has shape {data.shape}, expected {(ny, nx)}")
    except MovieError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise MovieError(f"corrupt or truncated TIFF: {exc}") from exc
    return MovieInfo("eer" if eer else "tiff", n, ny, nx)


def _probe_mrc(path: Path) -> MovieInfo:
    try:
        with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
            header = mrc.header
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode = int(header.mode)
            extended = int(header.nsymbt)
    except Exception as exc:
        raise MovieError(f"corrupt MRC header: {exc}") from exc
    dtypes = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}
    if mode not in dtypes or min(nx, ny, nz) <= 0:
        raise MovieError(f"corrupt MRC header: mode {mode}, size {nx}x{ny}x{nz}")
    expected = 1024 + extended + nx * ny * nz * np.dtype(dtypes[mode]).itemsize
    actual = os.path.getsize(path)
    if actual < expected:
        raise MovieError(f"truncated MRC: {actual} bytes, header implies {expected}")
    return MovieInfo("mrc", nz, ny, nx)


def probe_movie(path: Path) -> MovieInfo:
    """Return the movie's format and dimensions or raise MovieError with the reason."""
    path = Path(path)
    fmt = movie_format(path)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MovieError(f"cannot read movie: {exc.strerror or exc}") from exc
    if size == 0:
        raise MovieError("empty movie file (0 bytes)")
    if fmt == "mrc":
        return _probe_mrc(path)
    return _probe_tiff(path, eer=fmt == "eer")
