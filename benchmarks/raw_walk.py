"""``extra.raw`` of a big raw folder: full walk (``raw_info``) against an incremental re-walk
(``RawWalker``) after a few new files, at 20,000 and 100,000 movies.

The folder is EPU-like (``Images-Disc1/GridSquare_*/Data``, 50 movies a folder, each with
its ``.xml`` and ``.jpg``; empty files, made hours old as in a long session) in a temporary
folder that is removed at the end. Local disk, warm cache: NFS is slower for both.

    .venv/bin/python benchmarks/raw_walk.py [--movies 20000 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from emotf.emhub.raw_stats import raw_info
from emotf.emhub.raw_walker import RawWalker

PER_FOLDER = 50


def build(raw: Path, movies: int, old: float) -> None:
    for square in range((movies + PER_FOLDER - 1) // PER_FOLDER):
        data = raw / "Images-Disc1" / f"GridSquare_{square}" / "Data"
        data.mkdir(parents=True)
        for m in range(min(PER_FOLDER, movies - square * PER_FOLDER)):
            stem = f"{data}/FoilHole_{square}_Data_{m}"
            for name in (f"{stem}_fractions.tiff", f"{stem}.xml", f"{stem}.jpg"):
                with open(name, "wb"):
                    pass
                os.utime(name, (old, old))
    for folder, _dirs, _files in os.walk(raw):
        os.utime(folder, (old, old))


def timed(label: str, func: object) -> object:
    start = time.perf_counter()
    result = func()  # type: ignore[operator]
    print(f"  {label:<38} {time.perf_counter() - start:8.3f} s")
    return result


def run(movies: int) -> None:
    with tempfile.TemporaryDirectory(prefix="emotf-rawwalk-") as tmp:
        raw = Path(tmp) / "raw"
        start = time.perf_counter()
        build(raw, movies, time.time() - 3 * 3600)
        print(f"{movies} movies, {3 * movies} files (built in {time.perf_counter() - start:.1f} s)")
        timed("full walk raw_info", lambda: raw_info(raw))
        walker = RawWalker()
        timed("RawWalker first walk (cold cache)", lambda: walker.info(raw))
        timed("RawWalker re-walk, nothing new", lambda: walker.info(raw))
        new = raw / "Images-Disc1" / "GridSquare_new" / "Data"
        new.mkdir(parents=True)
        for m in range(3):
            (new / f"FoilHole_new_Data_{m}_fractions.tiff").write_bytes(b"x" * 10)
        info = timed("RawWalker re-walk after 3 new files", lambda: walker.info(raw))
        print(f"  folders re-listed: {walker.listed}; equal to the full walk: "
              f"{info == raw_info(raw)}")  # fmt: skip
        tracemalloc.start()
        other = RawWalker()
        other.info(raw)
        print(f"  walker cache memory: {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB")
        tracemalloc.stop()
        del other
        shutil.rmtree(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, nargs="+", default=[20000, 100000])
    for movies in parser.parse_args().movies:
        run(movies)


if __name__ == "__main__":
    main()
