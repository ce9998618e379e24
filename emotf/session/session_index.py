"""The session index: one compact line per finished batch, so the first scan after a restart
reads one small file instead of every batch's summary.

``.emotf/index.jsonl`` holds, per finished batch, what
:class:`emotf.session.progress.ProgressReader` computed from its summary: its counts and its
:class:`~emotf.session.aggregate.Part` (which batch holds which movie is the batch key
index's, :func:`emotf.session.batches.batch_keys`), with what the entry was computed from
(the summary file's mtime and size, the movies a later batch took over, the pipeline and
the curation limits).
An entry is used only while all of these still hold; otherwise the summary is read again and a
new line appended (the last valid line of a batch wins). The file is derived data: a line cut
short by a crash, or a lost or damaged file, only costs the time of reading the summaries.
Appends are single ``write`` calls; the file is rewritten compactly when stale lines exceed
the live ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text

log = logging.getLogger(__name__)

INDEX = Path(".emotf") / "index.jsonl"
VERSION = 1


def signature(value: Any) -> str:
    """A short stable digest of ``value`` (its ``repr``), e.g. of a pipeline or limits."""
    return hashlib.sha1(repr(value).encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True)
class Basis:
    """What an entry was computed from; an entry is valid only for the same basis."""

    source: tuple[int, int]  # (mtime_ns, size) of the batch's summary
    superseded: frozenset[str]  # keys of the batch that a later batch holds
    pipeline: str  # signature of the pipeline's steps
    limits: str  # signature of the curation limits

    def as_json(self) -> dict[str, Any]:
        return {
            "source": list(self.source),
            "superseded": sorted(self.superseded),
            "pipeline": self.pipeline,
            "limits": self.limits,
        }

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> Basis:
        mtime, size = data["source"]
        return cls(
            (int(mtime), int(size)),
            frozenset(str(k) for k in data["superseded"]),
            str(data["pipeline"]),
            str(data["limits"]),
        )


class SessionIndex:
    """Read once when opened; entries added with :meth:`put` are appended at once."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / INDEX
        self._entries: dict[str, tuple[Basis, dict[str, Any]]] = {}
        self._lines = 0
        self._writable = True
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("session index %s not read (%s): batch summaries are read instead",
                        self.path, exc)  # fmt: skip
            return
        for line in text.splitlines():
            self._lines += 1
            try:
                data = json.loads(line)
                if data.get("v") != VERSION:
                    continue
                self._entries[str(data["batch"])] = (Basis.of_json(data["basis"]), data)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # cut short by a crash, or not ours: the summary is read instead

    def get(self, batch: str, basis: Basis) -> dict[str, Any] | None:
        """The entry of ``batch`` computed from exactly ``basis``, else None."""
        entry = self._entries.get(batch)
        return entry[1] if entry is not None and entry[0] == basis else None

    def put(self, batch: str, basis: Basis, body: dict[str, Any]) -> None:
        """Record a batch's entry (``body``: counts and part, JSON-ready)."""
        data = {"v": VERSION, "batch": batch, "basis": basis.as_json(), **body}
        self._entries[batch] = (basis, data)
        if not self._writable:
            return
        line = json.dumps(data, separators=(",", ":")) + "\n"
        try:
            if self._lines > 2 * len(self._entries) + 16:
                self._compact()
                return
            self.path.parent.mkdir(exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
            self._lines += 1
        except OSError as exc:  # e.g. `emotf status` run by a user who may only read
            self._writable = False
            log.info("session index %s not written (%s)", self.path, exc)

    def _compact(self) -> None:
        lines = [json.dumps(d, separators=(",", ":")) + "\n" for _b, d in self._entries.values()]
        atomic_write_text(self.path, "".join(lines))
        self._lines = len(lines)
