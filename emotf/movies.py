"""Cheap integrity checks of movie files before any program reads them.

A corrupt, truncated, empty or unreadable movie must end as a per-movie failure with a
reason, never crash a batch. ``probe_movie`` reads headers (and the last TIFF page) only.
For EER (Falcon 4/4i) ``n_frames`` is the number of raw EER frames (TIFF pages).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _next_ifd(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> int | None:
    """Offset of the IFD after ``page`` (0: the chain ends there), None if cut off."""
    big = tif.is_bigtiff
    count_fmt, entry, next_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    fh = tif.filehandle
    fh.seek(page.offset)
    raw = fh.read(struct.calcsize(count_fmt))
    if len(raw) < struct.calcsize(count_fmt):
        return None
    (count,) = struct.unpack(tif.byteorder + count_fmt, raw)
    fh.seek(page.offset + len(raw) + count * entry)
    raw = fh.read(struct.calcsize(next_fmt))
    if len(raw) < struct.calcsize(next_fmt):
        return None
    return int(struct.unpack(tif.byteorder + next_fmt, raw)[0])


def _check_eer(tif: tifffile.TiffFile, n: int, size: int) -> None:
    """EER: the last frame's strip lies inside the file and the page chain ends cleanly.

    A partly copied EER loses its last pages: tifffile then stops early without an error,
    so the frame count alone cannot show it; the last IFD still points to a next page.
    """
    last = tif.pages[n - 1]
    if not isinstance(last, tifffile.TiffPage):
        last = last.aspage()
    end = max(o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=True))
    if end > size:
        raise MovieError(f"truncated EER: frame {n} ends at byte {end}, file has {size}")
    following = _next_ifd(tif, last)
    if following != 0:
        raise MovieError(
            f"truncated EER: {n} frames readable, the file ends before the next frame "
            f"(IFD at {following})"
        )
    last.asarray()  # decodes the last frame: a damaged bit stream fails here


def _probe_tiff(path: Path, eer: bool) -> MovieInfo:
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            n = len(pages)
            if n == 0:
                raise MovieError("TIFF has no frames")
            first = pages.first
            ny, nx = int(first.shape[-2]), int(first.shape[-1])
            if eer:
                _check_eer(tif, n, os.path.getsize(path))
            else:
                last = pages[n - 1]
                data = last.asarray()
                if data.shape[-2:] != (ny, nx):
                    raise MovieError(f"TIFF frame {n} has shape {data.shape}, expected {(ny, nx)}")
    except MovieError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        kind = "EER" if eer else "TIFF"
        raise MovieError(f"corrupt or truncated {kind}: {exc}") from exc
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


def motion_binning(row: Mapping[str, Any], bin_factor: float) -> float:
    """Binning of the motion-corrected micrograph relative to the movie's frames.

    ``motioncor.bin_factor`` is relative to the physical (counting) pixel, so
    super-resolution frames are binned by the super-resolution factor on top (-FtBin 2 /
    RELION --bin_factor 2 for a K3 super-resolution movie and bin_factor 1).
    """
    return float(bin_factor) * int(row.get("super_resolution_factor") or 1)


def eer_grouping(row: Mapping[str, Any], motioncor: Mapping[str, Any]) -> int:
    """Raw EER frames summed per aligned frame (1 for other formats)."""
    return int(motioncor.get("eer_grouping") or 32) if row.get("format") == "eer" else 1


def aligned_frame_row(row: Mapping[str, Any], motioncor: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with the dose per *aligned* frame: for EER the raw-frame dose × the grouping."""
    group = eer_grouping(row, motioncor)
    return {**row, "dose_per_frame": float(row["dose_per_frame"]) * group}
