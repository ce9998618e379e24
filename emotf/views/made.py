"""What emotf wrote at the top of a processing folder, so it never overwrites anything else.

Session STAR files and ``report.html`` are rewritten as batches finish. Each write is
recorded in ``.emotf/made.json`` (size and mtime); a file at such a path that emotf did not
write (or that changed since) is left as it is, with a warning. Folders made before the
record existed adopt the files that carry emotf's own header.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..fsutil import atomic_write_json

log = logging.getLogger(__name__)

RECORD = Path(".emotf") / "made.json"
SIGNS = (
    b"# Created by the starfile Python package",  # session STAR files before 2026-12-01
    b"# Created by emotf",  # session STAR files extended batch by batch
    b"<!DOCTYPE html><html><head><meta charset",
)


class MadeFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RECORD
        try:
            self.record: dict[str, list[int]] = json.loads(self.path.read_text("utf-8"))
            self.legacy = False
        except (OSError, ValueError):
            self.record, self.legacy = {}, not self.path.exists()

    def _looks_ours(self, path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                head = handle.read(200)
        except OSError:
            return False
        return any(head.startswith(sign) for sign in SIGNS)

    def may_write(self, name: str) -> bool:
        """True unless ``name`` exists and is not the file emotf last wrote there."""
        path = self.folder / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return True
        if not os.path.isfile(path) or os.path.islink(path):
            ok = False
        elif name in self.record:
            ok = self.record[name] == [info.st_size, info.st_mtime_ns]
        else:
            ok = self.legacy and self._looks_ours(path)
        if not ok:
            log.warning(
                "%s exists and was not written by emotf (or was changed since): "
                "left as it is, not updated",
                path,
            )
        return ok

    def wrote(self, name: str) -> None:
        info = os.lstat(self.folder / name)
        self.record[name] = [info.st_size, info.st_mtime_ns]
        atomic_write_json(self.path, self.record)
