"""Move (or copy) an EPU frames folder to storage, file by file, verified and resumable.

Each complete file (size and mtime unchanged for ``settle`` seconds) is copied to a hidden
temporary name beside its destination with :func:`shutil.copyfile` (the standard library's
copy: ``copy_file_range``/``sendfile`` in the kernel where available, no extra dependency,
nothing to pin; rsync would add a process per file and its own resume semantics), flushed to
disk, and verified: the temporary file and the source are hashed (SHA-256, ``hashlib``) and
their sizes compared, and the source must not have changed during the copy. Only then the
copy gets its final name, with ``os.link`` (which never replaces an existing file), and the
result is appended to the session's **transfer ledger** (JSON lines, fsynced). In ``move``
mode a movie's source is removed after that, and the removal is recorded too; other files
(EPU keeps rewriting its metadata during a session) are copied, and a file rewritten with new
content is copied again, kept apart under its checksum (below).

* ``kill -9`` at any point: a temporary file is redone; a copy that got its name but no ledger
  line is found again by size + checksum and recorded without copying it again; a recorded
  copy whose source is still there is verified again, then the source is removed.
* A destination that already holds *different* content under the same name is never
  overwritten: the new file is kept apart as ``<name>_dup<sha8><suffix>``.
* Destination full or not writable: :class:`TransferError`; the temporary file is removed and
  no source file is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..epu import MOVIE_SUFFIXES
from .raw_stats import is_movie

log = logging.getLogger(__name__)

FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
WRITE_ERRNOS = FULL_ERRNOS | {errno.EACCES, errno.EPERM, errno.EROFS}
TMP_SUFFIX = ".emotf-part"


class TransferError(RuntimeError):
    """The destination cannot take more files (full, read-only, ...): the transfer stops."""


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def variant_name(name: str, digest: str) -> str:
    """Where a file whose name is taken by different content goes (a movie stays a movie)."""
    suffix = next((s for s in MOVIE_SUFFIXES if name.endswith(s)), os.path.splitext(name)[1])
    base = name[: len(name) - len(suffix)] if suffix else name
    return f"{base}_dup{digest[:8]}{suffix}"


@dataclass(frozen=True)
class Copied:
    rel: str  # source path relative to the frames folder
    dest: str  # destination path relative to the destination folder
    size: int
    mtime_ns: int  # the source's, when it was copied
    sha256: str


class TransferLedger:
    """Append-only JSON lines: ``copied`` and ``removed`` records. A torn last line (kill -9
    while writing) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.copies: dict[str, Copied] = {}  # newest copy of each source path
        self.removed: set[tuple[str, int]] = set()
        self.dests: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    self._apply(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: skipping an unreadable line", self.path)

    def _apply(self, record: dict[str, Any]) -> None:
        if record["kind"] == "copied":
            item = Copied(record["rel"], record["dest"], int(record["size"]),
                          int(record["mtime_ns"]), str(record["sha256"]))  # fmt: skip
            self.copies[item.rel] = item
            self.dests.add(item.dest)
        elif record["kind"] == "removed":
            self.removed.add((record["rel"], int(record["mtime_ns"])))

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**record, "time": round(time.time(), 3)}) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._apply(record)

    def total_size(self) -> int:
        return sum(c.size for c in self.copies.values())


