"""Movie detection and batching: turn a growing session folder into batch manifests.

* :class:`MovieScanner` finds movies matching the configured globs and reports each one once,
  when it is complete: unmodified for ``settle_seconds`` and the same size as at the last scan.
  A movie that is a symlink, or whose real path leaves the session folder, is never batched:
  it is logged once and kept in ``MovieScanner.refused`` (key -> reason). Folder listings
  are reused while a folder is unchanged and kept across restarts
  (:mod:`emotf.session.feeder_index`), so a restart lists and stats only the folders that
  changed.
* :class:`Batcher` groups complete movies into manifests of ``size`` movies, or fewer when the
  oldest waiting movie has waited ``tail_seconds`` (or when flushing at the end).
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .batches import Manifest, MovieEntry, assigned_keys, list_batches, write_manifest
from .feeder_index import FEEDER_INDEX, RELIST_SECONDS, FolderIndex

__all__ = ["FEEDER_INDEX", "RELIST_SECONDS", "Batcher", "MovieScanner"]

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    size: int
    mtime: float
    found: float


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class MovieScanner:
    """Report each complete movie under ``session_dir`` exactly once.

    ``index``: the feeder index file (``out_dir / FEEDER_INDEX``): folder listings and the
    sizes of handed-out movies kept across restarts, so the first scan after a restart lists
    and stats only the folders that changed (see :mod:`emotf.session.feeder_index`)."""

    def __init__(
        self,
        session_dir: Path,
        globs: list[str],
        settle_seconds: float,
        known: set[str],
        index: Path | None = None,
    ) -> None:
        self.session_dir = Path(session_dir)
        self._real_dir = os.path.realpath(self.session_dir)
        self.globs = list(globs)
        self.settle = float(settle_seconds)
        self.known = set(known)  # keys already handed out (e.g. in existing manifests)
        self._seen: dict[str, _Seen] = {}
        self.sizes: dict[str, int] = {}  # last size of every movie found (for EMhub raw stats)
        # folder listings reused while a folder is unchanged (and not recent), kept in `index`
        self.folders = FolderIndex(self.session_dir, self.globs, index)
        # movies never batched, with the reason (symlinks; paths leaving the raw folder)
        self.refused: dict[str, str] = {}
        self._real_folders: dict[str, str] = {}  # realpath per folder, during one scan
        self._patterns: dict[str, list[str]] = {}  # folder part of a glob -> name patterns
        for pattern in self.globs:
            head, _, name_pattern = pattern.rpartition("/")
            self._patterns.setdefault(head, []).append(name_pattern)

    def _candidates(self, now: float) -> dict[str, int]:
        """Key of every movie matching the globs -> its size from the index (-1: unknown)."""
        per_folder: dict[str, set[str]] = {}
        for head, names in self._patterns.items():
            for rel in self.folders.folders(head, now):
                per_folder.setdefault(rel, set()).update(names)
        found: dict[str, int] = {}
        for rel, patterns in per_folder.items():
            listing = self.folders.movies(rel, patterns, now)
            if listing is None:
                continue
            prefix = f"{rel}/" if rel else ""
            sizes = listing.sizes or [-1] * len(listing.names)
            for name, size in zip(listing.names, sizes, strict=True):
                key = sys.intern(prefix + name)  # one string per movie in every table
                found[key] = max(found.get(key, -1), size)
        return found

    def _refusal(self, key: str, st: os.stat_result | None) -> str:
        """Why the movie ``key`` must not be processed ("" if it may): a movie that is a
        symlink, or whose real path leaves the session's raw folder (a symlinked folder),
        could bring in data from anywhere the worker can read. ``st``: its ``lstat``."""
        path = self.folders.abspath(key)
        if st is not None and stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)[:200]
            except OSError:
                target = "?"
            return f"is a symbolic link (to {target!r}); copy the movie instead"
        folder, _, name = key.rpartition("/")
        if folder not in self._real_folders:  # one realpath per folder: `name` is no link
            self._real_folders[folder] = os.path.realpath(self.folders.abspath(folder))
        real = os.path.join(self._real_folders[folder], name)
        if not real.startswith(self._real_dir.rstrip("/") + "/"):
            return f"its real path {real[:200]!r} is outside the raw folder"
        return ""

    def _refuse(self, key: str, st: os.stat_result | None) -> bool:
        """True (and a warning, once per movie) if the movie ``key`` is refused."""
        reason = self._refusal(key, st)
        if not reason:
            self.refused.pop(key, None)
            return False
        if self.refused.get(key) != reason:
            log.warning("movie %s refused, not processed: %s", self.session_dir / key, reason)
            self.refused[key] = reason
        self._seen.pop(key, None)
        self.sizes.pop(key, None)
        return True

    def total_seen(self) -> int:
        """Movies found so far, complete or not (including those handed out earlier)."""
        return len(self.known) + sum(1 for k in self._seen if k not in self.known)

    def scan(self, now: float | None = None) -> list[MovieEntry]:
        now = time.time() if now is None else now
        complete: list[MovieEntry] = []
        self._real_folders = {}
        for key, indexed_size in self._candidates(now).items():
            if key in self.known:
                if key not in self.sizes:
                    self.sizes[key] = (
                        indexed_size if indexed_size >= 0 else _size(self.folders.abspath(key))
                    )
                continue
            entry = self._check(key, now)
            if entry is not None:
                complete.append(entry)
        complete.sort(key=lambda m: m.key)
        self.folders.save(self.sizes, self.known, now, changed=bool(complete))
        return complete

    def _check(self, key: str, now: float) -> MovieEntry | None:
        """The movie ``key`` (not handed out yet) if it is complete now."""
        try:
            st: os.stat_result | None = os.lstat(self.folders.abspath(key))
        except OSError:
            st = None
        if self._refuse(key, st):
            return None
        if st is None:
            try:  # the same error again, for the log (or the file appeared meanwhile)
                st = os.stat(self.folders.abspath(key))
            except OSError as exc:
                # Unreadable entries still count: import records the reason as a failure.
                log.warning("cannot stat movie %s: %s", self.session_dir / key, exc)
        size, mtime = (st.st_size, st.st_mtime) if st is not None else (-1, 0.0)
        self.sizes[key] = max(size, 0)
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = seen = _Seen(size, mtime, now)
            settled = now - mtime >= self.settle
        else:
            unchanged = seen.size == size and seen.mtime == mtime
            if not unchanged:
                seen.size, seen.mtime = size, mtime
            settled = unchanged and now - max(mtime, 0.0) >= self.settle
        if not settled:
            return None
        self.known.add(key)
        del self._seen[key]
        return MovieEntry(
            key=key,
            path=os.fspath(self.session_dir / key),
            size=size,
            mtime=mtime,
            found=seen.found,
            stable=now,
        )


class Batcher:
    """Cut complete movies into immutable manifests under ``out_dir/batches``."""

    def __init__(self, out_dir: Path, size: int, tail_seconds: float) -> None:
        self.out_dir = Path(out_dir)
        self.size = int(size)
        self.tail = float(tail_seconds)
        self.pending: list[MovieEntry] = []
        existing = list_batches(self.out_dir)
        self._next = int(existing[-1][1:]) + 1 if existing else 1

    def assigned_keys(self) -> set[str]:
        """Keys of every movie already in a manifest on disk (see batches.assigned_keys)."""
        return assigned_keys(self.out_dir)

    def add(self, movies: list[MovieEntry]) -> None:
        self.pending.extend(movies)

    def cut(self, now: float | None = None, flush: bool = False) -> list[Manifest]:
        now = time.time() if now is None else now
        made: list[Manifest] = []
        while len(self.pending) >= self.size:
            made.append(self._write(self.pending[: self.size]))
            self.pending = self.pending[self.size :]
        if self.pending:
            waited = now - min(m.stable for m in self.pending)
            if flush or waited >= self.tail:
                made.append(self._write(self.pending))
                self.pending = []
        return made

    def _write(self, movies: list[MovieEntry]) -> Manifest:
        existing = list_batches(self.out_dir)  # another writer (retry-failed) may have added one
        self._next = max(self._next, int(existing[-1][1:]) + 1 if existing else 1)
        manifest = write_manifest(self.out_dir, movies, self._next)
        self._next += 1
        log.info("batch %s: %d movies", manifest.batch, len(movies))
        return manifest
