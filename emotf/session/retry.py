"""``emotf retry-failed FOLDER``: queue the failed movies of a processing folder again.

The failed movies (and those of batches the worker gave up on) go into one new immutable
batch manifest; a running worker or ``emotf run`` processes it like any new batch, and a
person can run ``snakemake Results/<batch>.json``. Only a movie's newest batch counts, so
counts stay exact. Earlier outputs are kept for reference; nothing is deleted except
emotf's own "batch given up" markers of the re-queued batches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .batches import (
    Manifest,
    MovieEntry,
    list_batches,
    manifest_path,
    read_manifest,
    write_manifest,
)
from .otf import FAILED_DIR
from .progress import ProgressReader


def failed_entries(folder: Path) -> tuple[list[MovieEntry], list[Path]]:
    reader = ProgressReader(folder)
    owner = reader.owners()
    failed = {r["key"] for r in reader.summaries() if r["state"] == "failed"}
    markers = (
        sorted((folder / FAILED_DIR).glob("b*.json")) if (folder / FAILED_DIR).is_dir() else []
    )
    given_up = {p.stem for p in markers}
    entries: dict[str, MovieEntry] = {}
    for batch in list_batches(folder):
        for movie in read_manifest(manifest_path(folder, batch)).movies:
            current = owner.get(movie.key) == batch
            if current and (movie.key in failed or batch in given_up):
                entries[movie.key] = movie
    return list(entries.values()), markers


def retry_failed(folder: Path) -> Manifest | None:
    entries, markers = failed_entries(folder)
    if not entries:
        return None
    existing = list_batches(folder)
    number = int(existing[-1][1:]) + 1 if existing else 1
    now = time.time()
    again = [MovieEntry(m.key, m.path, m.size, m.mtime, m.found, now) for m in entries]
    manifest = write_manifest(folder, again, number)
    for marker in markers:
        marker.unlink()
    return manifest


def cmd_retry(args: argparse.Namespace) -> int:
    manifest = retry_failed(Path(args.folder))
    if manifest is None:
        print("no failed movies")
    else:
        print(
            f"queued {len(manifest.movies)} failed movies as batch {manifest.batch}; "
            f"run `emotf run` again or `snakemake Results/{manifest.batch}.json`"
        )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("retry-failed", help="queue the failed movies of a folder again")
    p.add_argument("folder", help="processing folder (the one with config.yaml)")
    p.set_defaults(func=cmd_retry)
