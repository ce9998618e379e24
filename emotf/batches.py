"""Immutable batch manifests: the unit of work handed to Snakemake.

A manifest ``batches/b000123.json`` lists the movies of one batch. It is written once,
atomically, and never changed; the set of manifests on disk is the authoritative record of
which movies were handed to the pipeline, so a restarted worker neither loses nor repeats one.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_json, read_json

BATCH_DIR = "batches"
BATCH_RE = re.compile(r"^b\d{6}$")


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
    return manifest
