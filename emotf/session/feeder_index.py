"""Folder listings of the raw session folder, reused while a folder is unchanged, and kept
across restarts in ``.emotf/feeder.json`` (in the processing folder; never in the raw one).

The feeder's globs (``Images-Disc*/GridSquare_*/Data/*_fractions.tiff``) are resolved one
folder level at a time. A listing (sub-folders matching a pattern, or names matching the movie
patterns) is reused only while it is *fresh*: the folder's ``st_mtime_ns`` is the one it was
listed at, the folder last changed more than :data:`RELIST_SECONDS` ago, and the listing was
taken more than :data:`RELIST_SECONDS` after that change. On file systems with coarse mtimes
(NFS, SMB) a file created just after a listing may leave the folder's mtime unchanged; the
last two conditions make sure such a listing is never trusted, now or after a restart.

The index file holds these listings and, for movies already handed out (complete), their
size, so a restart re-lists and ``stat()``s only the folders that changed. It is derived
data: written atomically, checked against the session folder and globs it was made for, and
a lost, damaged or stale file only costs a full scan.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text

log = logging.getLogger(__name__)

FEEDER_INDEX = Path(".emotf") / "feeder.json"
VERSION = 1
RELIST_SECONDS = 5.0
SAVE_SECONDS = 30.0  # at most one index write per this many seconds (first scan: at once)
DIRS, MOVIES = "d", "m"  # listing kinds: sub-folders matching a pattern / movie names


@dataclass
class Listing:
    mtime_ns: int  # the folder's mtime when listed
    listed_at: float  # epoch seconds of the listing
    names: list[str]
    sizes: list[int] | None = None  # (from the index file) size per name, -1 if unknown

    def fresh(self, mtime_ns: int, now: float) -> bool:
        changed = mtime_ns / 1e9
        return (
            self.mtime_ns == mtime_ns
            and now - changed > RELIST_SECONDS
            and self.listed_at - changed > RELIST_SECONDS
        )


def _magic(part: str) -> bool:
    return any(c in part for c in "*?[")


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _valid_names(names: Any) -> bool:
    """A list of file names (no "/", not empty, "." or ".."), checked at C speed."""
    if not isinstance(names, list):
        return False
    try:
        joined = "/".join(names)
    except TypeError:  # not all strings
        return False
    return joined.count("/") == len(names) - 1 and not {"", ".", ".."} & set(names)


@functools.lru_cache(maxsize=64)
def matcher(patterns: str) -> re.Pattern[str]:
    """One regular expression matching a name against any of ``patterns`` ("/"-separated,
    as fnmatchcase would)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns.split("/")))


