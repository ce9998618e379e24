"""Immutable batch manifests: the unit of work handed to Snakemake.

A manifest ``batches/b000123.json`` lists the movies of one batch. It is written once,
atomically, and never changed; the set of manifests on disk is the authoritative record of
which movies were handed to the pipeline, so a restarted worker neither loses nor repeats one.

``.emotf/batch_keys.jsonl`` repeats, one line per manifest, its movie keys and the manifest's
(mtime_ns, size), so :func:`assigned_keys` reads one compact file instead of every manifest.
It is derived data: a manifest whose line is missing (written just before a ``kill -9``),
cut short or does not match the file on disk is read itself and its line appended.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

BATCH_DIR = "batches"
BATCH_RE = re.compile(r"^b\d{6}$")
KEYS_INDEX = Path(".emotf") / "batch_keys.jsonl"


class ManifestError(ValueError):
    """A batch manifest is missing, unreadable or malformed."""


@dataclass(frozen=True)
class MovieEntry:
    """One movie as seen by the feeder: ``key`` is its path relative to the session folder."""

    key: str
    path: str
    size: int
    mtime: float
    found: float  # epoch seconds when the movie was first seen
    stable: float  # epoch seconds when it was judged complete

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MovieEntry:
        return cls(
            key=str(data["key"]),
            path=str(data["path"]),
            size=int(data["size"]),
            mtime=float(data["mtime"]),
            found=float(data["found"]),
            stable=float(data["stable"]),
        )


@dataclass(frozen=True)
class Manifest:
    batch: str
    created: float
    movies: tuple[MovieEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "created": self.created,
            "movies": [asdict(m) for m in self.movies],
        }


def batch_id(number: int) -> str:
    return f"b{number:06d}"


def manifest_path(out_dir: Path, batch: str) -> Path:
    return Path(out_dir) / BATCH_DIR / f"{batch}.json"


def list_batches(out_dir: Path) -> list[str]:
    folder = Path(out_dir) / BATCH_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("b*.json") if BATCH_RE.match(p.stem))


def result_stamps(out_dir: Path) -> dict[str, tuple[int, int]]:
    """batch -> (size, mtime_ns) of every finished batch's ``Results/<batch>.json``. Only
    batch results count: a job's temporary file (``.b000194.json.<random>.tmp``) is renamed
    away at any moment, and a result Snakemake removes before a rerun may vanish between the
    listing and its ``stat`` (then it is not finished)."""
    stamps: dict[str, tuple[int, int]] = {}
    try:
        listing = os.scandir(Path(out_dir) / "Results")
    except FileNotFoundError:
        return stamps
    with listing as entries:
        for entry in entries:
            batch = entry.name.removesuffix(".json")
            if not (entry.name.endswith(".json") and BATCH_RE.match(batch)):
                continue
            try:
                info = entry.stat()
            except FileNotFoundError:
                continue
            stamps[batch] = (info.st_size, info.st_mtime_ns)
    return stamps


def read_manifest(path: Path) -> Manifest:
    try:
        data = read_json(path)
        movies = tuple(MovieEntry.from_dict(m) for m in data["movies"])
        return Manifest(batch=str(data["batch"]), created=float(data["created"]), movies=movies)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"bad batch manifest {path}: {exc}") from exc


def write_manifest(out_dir: Path, movies: list[MovieEntry], number: int) -> Manifest:
    """Write a new manifest; refuses to overwrite an existing one (manifests are immutable)."""
    if not movies:
        raise ManifestError("refusing to write an empty batch")
    batch = batch_id(number)
    path = manifest_path(out_dir, batch)
    if path.exists():
        raise ManifestError(f"batch manifest {path} already exists; manifests are immutable")
    manifest = Manifest(batch=batch, created=time.time(), movies=tuple(movies))
    atomic_write_json(path, manifest.to_dict())
    _append_keys(out_dir, [_keys_line(path, batch, [m.key for m in movies])])
    return manifest


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_mtime_ns, st.st_size]


def _keys_line(path: Path, batch: str, keys: list[str]) -> str:
    return json.dumps({"batch": batch, "stamp": _stamp(path), "keys": keys}) + "\n"


def _append_keys(out_dir: Path, lines: list[str]) -> None:
    """Append to the key index in one ``write`` (another process may append too); a failure
    only costs reading the manifests again."""
    if not lines:
        return
    path = Path(out_dir) / KEYS_INDEX
    data = "".join(lines).encode()
    try:
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":
                data = b"\n" + data  # after a line cut short by a crash
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot update the batch key index %s: %s", path, exc)


def _indexed_keys(out_dir: Path) -> tuple[dict[str, tuple[list[int], list[str]]], int]:
    """batch -> (manifest stamp, keys) from the key index (last valid line of a batch wins),
    and the number of lines read."""
    path = Path(out_dir) / KEYS_INDEX
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, 0
    except (OSError, ValueError) as exc:
        log.warning("batch key index %s unreadable (%s): reading the manifests", path, exc)
        return {}, 0
    found: dict[str, tuple[list[int], list[str]]] = {}
    lines = [line for line in text.splitlines() if line]
    for line in lines:
        try:
            item = json.loads(line)
            stamp = [int(v) for v in item["stamp"]]
            keys = item["keys"]
            if not isinstance(keys, list):
                continue
            "\n".join(keys)  # TypeError unless all strings
            # interned: the feeder, the progress reader and the STAR writer share one string
            # per movie (100,000 movies: ~13 MB for each copy otherwise)
            found[str(item["batch"])] = (stamp, [sys.intern(k) for k in keys])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: that manifest is read instead
    return found, len(lines)


def batch_keys(out_dir: Path, batches: list[str] | None = None) -> dict[str, list[str]]:
    """The movie keys of each manifest (in batch order; all of them unless ``batches``):
    from the key index for manifests it matches, from the manifest itself (then indexed)
    for the others. The one record of which batch holds which movie that the feeder, the
    progress reader and the session STAR writer share."""
    indexed, n_lines = _indexed_keys(out_dir)
    every = list_batches(out_dir)
    wanted = every if batches is None else batches
    keys: dict[str, list[str]] = {}
    missing: list[str] = []
    for batch in wanted:
        path = manifest_path(out_dir, batch)
        entry = indexed.get(batch)
        try:
            current = _stamp(path)
        except OSError as exc:
            raise ManifestError(f"bad batch manifest {path}: {exc}") from exc
        if entry is not None and entry[0] == current:
            keys[batch] = entry[1]
            continue
        keys[batch] = [sys.intern(m.key) for m in read_manifest(path).movies]
        indexed[batch] = (current, keys[batch])
        missing.append(_keys_line(path, batch, keys[batch]))
    if batches is None and n_lines + len(missing) > 2 * len(every) + 16:  # mostly stale
        lines = [_keys_line(manifest_path(out_dir, b), b, indexed[b][1]) for b in every]
        try:
            atomic_write_text(Path(out_dir) / KEYS_INDEX, "".join(lines))
        except OSError as exc:
            log.warning("cannot rewrite the batch key index: %s", exc)
    else:
        _append_keys(out_dir, missing)
    return keys


def assigned_keys(out_dir: Path) -> set[str]:
    """Keys of every movie already in a manifest on disk (see :func:`batch_keys`)."""
    return {key for keys in batch_keys(out_dir).values() for key in keys}


class Owners:
    """Which batch holds which movie, kept up to date as batches are added (manifests are
    immutable, so a batch's keys never change): ``retry-failed`` queues a movie again in a
    new batch, and only its newest batch counts."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.batches: list[str] = []  # the folder's batches followed so far (a prefix of its list)
        self.owner: dict[str, str] = {}  # key -> newest batch holding it
        self.held: Counter[str] = Counter()  # key -> batches holding it
        self._superseded: dict[str, frozenset[str]] = {}

    def update(self, batches: list[str], load: Callable[[list[str]], dict[str, list[str]]]) -> None:
        """Follow ``batches`` (the folder's batch list, in order); ``load`` gives the keys of
        the batches not seen before. A batch whose keys cannot be read yet is retried."""
        if batches[: len(self.batches)] != self.batches:
            self._reset()  # a batch vanished: start over
        new = batches[len(self.batches) :]
        loaded = load(new) if new else {}
        for batch in new:
            keys = loaded.get(batch)
            if not keys:
                break
            for key in keys:
                previous = self.owner.get(key)
                if previous is not None:
                    self._superseded[previous] = self._superseded.get(previous, frozenset()) | {key}
                self.owner[key] = batch
                self.held[key] += 1
            self.batches.append(batch)

    def holds(self, batch: str) -> bool:
        """True once ``batch`` (one of the folder's batches) is followed: its keys were read.
        The followed batches are a prefix of the folder's sorted list."""
        return bool(self.batches) and batch <= self.batches[-1]

    def superseded_in(self, batch: str) -> frozenset[str]:
        """Keys of ``batch`` that a later batch holds."""
        return self._superseded.get(batch, frozenset())
