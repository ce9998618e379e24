"""Progress of a processing folder, read from the files the pipeline writes.

Counts never come from Snakemake's log: they come from the batch manifests (movies handed
to the pipeline), each step's per-batch JSON while a batch runs, and the per-batch
``Summary/<batch>.json`` once it has finished. A movie counts at a step when that step's
output says ok for it, before and after its batch finishes, so counts never go down.
Parsed files are cached by mtime, so a scan of a 20,000-movie session reads what changed.

:meth:`ProgressReader.snapshot` is the one read model of a session: counts, the current
record of every finished movie and the ledger, built in one pass; the worker, EMhub events,
``emotf status`` and the report all use it.
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
from .ledger import LedgerRow, row_of_record, row_of_steps
from .pipeline import Pipeline, load_pipeline, upgrade_record
from .steps.results import summarize


@dataclass
class Counts:
    """Movies per step (by count label, in pipeline order), totals such as ``particles``,
    and the session's movie and batch counts."""

    steps: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    movies_batched: int = 0
    done: int = 0
    failed: int = 0
    batches: int = 0
    batches_done: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> int:
        for table in ("steps", "totals"):
            values = self.__dict__.get(table, {})
            if name in values:
                return int(values[name])
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "movies_batched": self.movies_batched,
            **self.steps,
            "done": self.done,
            "failed": self.failed,
            **self.totals,
            "batches": self.batches,
            "batches_done": self.batches_done,
        }


@dataclass
class Snapshot:
    pipeline: Pipeline
    counts: Counts
    records: list[dict[str, Any]]  # current summary record of every finished movie
    rows: list[LedgerRow]  # every batched movie (finished or not)


def group_reason(record: dict[str, Any]) -> str:
    """The failure's group: step and reason, without the movie's own name."""
    reason = str(record.get("reason", ""))
    key = str(record.get("key", ""))
    for name in {key, os.path.basename(key), os.path.splitext(os.path.basename(key))[0]} - {""}:
        reason = reason.replace(name, "<movie>")
    return f"{record.get('failed_step')}: {reason}"[:200]


@dataclass
class _Part:
    """What one finished batch adds to a snapshot."""

    steps: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    done: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list)
    rows: list[LedgerRow] = field(default_factory=list)


class _Cache:
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

    def drop(self, path: Path) -> None:
        for transformed in (False, True):
            self._data.pop((os.fspath(path), transformed), None)