class Transfer:
    """One frames folder → one destination folder."""

    def __init__(self, source: Path, dest: Path, ledger: TransferLedger, move: bool = True,
                 settle: float = 60.0) -> None:  # fmt: skip
        self.source, self.dest, self.ledger = Path(source), Path(dest), ledger
        self.move, self.settle = move, settle
        self._seen: dict[str, tuple[int, int, float]] = {}  # rel -> (size, mtime_ns, since)

    # -- scanning ------------------------------------------------------------------------
    def complete_files(self, now: float) -> list[tuple[str, os.stat_result]]:
        """Source files unchanged for ``settle`` seconds, not yet handled; hidden names are
        skipped (temporary files of other tools)."""
        ready: list[tuple[str, os.stat_result]] = []
        for root, dirs, files in os.walk(self.source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(root) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue  # vanished
                if not path.is_file() or path.is_symlink():
                    continue
                rel = str(path.relative_to(self.source))
                if self._handled(rel, st):
                    continue
                size, mtime, since = self._seen.get(rel, (-1, -1, now))
                if (size, mtime) != (st.st_size, st.st_mtime_ns):
                    self._seen[rel] = (st.st_size, st.st_mtime_ns, now)
                elif now - since >= self.settle:
                    ready.append((rel, st))
        return ready

    def _handled(self, rel: str, st: os.stat_result) -> bool:
        done = self.ledger.copies.get(rel)
        if done is None or (done.size, done.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return False  # new, or new content under an old name
        if self._removes(rel) and (rel, st.st_mtime_ns) not in self.ledger.removed:
            return False  # copied, source removal still to do (e.g. killed in between)
        return True

    def _removes(self, rel: str) -> bool:
        """Only movies are moved: EPU keeps rewriting its metadata (``EpuSession.dm``, XML,
        JPEG) during a session, so those are copied, and a new version is copied again."""
        return self.move and is_movie(os.path.basename(rel))

    # -- one file ------------------------------------------------------------------------
    def handle(self, rel: str, st: os.stat_result) -> Copied | None:
        """Copy (or finish) one complete file; None if it changed meanwhile (tried later)."""
        src = self.source / rel
        done = self.ledger.copies.get(rel)
        if done is not None and (done.size, done.mtime_ns) == (st.st_size, st.st_mtime_ns):
            copied: Copied | None = done
            self._check_copy(done)
        else:
            copied = self._copy(rel, src, st)
        if copied is not None and self._removes(rel):
            self._remove_source(src, copied)
        self._seen.pop(rel, None)
        return copied

    def _check_copy(self, done: Copied) -> None:
        target = self.dest / done.dest
        if not target.is_file() or target.stat().st_size != done.size or \
                sha256_of(target) != done.sha256:  # fmt: skip
            raise TransferError(f"recorded copy {target} is missing or changed; "
                                f"source {self.source / done.rel} kept")  # fmt: skip

    def _copy(self, rel: str, src: Path, st: os.stat_result) -> Copied | None:
        final = self.dest / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        existing = self._identical(final, src, st)
        if existing is not None:
            digest = existing
        else:
            tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
            try:
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
                digest = sha256_of(tmp)
                now = src.stat()
                if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns) or \
                        tmp.stat().st_size != st.st_size or sha256_of(src) != digest:  # fmt: skip
                    log.info("%s changed while it was copied; trying again later", src)
                    tmp.unlink()
                    return None
                final = self._link(tmp, final, digest)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(final.parent)
        copied = Copied(rel, str(final.relative_to(self.dest)), st.st_size, st.st_mtime_ns, digest)
        self.ledger.append({"kind": "copied", **copied.__dict__})
        return copied

    def _identical(self, final: Path, src: Path, st: os.stat_result) -> str | None:
        """The checksum if ``final`` (or its variant) already holds this content: a copy whose
        ledger line was lost to a kill. It is recorded, not copied again."""
        if not final.is_file() or final.stat().st_size != st.st_size:
            return None
        digest = sha256_of(src)
        if sha256_of(final) == digest:
            return digest
        variant = final.with_name(variant_name(final.name, digest))
        return digest if variant.is_file() and sha256_of(variant) == digest else None

    def _link(self, tmp: Path, final: Path, digest: str) -> Path:
        """Give ``tmp`` the name ``final`` without replacing anything; a name taken by other
        content makes it a variant."""
        for target in (final, final.with_name(variant_name(final.name, digest))):
            try:
                os.link(tmp, target)
                return target
            except FileExistsError:
                if target.stat().st_size == tmp.stat().st_size and sha256_of(target) == digest:
                    return target
                log.warning("%s exists with other content: keeping the new file apart", target)
        raise TransferError(f"{final} and its variant both hold other content")

    def _remove_source(self, src: Path, copied: Copied) -> None:
        try:
            now = src.stat()
        except FileNotFoundError:
            return
        if (now.st_size, now.st_mtime_ns) != (copied.size, copied.mtime_ns):
            return  # rewritten since: it will be seen as new content
        try:
            src.unlink()
        except OSError as exc:
            raise TransferError(
                f"cannot remove source {src} ({exc.strerror}); its verified copy is "
                f"{self.dest / copied.dest}: fix the permissions or use transfer.mode: copy"
            ) from None
        self.ledger.append({"kind": "removed", "rel": copied.rel, "mtime_ns": copied.mtime_ns})

    # -- a pass --------------------------------------------------------------------------
    def run_once(self, now: float | None = None) -> list[Copied]:
        """Handle every complete file once; TransferError if the destination refuses."""
        handled: list[Copied] = []
        for rel, st in self.complete_files(time.time() if now is None else now):
            try:
                copied = self.handle(rel, st)
            except OSError as exc:
                if self._destination_refused(exc):
                    kind = "full" if exc.errno in FULL_ERRNOS else "not writable"
                    raise TransferError(
                        f"transfer destination {self.dest} is {kind} ({exc.strerror}); "
                        f"transfer stopped, no source file removed that was not copied "
                        f"and verified"
                    ) from exc
                raise
            if copied is not None:
                handled.append(copied)
        return handled

    def _destination_refused(self, exc: OSError) -> bool:
        """Full or read-only is always the destination (the source is only read, and a
        read-only source fails its removal with EROFS only after the copy is recorded);
        a permission error is the destination's when it names a path there."""
        if exc.errno in FULL_ERRNOS | {errno.EROFS}:
            return True
        names = [Path(n) for n in (exc.filename, exc.filename2) if isinstance(n, str)]
        return exc.errno in WRITE_ERRNOS and any(n.is_relative_to(self.dest) for n in names)

    def pending(self) -> int:
        """Source files not handled yet (complete or not)."""
        count = 0
        for root, _dirs, files in os.walk(self.source):
            for name in files:
                path = Path(root) / name
                if name.startswith(".") or path.is_symlink():
                    continue
                try:
                    st = path.lstat()
                except OSError:
                    continue
                count += not self._handled(str(path.relative_to(self.source)), st)
        return count


def movies_in(copies: list[Copied]) -> int:
    return sum(1 for c in copies if is_movie(os.path.basename(c.dest)))
