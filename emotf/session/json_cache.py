"""Parsed JSON files of a processing folder, cached by mtime."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fsutil import read_json


class JsonCache:
    """Parsed JSON files by path, re-read when their mtime changes. ``transform`` (e.g. slim a
    full record set) is applied once per read and cached apart from the plain data. With
    ``sticky``, a file that vanishes (Snakemake removes a job's outputs before rerunning it)
    keeps its last content until it is written again."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, bool], tuple[float, Any]] = {}

    def get(
        self, path: Path, transform: Callable[[Any], Any] | None = None, sticky: bool = False
    ) -> Any | None:
        key = (os.fspath(path), transform is not None)
        try:
            mtime = os.stat(key[0]).st_mtime
        except FileNotFoundError:
            if sticky and key in self._data:
                return self._data[key][1]
            self._data.pop(key, None)
            return None
        hit = self._data.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            data = read_json(path)
        except (OSError, ValueError):
            return hit[1] if hit is not None else None  # being replaced right now
        if transform is not None:
            data = transform(data)
        self._data[key] = (mtime, data)
        return data

    def version(self, path: Path) -> float | None:
        """The mtime of the content :meth:`get` last returned for ``path`` (None: none)."""
        hit = self._data.get((os.fspath(path), False))
        return hit[0] if hit is not None else None

    def drop(self, path: Path) -> None:
        for transformed in (False, True):
            self._data.pop((os.fspath(path), transformed), None)