class ProgressReader:
    """Incremental reader of a processing folder's outputs.

    For a finished batch it reads ``Summary/<batch>.json`` (slim records), not the full
    ``Results/<batch>.json``, and no longer needs the batch's manifest or step files.
    :meth:`results` gives the full records, for the writers of STAR files and reports.
    """

    def __init__(self, out_dir: Path, pipeline: Pipeline | None = None) -> None:
        self.out_dir = Path(out_dir)
        self._cache = _Cache()
        self._parts: dict[str, tuple[Any, frozenset[str], Pipeline, _Part]] = {}
        config = _folder_config(self.out_dir)
        self._mark = _rules_mark(self.out_dir, config)
        self.pipeline = pipeline or load_pipeline(self.out_dir, config)

    def refresh(self, config: dict[str, Any] | None = None) -> bool:
        """Reload the pipeline when a rule file was added, changed or rejected by the last
        Snakemake parse (staff add a step during a session); True if it changed. ``config``:
        the folder's configuration when the caller holds it (else read from the folder)."""
        config = _folder_config(self.out_dir) if config is None else config
        mark = _rules_mark(self.out_dir, config)
        if mark == self._mark:
            return False
        self._mark = mark
        pipeline = load_pipeline(self.out_dir, config)
        changed = pipeline.steps != self.pipeline.steps or pipeline.errors != self.pipeline.errors
        self.pipeline = pipeline
        return changed

    def _slim(self, result: dict[str, Any]) -> dict[str, Any]:
        fields = self.pipeline.summary_fields()
        return {**result, "movies": [summarize(m, fields) for m in result["movies"]]}

    def read(self, path: Path) -> Any | None:
        """A JSON file of the folder (cached by mtime); None while missing or being replaced."""
        return self._cache.get(path)

    def summary(self, batch: str) -> dict[str, Any] | None:
        """The slim results of a finished batch (records completed by
        :func:`upgrade_record`); None while it runs. Folders processed before summaries
        existed fall back to the full results, slimmed."""
        data = self._cache.get(self.out_dir / "Summary" / f"{batch}.json", _upgraded)
        if data is None:
            data = self._cache.get(
                self.out_dir / "Results" / f"{batch}.json", lambda r: _upgraded(self._slim(r))
            )
        if data is not None:
            self._cache.drop(self.out_dir / "batches" / f"{batch}.json")
        return data

    def batch_keys(self, batch: str) -> list[str]:
        """Keys of the movies a batch holds (from its summary once finished, else manifest)."""
        data = self.summary(batch) or self._cache.get(self.out_dir / "batches" / f"{batch}.json")
        return [m["key"] for m in (data or {}).get("movies", [])]

    def owners(self, batches: list[str] | None = None) -> dict[str, str]:
        """Movie key → the last batch that holds it (``retry-failed`` re-queues a movie in a
        new batch; only its newest batch counts)."""
        owner: dict[str, str] = {}
        for batch in list_batches(self.out_dir) if batches is None else batches:
            for key in self.batch_keys(batch):
                owner[key] = batch
        return owner

    def summaries(self) -> list[dict[str, Any]]:
        """The current slim record of every movie whose batch has finished."""
        return self.snapshot().records

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
            records.extend(
                upgrade_record(m) for m in data["movies"] if owner.get(m["key"]) == batch
            )
        return records

    def counts(self) -> Counts:
        return self.snapshot().counts

    def snapshot(self) -> Snapshot:
        """Counts, finished records and ledger rows of the whole folder, in one pass. A
        finished batch's part is computed once and reused while its summary and the movies
        it owns stay the same, so a scan costs little more than the running batches."""
        batches = list_batches(self.out_dir)
        owner = self.owners(batches)
        counts = Counts(
            steps={s.count: 0 for s in self.pipeline},
            totals={f.total: 0 for _s, f in self.pipeline.totals() if f.total},
        )
        counts.batches, counts.movies_batched = len(batches), len(owner)
        held = Counter(k for b in batches for k in self.batch_keys(b))
        snap = Snapshot(self.pipeline, counts, [], [])
        reasons: Counter[str] = Counter()
        for batch in batches:
            result = self.summary(batch)
            if result is None:
                self._count_running(snap, batch, owner)
                continue
            counts.batches_done += 1
            part = self._finished_part(batch, result, owner)
            for label, n in part.steps.items():
                counts.steps[label] += n
            for label, n in part.totals.items():
                counts.totals[label] += n
            counts.done += part.done
            counts.failed += part.failed
            reasons.update(part.reasons)
            snap.records.extend(part.records)
            snap.rows.extend(part.rows)
        counts.failures = dict(reasons)
        for row in snap.rows:
            row.attempts = held.get(row.key, 1)
        return snap

    def _finished_part(self, batch: str, result: dict[str, Any], owner: dict[str, str]) -> _Part:
        movies = result["movies"]
        superseded = frozenset(m["key"] for m in movies if owner.get(m["key"]) != batch)
        memo = self._parts.get(batch)
        if (
            memo is not None
            and memo[0] is result
            and memo[1] == superseded
            and memo[2] is self.pipeline
        ):
            return memo[3]
        for step in self.pipeline:  # read while running; not needed now
            self._cache.drop(self.out_dir / step.output_of(batch))
        part = _Part()
        for movie in (m for m in movies if m["key"] not in superseded):
            self._count_record(part, movie)
        self._parts[batch] = (result, superseded, self.pipeline, part)
        return part

    def _count_record(self, part: _Part, movie: dict[str, Any]) -> None:
        steps = movie.get("steps", {})
        for step in self.pipeline:
            if steps.get(step.name) is True:
                part.steps[step.count] += 1
        for step, f in self.pipeline.totals():
            if steps.get(step.name) is True and f.total:
                part.totals[f.total] += int(movie.get(f.name) or 0)
        if movie["state"] == "done":
            part.done += 1
        else:
            part.failed += 1
            part.reasons[group_reason(movie)] += 1
        part.records.append(movie)
        part.rows.append(row_of_record(movie))

    def _count_running(self, snap: Snapshot, batch: str, owner: dict[str, str]) -> None:
        entries: dict[str, dict[str, Any]] = {}
        for step in self.pipeline:
            data = self._cache.get(self.out_dir / step.output_of(batch), sticky=True)
            movies = {
                k: m for k, m in (data or {}).get("movies", {}).items() if owner.get(k) == batch
            }
            entries[step.name] = movies
            snap.counts.steps[step.count] += sum(1 for m in movies.values() if m.get("ok"))
            for f in step.fields:
                if f.total:
                    snap.counts.totals[f.total] += sum(
                        int(m.get(f.name) or 0) for m in movies.values() if m.get("ok")
                    )
        manifest = self._cache.get(self.out_dir / "batches" / f"{batch}.json")
        for movie in (manifest or {}).get("movies", []):
            if owner.get(movie["key"]) == batch:
                snap.rows.append(row_of_steps(self.pipeline, movie, entries))


def _upgraded(result: dict[str, Any]) -> dict[str, Any]:
    for movie in result.get("movies", []):
        upgrade_record(movie)
    return result


def _rules_mark(out_dir: Path, config: dict[str, Any]) -> list[tuple[str, int]]:
    """What decides the folder's pipeline: its rule files and the last parse's record."""
    from .pipeline.load import STATE, rule_dirs_of, rule_files

    paths = [*rule_files(out_dir / "workflow", rule_dirs_of(config)), out_dir / STATE]
    mark = []
    for path in paths:
        try:
            mark.append((os.fspath(path), os.stat(path).st_mtime_ns))
        except OSError:
            mark.append((os.fspath(path), 0))
    return mark


def _folder_config(out_dir: Path) -> dict[str, Any]:
    """The folder's config values that decide its pipeline (facility rule folders)."""
    import yaml

    try:
        data = yaml.safe_load((out_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
