"""One live OTF loop per processing folder, and a folder that belongs to one session.

``.emotf/lock`` is held (``flock``) by the process that drives a folder for as long as it
does; a second ``emotf run`` or worker task on the same folder is refused with the holder's
description. The lock goes with the process, so a killed worker never leaves it behind.
``.emotf/owner.json`` records which EMhub session made the folder; another session is
refused, so it can neither add batches to it nor receive its statistics.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json

LOCK = Path(".emotf") / "lock"
OWNER = Path(".emotf") / "owner.json"


class FolderBusy(RuntimeError):
    """Another OTF loop is driving this processing folder, or it belongs to another session."""


class FolderLock:
    def __init__(self, folder: Path, holder: str) -> None:
        self.path = Path(folder) / LOCK
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusy(
                f"processing folder {self.path.parent.parent} is already in use "
                f"by {other}; refusing to start a second run on it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.release()


def claim(folder: Path, owner: str) -> None:
    """Record ``owner`` (e.g. ``emhub session 12``) as the folder's owner, or raise
    FolderBusy when the folder already belongs to someone else."""
    path = Path(folder) / OWNER
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("owner")
    except FileNotFoundError:
        atomic_write_json(path, {"owner": owner})
        return
    except (OSError, ValueError, AttributeError) as exc:
        raise FolderBusy(f"cannot read the owner of {folder} ({path}: {exc})") from exc
    if recorded != owner:
        raise FolderBusy(
            f"processing folder {folder} belongs to {recorded}, not to {owner}; refusing to use it"
        )