class FolderIndex:
    """Listings of ``session_dir``'s folders (relative paths, ``""`` the folder itself)."""

    def __init__(self, session_dir: Path, globs: list[str], path: Path | None) -> None:
        self.root = os.fspath(session_dir)
        self._prefix = self.root if self.root.endswith("/") else self.root + "/"
        self.globs = list(globs)
        self.path = path
        self.listings: dict[tuple[str, str, str], Listing] = {}  # (rel, kind, pattern)
        self._used: set[tuple[str, str, str]] = set()  # listings looked at since a write
        self._dirty = False
        self._saved_at: float | None = None
        if path is not None:
            self.listings = self._load(path)

    def abspath(self, rel: str) -> str:
        return self._prefix + rel if rel else self.root

    # -- listings --------------------------------------------------------------------------
    def _list(self, rel: str, kind: str, pattern: str, now: float) -> Listing | None:
        """The fresh listing of folder ``rel``, listed again if needed; None if the folder
        cannot be listed (gone, not a folder, unreadable)."""
        key = (rel, kind, pattern)
        folder = self.abspath(rel)
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return None
        self._used.add(key)
        cached = self.listings.get(key)
        if cached is not None and cached.fresh(mtime, now):
            return cached
        regex = matcher(pattern)
        try:
            with os.scandir(folder) as entries:
                if kind == DIRS:  # symlinks too: pathlib's glob follows them, as we do
                    names = [
                        e.name
                        for e in entries
                        if regex.match(e.name) and (e.is_symlink() or e.is_dir())
                    ]
                else:
                    names = [e.name for e in entries if regex.match(e.name)]
        except OSError:
            return None
        self.listings[key] = listing = Listing(mtime, now, names)
        self._dirty = True
        return listing

    def folders(self, head: str, now: float) -> list[str]:
        """Folders (relative paths) matching the glob ``head`` (a pattern's folder part)."""
        parts = head.split("/") if head else []
        if any(p in ("", ".", "..") or "**" in p for p in parts):
            base = Path(self.root)  # recursive or odd patterns: pathlib, never cached
            globbed = {p.relative_to(base).as_posix() for p in base.glob(head) if p.is_dir()}
            return sorted("" if rel == "." else rel for rel in globbed)
        rels = [""]
        for part in parts:
            found: list[str] = []
            for rel in rels:
                if _magic(part):
                    listing = self._list(rel, DIRS, part, now)
                    found.extend(_join(rel, n) for n in (listing.names if listing else []))
                elif os.path.isdir(self.abspath(_join(rel, part))):
                    found.append(_join(rel, part))
            rels = found
        return rels

    def movies(self, rel: str, patterns: Iterable[str], now: float) -> Listing | None:
        """Names in folder ``rel`` matching any of ``patterns``."""
        return self._list(rel, MOVIES, "/".join(sorted(set(patterns))), now)

    # -- the index file --------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {"version": VERSION, "session_dir": self.root, "globs": self.globs}

    def _load(self, path: Path) -> dict[tuple[str, str, str], Listing]:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            if {k: data.get(k) for k in self._header()} != self._header():
                log.info("feeder index %s is for another folder or globs: not used", path)
                return {}
            return dict(_entry(item) for item in data["listings"])
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("feeder index %s unreadable (%s): full scan", path, exc)
            return {}

    def save(self, sizes: dict[str, int], known: set[str], now: float, changed: bool) -> None:
        """Write the listings scans used, with the sizes of handed-out movies, if a
        listing or (``changed``) a movie did; at most every :data:`SAVE_SECONDS`, the first
        time at once. A failed write only costs time at the next start."""
        self._dirty = self._dirty or changed
        if self.path is None or not self._dirty:
            return
        if self._saved_at is not None and now - self._saved_at < SAVE_SECONDS:
            return
        used, self._used = self._used, set()  # listings looked at since the last write
        items = []
        for key in sorted(used):
            listing = self.listings.get(key)
            if listing is None:
                continue
            item: list[Any] = [*key, listing.mtime_ns, listing.listed_at, listing.names]
            if key[1] == MOVIES:
                keys = [_join(key[0], n) for n in listing.names]
                item.append([sizes.get(k, -1) if k in known else -1 for k in keys])
            items.append(item)
        text = json.dumps({**self._header(), "listings": items}, separators=(",", ":"))
        try:
            atomic_write_text(self.path, text + "\n")
        except OSError as exc:
            log.warning("cannot write the feeder index %s: %s", self.path, exc)
        self._saved_at, self._dirty = now, False


def _entry(item: list[Any]) -> tuple[tuple[str, str, str], Listing]:
    """One listing of the index file, checked (a bad one makes the whole file unused)."""
    rel, kind, pattern, mtime_ns, listed_at, names, *rest = item
    if not (isinstance(rel, str) and kind in (DIRS, MOVIES) and isinstance(pattern, str)):
        raise ValueError(f"bad listing key {item[:3]!r}")
    if not _valid_names(names):
        raise ValueError(f"bad names in the listing of {rel!r}")
    sizes = None
    if kind == MOVIES:
        sizes = [int(s) for s in rest[0]]
        if len(sizes) != len(names):
            raise ValueError(f"sizes do not match the names of {rel!r}")
    return (rel, kind, pattern), Listing(int(mtime_ns), float(listed_at), names, sizes)
