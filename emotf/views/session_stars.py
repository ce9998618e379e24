"""Session STAR files kept up to date from per-batch parts, at the cost of the new batch.

For every session file the journal (:mod:`emotf.views.journal`) records the parts it holds,
its byte length, optics groups and columns. An update builds the parts of newly finished
batches (:mod:`emotf.views.star_parts`), then per file either appends the new parts' rows
(the file is the length recorded, the new parts only extend its list, bring no new optics
group or column, and no row of theirs or of the file has been superseded) or reassembles it
from all parts (temporary file + ``os.replace``). An append is announced in the journal
first, so one cut short by a kill is undone (the file truncated to its recorded length) at
the next update. A file emotf did not write is never touched (:class:`emotf.views.made.MadeFiles`).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..config import Config
from ..fsutil import publish
from ..pipeline import load_pipeline
from ..session.batches import Owners, batch_keys, list_batches, result_stamps
from . import journal as jn
from .assemble import Layout, head, plan, write_rows
from .made import MadeFiles
from .star_parts import (
    TableSpec,
    build_part,
    parts_dir,
    read_part,
    session_specs,
    signature,
    spec_columns,
)

log = logging.getLogger(__name__)


class Update:
    """One update of a folder's session STAR files."""

    def __init__(self, out_dir: Path, config: Config, rebuild: bool) -> None:
        self.out_dir = Path(out_dir)
        self.folder = parts_dir(self.out_dir)
        self.config = config
        self.pipeline = load_pipeline(self.out_dir, config)
        self.specs = session_specs(self.pipeline)
        self.sig = signature(self.pipeline, self.specs, config)
        acq = config["acquisition"]
        self.acq = [float(acq["cs"]), float(acq["amplitude_contrast"])]
        self.rebuild = rebuild
        self.journal = jn.load(self.folder, self.sig)
        if rebuild:
            self.journal.update(parts={}, files={})
        self.made = MadeFiles(self.out_dir)
        self.metas: dict[str, dict[str, Any]] = {}
        self.owners = Owners()
        self.dropped: dict[str, int] = {}  # batch -> its rows a later batch supersedes
        self.touched: list[str] = []  # files written, recorded in made.json at the end

    def save(self) -> None:
        jn.save(self.folder, self.journal)

    def run(self) -> dict[str, int]:
        jn.recover(self.journal, self.out_dir, self.made)
        batches = list_batches(self.out_dir)
        self.owners.update(batches, lambda new: batch_keys(self.out_dir, new))
        superseded = {b: len(self.owners.superseded_in(b)) for b in batches}
        self.dropped = {b: n for b, n in superseded.items() if n}
        order = self.parts(batches)
        written: dict[str, int] = {}
        appends: list[tuple[TableSpec, Layout, list[str]]] = []
        for spec in self.specs:
            if not self.made.may_write(spec.file):
                continue
            layout, new = self._appendable(spec, order)
            if layout is None:
                written[spec.file] = self.reassemble(spec, order)
            else:
                appends.append((spec, layout, new))
        if appends:
            self.append(appends)
        for spec, _layout, _new in appends:
            written[spec.file] = self.journal["files"][spec.file]["rows"]
        jn.record_made(self.made, self.touched)
        names = {s.file for s in self.specs}
        self.journal["files"] = {k: v for k, v in self.journal["files"].items() if k in names}
        self.save()
        return written

    def _drop(self, batch: str) -> set[str]:
        return set(self.owners.superseded_in(batch))

    # -- parts ------------------------------------------------------------------------
    def parts(self, batches: list[str]) -> list[str]:
        """Build the parts of batches finished (or rerun) since; the batches with parts."""
        finished = {batch: list(stamp) for batch, stamp in result_stamps(self.out_dir).items()}
        known = self.journal["parts"]
        order = []
        for batch in batches:
            source = finished.get(batch)
            if source is None:
                known.pop(batch, None)
                continue
            if known.get(batch) != source:
                part = None if self.rebuild else read_part(self.out_dir, batch)
                if part is None or part["sig"] != self.sig or part["source"] != source:
                    try:
                        part = self._build(batch, source)
                    except (OSError, ValueError, KeyError) as exc:
                        log.warning("batch %s not in the session STAR files yet: %s", batch, exc)
                        known.pop(batch, None)
                        continue
                self.metas[batch] = part
                known[batch] = source
            order.append(batch)
        for batch in set(known) - set(order):
            known.pop(batch)
        return order

    def _build(self, batch: str, source: list[int]) -> dict[str, Any]:
        return build_part(
            self.out_dir, batch, self.pipeline, self.specs, self.config, self.sig, source
        )

    def meta(self, batch: str) -> dict[str, Any]:
        if batch not in self.metas:
            part = read_part(self.out_dir, batch)
            if part is None or part["sig"] != self.sig:
                part = self._build(batch, self.journal["parts"][batch])
            self.metas[batch] = part
        return self.metas[batch]

    # -- files ------------------------------------------------------------------------
    def _appendable(self, spec: TableSpec, order: list[str]) -> tuple[Layout | None, list[str]]:
        """The file's layout and its new parts when they can be appended, else (None, [])."""
        entry = self.journal["files"].get(spec.file)
        try:
            size = os.lstat(self.out_dir / spec.file).st_size
        except FileNotFoundError:
            return None, []
        if entry is None or size != entry["length"] or entry["acq"] != self.acq:
            return None, []
        held = entry["parts"]
        if order[: len(held)] != held:
            return None, []
        dropped = self.dropped
        if {b: n for b, n in dropped.items() if b in set(held)} != entry["dropped"]:
            return None, []
        new = order[len(held) :]
        if any(b in dropped for b in new):
            return None, []
        layout = Layout(entry["columns"], entry["optics"], entry["rows_optics"], entry["grouped"])
        for batch in new:
            meta = self.meta(batch)["tables"][spec.file]
            if meta["rows"] and meta["columns"] != layout.columns:
                return None, []
            mapping = {}
            for token, key, _row in meta["optics"]:
                number = layout.known(key)
                if number is None:
                    return None, []
                mapping[token] = number
            layout.mappings[batch] = mapping
        return layout, new

    def _entry(
        self, spec: TableSpec, layout: Layout, parts: list[str], length: int, rows: int
    ) -> None:
        held = set(parts)
        self.journal["files"][spec.file] = {
            "parts": parts,
            "length": length,
            "rows": rows,
            "acq": self.acq,
            "columns": layout.columns,
            "optics": layout.optics,
            "rows_optics": layout.rows,
            "grouped": layout.grouped,
            "dropped": {b: n for b, n in self.dropped.items() if b in held},
        }

    def reassemble(self, spec: TableSpec, order: list[str]) -> int:
        """Write the file from all its parts (temporary file, then ``os.replace``)."""
        metas = {b: self.meta(b) for b in order}
        drops = {b: self._drop(b) for b in order}
        columns = [] if spec.star.merge else spec_columns(self.pipeline, spec)[0]
        layout = plan(self.out_dir, spec, columns, order, metas, drops)
        path = self.out_dir / spec.file
        jn.announce(self.journal, spec.file, self.made)
        self.save()
        fd, tmp = tempfile.mkstemp(prefix=f".{spec.file}.", suffix=".tmp", dir=self.out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(head(spec, layout, self.acq))
                rows = write_rows(out, self.out_dir, spec, layout, order, metas, drops)
                out.flush()
                os.fsync(out.fileno())
            publish(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.touched.append(spec.file)
        self._entry(spec, layout, order, os.lstat(path).st_size, rows)
        self.journal["pending"].pop(spec.file)
        return rows

    def append(self, appends: list[tuple[TableSpec, Layout, list[str]]]) -> None:
        """Append the new parts' rows to each file; announced in the journal first."""
        texts = []
        for spec, layout, new in appends:
            metas = {b: self.meta(b) for b in new}
            buffer = io.StringIO()
            write_rows(buffer, self.out_dir, spec, layout, new, metas, {})
            data = buffer.getvalue().encode("utf-8")
            entry = self.journal["files"][spec.file]
            texts.append((spec, layout, new, data))
            span = {"from": entry["length"], "to": entry["length"] + len(data)}
            jn.announce(self.journal, spec.file, self.made, **span)
        self.save()
        for spec, layout, new, data in texts:
            entry = self.journal["files"][spec.file]
            jn.write_at(self.out_dir / spec.file, entry["length"], data)
            self.touched.append(spec.file)
            added = sum(self.meta(b)["tables"][spec.file]["rows"] for b in new)
            self._entry(
                spec,
                layout,
                entry["parts"] + new,
                entry["length"] + len(data),
                entry["rows"] + added,
            )
        self.journal["pending"] = {}


def update_session_stars(out_dir: Path, config: Config, rebuild: bool = False) -> dict[str, int]:
    """Bring the folder's session STAR files up to date; rows per file written. With
    ``rebuild``, forget the journal and assemble every file again from rebuilt parts."""
    with jn.locked(parts_dir(Path(out_dir))):
        return Update(Path(out_dir), config, rebuild).run()
