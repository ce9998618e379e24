"""``extra.raw`` as EMhub 1.0.2 reads it: per-extension file counts, sizes, movie counts.

EMhub's sessions list sums ``extra.raw.files[".ext"].size`` for *Size*, the details page sums
``files[".ext"].count`` for *Files*, and both show ``extra.raw.movies`` as *Images*. The stock
``monitor`` action sends these keys (plus first/last file and movie with their modification
times, and the duration); :func:`raw_info` computes the same from a folder, for ``monitor``,
``transfer`` and ``otf`` alike. Hidden entries (names starting with ``.``: emotf's transfer
temporaries and ledger) are not counted.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..epu import MOVIE_SUFFIXES

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # EMhub's Pretty.now() format, used for extra.updated
UNITS = (("bytes", 0), ("kB", 0), ("MB", 1), ("GB", 2), ("TB", 2), ("PB", 2))


def is_movie(name: str) -> bool:
    return name.endswith(MOVIE_SUFFIXES) or name.endswith(".eer")


def pretty_size(size: int) -> str:
    """Human size with EMhub's units and decimals (``12.3 MB``, ``1 byte``)."""
    if size == 1:
        return "1 byte"
    value, index = float(size), 0
    while value >= 1024 and index < len(UNITS) - 1:
        value /= 1024
        index += 1
    unit, decimals = UNITS[index]
    return f"{value:.{decimals}f} {unit}"


def now_text() -> str:
    return time.strftime(TIME_FORMAT)


@dataclass
class _Span:
    """First and last file (by modification time) of a set, with count and size."""

    count: int = 0
    size: int = 0
    first: tuple[float, str] | None = None
    last: tuple[float, str] | None = None

    def add(self, path: str, mtime: float, size: int) -> None:
        """Ties on the time are broken by the path, so the result does not depend on the
        order of the walk (the stock worker keeps the first one it meets)."""
        self.count += 1
        self.size += size
        if self.first is None or (mtime, path) < self.first:
            self.first = (mtime, path)
        if self.last is None or (mtime, path) > self.last:
            self.last = (mtime, path)

    def merge(self, other: _Span) -> None:
        self.count += other.count
        self.size += other.size
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last


@dataclass
class RawScan:
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    all: _Span = field(default_factory=_Span)
    movies: _Span = field(default_factory=_Span)

    def add(self, path: str, mtime: float, size: int) -> None:
        ext = os.path.splitext(path)[1]
        entry = self.files.setdefault(ext, {"count": 0, "size": 0})
        entry["count"] += 1
        entry["size"] += size
        self.all.add(path, mtime, size)
        if is_movie(os.path.basename(path)):
            self.movies.add(path, mtime, size)

    def merge(self, other: RawScan) -> None:
        """Add the files of another scan (of other files) to this one."""
        for ext, entry in other.files.items():
            mine = self.files.setdefault(ext, {"count": 0, "size": 0})
            mine["count"] += entry["count"]
            mine["size"] += entry["size"]
        self.all.merge(other.all)
        self.movies.merge(other.movies)

    def info(self) -> dict[str, Any]:
        """The ``extra.raw`` keys. Empty values are ``""`` (EMhub stores events in Redis,
        which refuses None)."""
        out: dict[str, Any] = {
            "files": {ext: dict(self.files[ext]) for ext in sorted(self.files)},
            "files_total": self.all.count,
            "size": self.all.size,
            "sizeH": pretty_size(self.all.size),
            "movies": self.movies.count,
        }
        for prefix, span in (("file", self.all), ("movie", self.movies)):
            for end, item in (("first", span.first), ("last", span.last)):
                out[f"{end}_{prefix}"] = item[1] if item else ""
                out[f"{end}_{prefix}_creation"] = item[0] if item else ""  # a timestamp
        first, last = self.all.first, self.all.last
        hours = (last[0] - first[0]) / 3600 if first and last else 0.0
        out["duration"] = f"{hours:0.2f} hours"
        return out


def scan_folder(root: Path) -> RawScan:
    """Walk ``root`` (links not followed); files that vanish during the walk are skipped.
    First/last files are named relative to ``root``, as the stock worker names them."""
    scan = RawScan()
    prefix = str(root).rstrip("/") + "/"
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.debug("cannot list %s: %s", folder, exc.strerror)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    scan.add(entry.path.removeprefix(prefix), st.st_mtime, st.st_size)
            except OSError:
                continue
    return scan


def raw_info(root: Path) -> dict[str, Any]:
    """The ``extra.raw`` statistics of a folder (all zero if it does not exist yet)."""
    return scan_folder(Path(root)).info()


def task_info(info: dict[str, Any]) -> dict[str, Any]:
    """What goes into a task event: everything but the per-extension dict."""
    return {k: v for k, v in info.items() if k != "files"}
