"""Incremental ``extra.raw``: the same result as :func:`raw_stats.raw_info`, at a cost that
grows with the new files, not with the session.

A :class:`RawWalker` keeps, per directory, its identity and ``st_mtime_ns`` at the last
listing, the aggregate (per-extension counts/sizes, first/last file and movie) of its
*settled* files with a 64-bit hash of each settled name, and the name, time and size of its
files that may still change. A re-walk stats every directory, re-lists only those whose
identity or mtime changed, or whose mtime was within ``recent`` seconds of the listing
(coarse NFS/SMB mtimes: a file added in the same tick leaves the mtime unchanged), and
re-stats only the unsettled files (a movie still being written grows without touching its
folder's mtime). A file is settled once its mtime is more than ``settle`` seconds old when
it is stat'ed. Assumption: a settled file does not change in place (rewritten, truncated)
without its folder changing — what a microscope writing or a transfer completing does.
A deleted file is noticed (its folder's mtime changes and fewer settled names are listed):
that folder's aggregate is rebuilt. Nothing is ever written into the raw folder.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .raw_stats import RawScan

log = logging.getLogger(__name__)


@dataclass
class _Dir:
    key: tuple[int, int, int]  # st_dev, st_ino, st_mtime_ns when listed
    listed: float  # time.time() just before the directory's stat
    cold: RawScan = field(default_factory=RawScan)  # settled files
    cold_names: array[int] = field(default_factory=lambda: array("q"))  # hash(name) each
    hot: dict[str, tuple[float, int]] = field(default_factory=dict)  # name -> mtime, size
    dirs: dict[str, _Dir | None] = field(default_factory=dict)
    stale: bool = False  # a listing or stat failed: list again next time


class RawWalker:
    """Keep it for the life of a task; :meth:`info` on the same root re-walks incrementally
    (another root starts afresh)."""

    def __init__(self, recent: float = 10.0, settle: float = 120.0) -> None:
        self.recent, self.settle = recent, settle
        self.root: str | None = None
        self._top: dict[str, _Dir | None] = {}
        self.listed = 0  # directories listed by the last walk (for tests and benchmarks)

    def info(self, root: Path) -> dict[str, Any]:
        return self.walk(root).info()

    def walk(self, root: Path) -> RawScan:
        if str(root) != self.root:
            self.root, self._top = str(root), {}
        self.listed = 0
        total = RawScan()
        stack: list[tuple[dict[str, _Dir | None], str, str, str]] = [(self._top, "", str(root), "")]
        while stack:
            holder, name, path, rel = stack.pop()
            node = self._refresh(holder.get(name), path, rel, top=not rel)
            if node is None:
                holder.pop(name, None)
                continue
            holder[name] = node
            total.merge(node.cold)
            for fname, (mtime, size) in node.hot.items():
                total.add(rel + fname, mtime, size)
            for sub in node.dirs:
                stack.append((node.dirs, sub, os.path.join(path, sub), f"{rel}{sub}/"))
        return total

    def _refresh(self, node: _Dir | None, path: str, rel: str, top: bool) -> _Dir | None:
        now = time.time()
        try:
            st = os.stat(path, follow_symlinks=top)  # the root may be a link, as in raw_info
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        if node is None or node.key != key or node.stale or node.listed - st.st_mtime < self.recent:
            return self._relist(node, path, rel, key, now)
        self._restat_hot(node, path, rel, now)
        return node

    def _settled(self, st: os.stat_result, now: float) -> bool:
        return now - st.st_mtime > self.settle

    def _restat_hot(self, node: _Dir, path: str, rel: str, now: float) -> None:
        for name in list(node.hot):
            try:
                st = os.stat(os.path.join(path, name), follow_symlinks=False)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):  # gone since the folder's stat
                del node.hot[name]
                node.stale = True
            elif self._settled(st, now):
                del node.hot[name]
                node.cold.add(rel + name, st.st_mtime, st.st_size)
                node.cold_names.append(hash(name))
            else:
                node.hot[name] = (st.st_mtime, st.st_size)

    def _relist(
        self, old: _Dir | None, path: str, rel: str, key: tuple[int, int, int], now: float
    ) -> _Dir:
        self.listed += 1
        node = _Dir(key=key, listed=now)
        try:
            entries = list(os.scandir(path))
        except OSError as exc:
            log.debug("cannot list %s: %s", path, exc.strerror)
            node.stale = True
            return node
        files: list[os.DirEntry[str]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    node.dirs[entry.name] = old.dirs.get(entry.name) if old else None
                elif entry.is_file(follow_symlinks=False):
                    files.append(entry)
            except OSError:
                node.stale = True
        known = set(old.cold_names) if old is not None and old.key[:2] == key[:2] else set()
        present = [entry for entry in files if hash(entry.name) in known]
        if old is not None and known and len(present) == old.cold.all.count:
            node.cold, node.cold_names = old.cold, old.cold_names  # none of them deleted
            files = [entry for entry in files if hash(entry.name) not in known]
        for entry in files:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                node.stale = True
                continue
            if self._settled(st, now):
                node.cold.add(rel + entry.name, st.st_mtime, st.st_size)
                node.cold_names.append(hash(entry.name))
            else:
                node.hot[entry.name] = (st.st_mtime, st.st_size)
        return node
