"""Progress of a processing folder, read from the files the pipeline writes.

Counts never come from Snakemake's log: they come from the batch manifests (movies handed
to the pipeline), each step's per-batch JSON (which movies got how far) and the per-batch
``Summary/<batch>.json`` (final state per movie, slim). Parsed files are cached by mtime, so
a scan of a 20,000-movie session only reads what changed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batches import list_batches
from .fsutil import read_json
from .steps.results import summarize

STEP_FILES = {
    "imported": ("Import", "import.json"),
    "motioncor": ("MotionCorr", "motioncor.json"),
    "ctffind": ("CtfFind", "ctffind.json"),
    "picked": ("AutoPick", "picking.json"),
}


@dataclass
class Counts:
    movies_batched: int = 0
    imported: int = 0
    motioncor: int = 0
    ctffind: int = 0
    picked: int = 0
    done: int = 0
    failed: int = 0
    particles: int = 0
    batches: int = 0
    batches_done: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "failures"}


class _Cache:
    """Parsed JSON files by path, re-read when their mtime changes. ``transform`` (e.g. slim a
    full record set) is applied once per read and cached apart from the plain data."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, bool], tuple[float, Any]] = {}

    def get(self, path: Path, transform: Callable[[Any], Any] | None = None) -> Any | None:
        key = (os.fspath(path), transform is not None)
        try:
            mtime = os.stat(key[0]).st_mtime
        except FileNotFoundError:
            self._data.pop(key, None)
            return None
        hit = self._data.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        try:
            data = read_json(path)
        except (OSError, ValueError):
            return None  # being replaced right now; next scan reads it
        if transform is not None:
            data = transform(data)
        self._data[key] = (mtime, data)
        return data

    def drop(self, path: Path) -> None:
        for transformed in (False, True):
            self._data.pop((os.fspath(path), transformed), None)


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    return {**result, "movies": [summarize(m) for m in result["movies"]]}


class ProgressReader:
    """Incremental reader of a processing folder's outputs.

    For a finished batch it reads ``Summary/<batch>.json`` (slim records), not the full
    ``Results/<batch>.json``, and no longer needs the batch's manifest or step files: a scan
    of a 20,000-movie session parses a few MB. :meth:`results` gives the full records, for
    the writers of STAR files and reports.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._cache = _Cache()

    def read(self, path: Path) -> Any | None:
        """A JSON file of the folder (cached by mtime); None while missing or being replaced."""
        return self._cache.get(path)

    def summary(self, batch: str) -> dict[str, Any] | None:
        """The slim results of a finished batch; None while it runs. Folders processed before
        summaries existed fall back to the full results, slimmed."""
        data = self._cache.get(self.out_dir / "Summary" / f"{batch}.json")
        if data is None:
            data = self._cache.get(self.out_dir / "Results" / f"{batch}.json", _slim)
        if data is not None:
            self._cache.drop(self.out_dir / "batches" / f"{batch}.json")
        return data

    def batch_keys(self, batch: str) -> list[str]:
        """Keys of the movies a batch holds (from its summary once finished, else manifest)."""
        data = self.summary(batch) or self._cache.get(self.out_dir / "batches" / f"{batch}.json")
        return [m["key"] for m in (data or {}).get("movies", [])]

    def owners(self) -> dict[str, str]:
        """Movie key → the last batch that holds it (``retry-failed`` re-queues a movie in a
        new batch; only its newest batch counts)."""
        owner: dict[str, str] = {}
        for batch in list_batches(self.out_dir):
            for key in self.batch_keys(batch):
                owner[key] = batch
        return owner

    def summaries(self) -> list[dict[str, Any]]:
        """The current slim record of every movie whose batch has finished (the
        ``SUMMARY_FIELDS`` of :mod:`emotf.steps.results`): what counts, statistics, curation
        and the ledger use."""
        owner = self.owners()
        records: list[dict[str, Any]] = []
        for batch in list_batches(self.out_dir):
            data = self.summary(batch)
            if data is not None:
                records.extend(m for m in data["movies"] if owner.get(m["key"]) == batch)
        return records

    def results(self) -> list[dict[str, Any]]:
        """The current full record of every movie whose batch has finished (not cached:
        for the STAR and report writers, which run in their own process)."""
        owner = self.owners()
        records: list[dict[str, Any]] = []
        for batch in list_batches(self.out_dir):
            try:
                data = read_json(self.out_dir / "Results" / f"{batch}.json")
            except (OSError, ValueError):
                continue  # running, or being written right now
            records.extend(m for m in data["movies"] if owner.get(m["key"]) == batch)
        return records

    def counts(self) -> Counts:
        counts = Counts()
        batches = list_batches(self.out_dir)
        counts.batches = len(batches)
        reasons: Counter[str] = Counter()
        owner = self.owners()
        counts.movies_batched = len(owner)
        for batch in batches:
            result = self.summary(batch)
            if result is not None:
                counts.batches_done += 1
                current = [m for m in result["movies"] if owner.get(m["key"]) == batch]
                self._count_result(counts, current, reasons)
                for folder, name in STEP_FILES.values():  # read while running; not needed now
                    self._cache.drop(self.out_dir / folder / batch / name)
                continue
            for attr, (folder, name) in STEP_FILES.items():
                step = self._cache.get(self.out_dir / folder / batch / name)
                if step is not None:
                    ok = sum(
                        1
                        for k, m in step["movies"].items()
                        if m.get("ok") and owner.get(k) == batch
                    )
                    setattr(counts, attr, getattr(counts, attr) + ok)
        counts.failures = dict(reasons)
        return counts

    @staticmethod
    def _count_result(counts: Counts, movies: list[dict[str, Any]], reasons: Counter[str]) -> None:
        order = ["import", "motioncor", "ctffind", "picking"]
        attrs = ["imported", "motioncor", "ctffind", "picked"]
        for movie in movies:
            reached = (
                order
                if movie["state"] == "done"
                else order[: order.index(movie.get("failed_step", "import"))]
            )
            for step in reached:
                attr = attrs[order.index(step)]
                setattr(counts, attr, getattr(counts, attr) + 1)
            if movie["state"] == "done":
                counts.done += 1
                counts.particles += int(movie.get("particles", 0))
            else:
                counts.failed += 1
                reasons[f"{movie.get('failed_step')}: {movie.get('reason', '')}"[:200]] += 1
