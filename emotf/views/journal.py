"""The journal of the session STAR files (``.emotf/star_parts/journal.json``) and what
keeps it true across a killed writer: the lock, the announced appends and their repair.
Which rows a ``retry-failed`` batch supersedes comes from the batch key index
(:func:`emotf.session.batches.batch_keys`)."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json, read_json
from .made import MadeFiles

log = logging.getLogger(__name__)

JOURNAL = "journal.json"
PAUSE = "EMOTF_TEST_PAUSE_APPEND"  # tests: stop half-way through an append (then killed)
Journal = dict[str, Any]


def empty(sig: str) -> Journal:
    return {"sig": sig, "parts": {}, "files": {}}


def load(folder: Path, sig: str) -> Journal:
    """The journal; a fresh one when missing or unreadable. Parts and files made for
    another signature (pipeline, binning or curation changed) are forgotten."""
    try:
        journal = read_json(folder / JOURNAL)
    except (OSError, ValueError):
        return empty(sig)
    if not isinstance(journal, dict) or set(empty("")) - set(journal):
        return empty(sig)
    if journal["sig"] != sig:
        journal.update(sig=sig, parts={}, files={})
    return journal


def save(folder: Path, journal: Journal) -> None:
    atomic_write_json(folder / JOURNAL, journal)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One writer at a time (the worker's child and a manual ``snakemake``)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def recover(journal: Journal, out_dir: Path, made: MadeFiles) -> None:
    """Finish what a killed writer left: an append cut short is truncated away; a file
    replaced before its record in ``made.json`` was updated is recorded."""
    for name, pending in dict(journal.get("pending", {})).items():
        path = out_dir / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        record = made.record.get(name)
        ours = record in (pending["made"], [info.st_size, info.st_mtime_ns])
        if ours and "from" in pending and pending["from"] <= info.st_size <= pending["to"]:
            log.warning("%s: an update was cut short; its partial rows removed", path)
            os.truncate(path, pending["from"])
            made.wrote(name)
        elif ours and "from" not in pending:
            made.wrote(name)
            journal["files"].pop(name, None)
    journal["pending"] = {}


def announce(journal: Journal, name: str, made: MadeFiles, **span: int) -> None:
    """Record, before it starts, that ``name`` is being appended to (``from``/``to``
    byte lengths) or replaced (no span)."""
    journal.setdefault("pending", {})[name] = {**span, "made": made.record.get(name)}


def record_made(made: MadeFiles, names: list[str]) -> None:
    """Record the files just written in ``made.json``, in one write (``MadeFiles.wrote``
    writes it once per file)."""
    if not names:
        return
    for name in names:
        info = os.lstat(made.folder / name)
        made.record[name] = [info.st_size, info.st_mtime_ns]
    atomic_write_json(made.path, made.record)


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at ``offset`` of ``path`` (anything after it is cut off first)."""
    with open(path, "r+b") as handle:
        handle.truncate(offset)
        handle.seek(offset)
        pause = os.environ.get(PAUSE)
        if pause:  # tests only: leave a partial row, say so, and wait to be killed
            handle.write(data[: len(data) // 2 + 1])
            handle.flush()
            Path(pause).write_text(str(os.getpid()))
            time.sleep(600)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
