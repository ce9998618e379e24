"""Progress of a processing folder, read from the files the pipeline writes.

Counts never come from Snakemake's log: they come from the batch manifests (movies handed
to the pipeline), each step's per-batch JSON while a batch runs, and the per-batch
``Summary/<batch>.json`` once it has finished. A movie counts at a step when that step's
output says ok for it, before and after its batch finishes, so counts never go down.

:meth:`ProgressReader.snapshot` is the one read model of a session: counts and the
session's combined :class:`~emotf.session.aggregate.Part` (statistics' values, ledger times,
curation, notes, failures, recent micrographs), built in one pass; the worker, EMhub events,
``emotf status`` and the report all use it. A finished batch is read once: what it adds is
kept per batch (and in the session index, for the first scan after a restart), so a scan
costs the running batches plus a combination of per-batch numbers, not a walk over every
movie.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fsutil import read_json
from ..pipeline import Pipeline, load_pipeline, upgrade_record
from ..pipeline.load import folder_settings, rules_mark
from ..steps.results import summarize
from . import aggregate as agg
from .batches import ManifestError, Owners, batch_keys, list_batches
from .json_cache import JsonCache
from .ledger import LedgerRow, row_of_record, row_of_steps
from .progress_parts import Counts, FinishedPart, RunningShare, finished_part
from .session_index import Basis, SessionIndex, signature

__all__ = ["Counts", "ProgressReader", "Snapshot"]

BULK = 8  # more new batches than this: their keys come from the shared key index


@dataclass
class Snapshot:
    pipeline: Pipeline
    counts: Counts
    part: agg.Part  # finished batches' parts combined with the running batches' shares
    running: list[str] = field(default_factory=list)  # batches not finished (queued or running)


class ProgressReader:
    """Incremental reader of a processing folder's outputs.

    For a finished batch it reads ``Summary/<batch>.json`` (slim records) once, or its entry
    in the session index; :meth:`results` gives the full records, for tools.
    """

    def __init__(
        self, out_dir: Path, pipeline: Pipeline | None = None, config: dict[str, Any] | None = None
    ) -> None:
        self.out_dir = Path(out_dir)
        self._cache = JsonCache()
        config = folder_settings(self.out_dir) if config is None else config
        self._mark = rules_mark(self.out_dir, config)
        self.pipeline = pipeline or load_pipeline(self.out_dir, config)
        self.limits: dict[str, Any] = dict(config.get("curation") or {})
        self.index = SessionIndex(self.out_dir)
        self.keys = Owners()
        self._parts: dict[str, FinishedPart] = {}
        self._running: dict[str, RunningShare] = {}
        self._combined: tuple[tuple[int, ...], agg.Part] | None = None

    def refresh(self, config: dict[str, Any] | None = None) -> bool:
        """Reload the pipeline when a rule file was added, changed or rejected by the last
        Snakemake parse (staff add a step during a session); True if it changed. ``config``:
        the folder's configuration when the caller holds it (else read from the folder)."""
        config = folder_settings(self.out_dir) if config is None else config
        self.limits = dict(config.get("curation") or {})
        mark = rules_mark(self.out_dir, config)
        if mark == self._mark:
            return False
        self._mark = mark
        pipeline = load_pipeline(self.out_dir, config)
        changed = pipeline.steps != self.pipeline.steps or pipeline.errors != self.pipeline.errors
        self.pipeline = pipeline
        return changed

    # -- which batch holds which movie ---------------------------------------------------
    def _source(self, batch: str) -> tuple[Path, tuple[int, int]] | None:
        """The finished batch's summary (or, in folders older than summaries, its full
        results) and its (mtime_ns, size); None while the batch runs."""
        for folder in ("Summary", "Results"):
            path = self.out_dir / folder / f"{batch}.json"
            try:
                st = path.stat()
            except OSError:
                continue
            return path, (st.st_mtime_ns, st.st_size)
        return None

    def _load_keys(self, batches: list[str]) -> dict[str, list[str]]:
        """Keys of batches not seen before: from their manifests when they are few (a new
        batch), from the shared key index when many (the first scan after a restart)."""
        if len(batches) > BULK:
            try:
                return batch_keys(self.out_dir, batches)
            except ManifestError:
                pass  # one is being written: each is read on its own below
        keys: dict[str, list[str]] = {}
        for batch in batches:
            data = _read(self.out_dir / "batches" / f"{batch}.json")  # not kept: immutable
            source = self._source(batch) if data is None else None
            if source is not None:  # a finished batch's summary holds the same keys
                data = self._records_of(source[0])
            if data is None:
                break  # retried next scan
            keys[batch] = [m["key"] for m in data.get("movies", [])]
        return keys

    def _records_of(self, path: Path, slim: bool = True) -> dict[str, Any] | None:
        """A batch's records (full results are slimmed unless ``slim`` is false), completed
        by :func:`upgrade_record`; None while the file is being replaced."""
        data = _read(path)
        if data is None:
            return None
        if slim and path.parent.name == "Results":
            fields = self.pipeline.summary_fields()
            data = {**data, "movies": [summarize(m, fields) for m in data["movies"]]}
        for movie in data.get("movies", []):
            upgrade_record(movie)
        return data

    def owners(self, batches: list[str] | None = None) -> dict[str, str]:
        """Movie key → the last batch that holds it (``retry-failed`` re-queues a movie in a
        new batch; only its newest batch counts)."""
        self.keys.update(list_batches(self.out_dir) if batches is None else batches,
                         self._load_keys)  # fmt: skip
        return self.keys.owner

    # -- the read model -----------------------------------------------------------------
    def counts(self) -> Counts:
        return self.snapshot().counts

    def snapshot(self) -> Snapshot:
        """Counts and the combined part of the whole folder, in one pass."""
        batches = list_batches(self.out_dir)
        self.keys.update(batches, self._load_keys)
        sources = {b: self._source(b) for b in batches}
        counts = Counts(
            steps={s.count: 0 for s in self.pipeline},
            totals={f.total: 0 for _s, f in self.pipeline.totals() if f.total},
        )
        counts.batches, counts.movies_batched = len(batches), len(self.keys.owner)
        snap = Snapshot(self.pipeline, counts, agg.Part())
        finished: list[FinishedPart] = []
        shares: list[agg.Part] = []
        common = (signature(self.pipeline.steps), signature(sorted(self.limits.items())))
        for batch in batches:
            source = sources[batch]
            part = self._finished(batch, source, common) if source is not None else None
            if part is None:
                share = self._running_share(batch, common[0])
                share.add_to(counts)
                shares.append(share.part)
                snap.running.append(batch)
                continue
            finished.append(part)
            part.add_to(counts)
        for name in set(self._parts) - set(batches):
            del self._parts[name]
        for name in set(self._running) - set(snap.running):
            del self._running[name]
        done = self._combine_finished(finished)  # the same object while no batch finishes
        snap.part = agg.combine([done, *shares]) if shares else done
        return snap

    def _combine_finished(self, parts: list[FinishedPart]) -> agg.Part:
        ids = tuple(id(p) for p in parts)
        if self._combined is None or self._combined[0] != ids:
            self._combined = (ids, agg.combine(p.part for p in parts))
        return self._combined[1]

    def _finished(
        self, batch: str, source: tuple[Path, tuple[int, int]], common: tuple[str, str]
    ) -> FinishedPart | None:
        basis = Basis(source[1], self.keys.superseded_in(batch), *common)
        memo = self._parts.get(batch)
        if memo is not None and memo.basis == basis:
            return memo
        entry = self.index.get(batch, basis)
        part = FinishedPart.of_json(basis, entry) if entry is not None else None
        if part is None:
            data = self._records_of(source[0])
            if data is None:
                return memo  # being replaced: the last part read, if any
            movies = [m for m in data["movies"] if m["key"] not in basis.superseded]
            part = finished_part(basis, batch, movies, self.pipeline, self.limits)
            self.index.put(batch, basis, part.as_json())
        for step in self.pipeline:  # read while the batch ran; not needed now
            self._cache.drop(self.out_dir / step.output_of(batch))
        self._parts[batch] = part
        return part

    def _running_share(self, batch: str, pipeline_sig: str) -> RunningShare:
        """What a batch that has not finished adds: read again only when one of its step
        outputs (or which of its movies it still holds) changed."""
        paths = [self.out_dir / step.output_of(batch) for step in self.pipeline]
        outputs = [self._cache.get(path, sticky=True) for path in paths]
        stamp = (pipeline_sig, self.keys.holds(batch), self.keys.superseded_in(batch),
                 *(self._cache.version(path) for path in paths))  # fmt: skip
        memo = self._running.get(batch)
        if memo is not None and memo.stamp == stamp:
            return memo
        share = RunningShare(stamp, agg.Part())
        entries = self._step_entries(batch, outputs)
        for step in self.pipeline:
            ok = [m for m in entries[step.name].values() if m.get("ok")]
            share.steps[step.count] += len(ok)
            for f in step.fields:
                if f.total:
                    share.totals[f.total] += sum(int(m.get(f.name) or 0) for m in ok)
        rows = self._running_rows(batch, entries)
        if rows is None:
            return share  # manifest unreadable right now: not kept, read again next tick
        share.part = agg.of_rows(rows, self.pipeline.names)
        self._running[batch] = share
        return share

    def _step_entries(
        self, batch: str, outputs: list[Any] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Step name -> the entries of its output for the movies the batch still holds."""
        if outputs is None:
            outputs = [self._cache.get(self.out_dir / s.output_of(batch), sticky=True)
                       for s in self.pipeline]  # fmt: skip
        owner = self.keys.owner
        return {
            step.name: {
                k: m for k, m in (data or {}).get("movies", {}).items() if owner.get(k) == batch
            }
            for step, data in zip(self.pipeline, outputs, strict=True)
        }

    def _running_rows(
        self, batch: str, entries: dict[str, dict[str, Any]]
    ) -> list[LedgerRow] | None:
        """The rows of a batch's movies it still holds, from its manifest (read, not kept:
        a backlog's manifests would otherwise stay in memory) and its step ``entries``."""
        manifest = _read(self.out_dir / "batches" / f"{batch}.json")
        if manifest is None:
            return None
        owner = self.keys.owner
        return [
            row_of_steps(self.pipeline, movie, entries)
            for movie in manifest.get("movies", [])
            if owner.get(movie["key"]) == batch
        ]

    # -- whole-folder reads, for tools and tests (not used per tick) ----------------------
    def summaries(self) -> list[dict[str, Any]]:
        """The current slim record of every movie whose batch has finished."""
        return self._current("Summary")

    def results(self) -> list[dict[str, Any]]:
        """The current full record of every movie whose batch has finished."""
        return self._current("Results")

    def _current(self, folder: str) -> list[dict[str, Any]]:
        owner = self.owners()
        records: list[dict[str, Any]] = []
        for batch in list_batches(self.out_dir):
            source = self._source(batch)
            if source is None:
                continue
            path = self.out_dir / folder / f"{batch}.json"
            data = self._records_of(path if path.is_file() else source[0], folder == "Summary")
            if data is not None:
                records.extend(m for m in data["movies"] if owner.get(m["key"]) == batch)
        return records

    def rows(self) -> list[LedgerRow]:
        """The ledger row of every batched movie (finished or running), with its attempts."""
        snap = self.snapshot()
        rows = [row_of_record(r) for r in self.summaries()]
        for batch in snap.running:
            rows.extend(self._running_rows(batch, self._step_entries(batch)) or [])
        for row in rows:
            row.attempts = self.keys.held.get(row.key, 1)
        return rows


def _read(path: Path) -> dict[str, Any] | None:
    """A JSON file's content; None while it is missing or being written."""
    try:
        return dict(read_json(path))
    except (OSError, ValueError):
        return None
