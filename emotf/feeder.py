"""Movie detection and batching: turn a growing session folder into batch manifests.

* :class:`MovieScanner` finds movies matching the configured globs and reports each one once,
  when it is complete: unmodified for ``settle_seconds`` and the same size as at the last scan.
  A movie that is a symlink, or whose real path leaves the session folder, is never batched:
  it is logged once and kept in ``MovieScanner.refused`` (key -> reason).
* :class:`Batcher` groups complete movies into manifests of ``size`` movies, or fewer when the
  oldest waiting movie has waited ``tail_seconds`` (or when flushing at the end).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .batches import (
    Manifest,
    MovieEntry,
    list_batches,
    manifest_path,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)

RELIST_SECONDS = 5.0


@dataclass
class _Seen:
    size: int
    mtime: float
    found: float


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class MovieScanner:
    """Report each complete movie under ``session_dir`` exactly once."""

    def __init__(
        self, session_dir: Path, globs: list[str], settle_seconds: float, known: set[str]
    ) -> None:
        self.session_dir = Path(session_dir)
        self._real_dir = Path(os.path.realpath(self.session_dir))
        self.globs = list(globs)
        self.settle = float(settle_seconds)
        self.known = set(known)  # keys already handed out (e.g. in existing manifests)
        self._seen: dict[str, _Seen] = {}
        self.sizes: dict[str, int] = {}  # last size of every movie found (for EMhub raw stats)
        # folder listings reused while the folder's mtime is unchanged (and not recent)
        self._listings: dict[tuple[str, str], tuple[int, list[str]]] = {}
        # movies never batched, with the reason (symlinks; paths leaving the raw folder)
        self.refused: dict[str, str] = {}

    def _listing(self, folder: Path, name_pattern: str, now: float) -> list[str]:
        """Names in ``folder`` matching ``name_pattern``; re-listed only when the folder
        changed. A folder modified in the last few seconds is always re-listed, so coarse
        mtimes (NFS, SMB) cannot hide a movie created right after a listing."""
        try:
            mtime = folder.stat().st_mtime_ns
        except OSError:
            return []
        key = (os.fspath(folder), name_pattern)
        cached = self._listings.get(key)
        if cached is not None and cached[0] == mtime and now - mtime / 1e9 > RELIST_SECONDS:
            return cached[1]
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if fnmatch.fnmatchcase(e.name, name_pattern)]
        except OSError:
            return []
        self._listings[key] = (mtime, names)
        return names

    def _candidates(self, now: float) -> list[Path]:
        found: set[str] = set()
        for pattern in self.globs:
            head, _, name_pattern = pattern.rpartition("/")
            folders = self.session_dir.glob(head) if head else iter([self.session_dir])
            for folder in folders:
                found.update(
                    os.path.join(folder, n) for n in self._listing(folder, name_pattern, now)
                )
        return [Path(p) for p in sorted(found)]

    def _refusal(self, path: Path) -> str:
        """Why ``path`` must not be processed ("" if it may): a movie that is a symlink, or
        whose real path leaves the session's raw folder (a symlinked folder), could bring in
        data from anywhere the worker can read."""
        if path.is_symlink():
            try:
                target = os.readlink(path)[:200]
            except OSError:
                target = "?"
            return f"is a symbolic link (to {target!r}); copy the movie instead"
        real = Path(os.path.realpath(path))
        if self._real_dir not in real.parents:
            return f"its real path {os.fspath(real)[:200]!r} is outside the raw folder"
        return ""

    def _refuse(self, key: str, path: Path) -> bool:
        """True (and a warning, once per movie) if the movie at ``path`` is refused."""
        reason = self._refusal(path)
        if not reason:
            self.refused.pop(key, None)
            return False
        if self.refused.get(key) != reason:
            log.warning("movie %s refused, not processed: %s", path, reason)
            self.refused[key] = reason
        self._seen.pop(key, None)
        self.sizes.pop(key, None)
        return True

    def total_seen(self) -> int:
        """Movies found so far, complete or not (including those handed out earlier)."""
        return len(self.known | set(self._seen))

    def scan(self, now: float | None = None) -> list[MovieEntry]:
        now = time.time() if now is None else now
        complete: list[MovieEntry] = []
        for path in self._candidates(now):
            key = path.relative_to(self.session_dir).as_posix()
            if key in self.known:
                if key not in self.sizes:
                    self.sizes[key] = _size(path)
                continue
            if self._refuse(key, path):
                continue
            try:
                st = path.stat()
                size, mtime = st.st_size, st.st_mtime
            except OSError as exc:
                # Unreadable entries still count: import records the reason as a failure.
                log.warning("cannot stat movie %s: %s", path, exc)
                size, mtime = -1, 0.0
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
            if settled:
                complete.append(
                    MovieEntry(
                        key=key,
                        path=os.fspath(path),
                        size=size,
                        mtime=mtime,
                        found=seen.found,
                        stable=now,
                    )
                )
                self.known.add(key)
                del self._seen[key]
        return complete


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
        """Keys of every movie already in a manifest on disk."""
        keys: set[str] = set()
        for batch in list_batches(self.out_dir):
            manifest = read_manifest(manifest_path(self.out_dir, batch))
            keys.update(m.key for m in manifest.movies)
        return keys

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
