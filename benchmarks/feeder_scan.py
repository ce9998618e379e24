"""Feeder restart: time to open an OtfSession and run its first raw-folder scan.

Writes an EPU layout of tiny files (``--per-square`` movies per ``GridSquare_*/Data`` folder,
each movie an empty ``*_fractions.tiff`` plus a small ``.xml``, as EPU writes them), hands
every movie out in manifests of ``--batch-size`` (as a finished session left them) and then,
in fresh processes, opens ``OtfSession`` over the processing folder and times its first
``scanner.scan()`` — the figure ``benchmarks/scale.py`` reports — three ways:

* ``no index``: ``.emotf/feeder.json`` and ``.emotf/assigned.txt`` deleted first (the cost of
  a folder written by an older emotf, or of a lost index: a full scan);
* ``index``: the index the previous process left (the normal restart);
* ``index, 1 new movie``: the index plus one new movie in an old folder and one new folder.

Goal (issue #18): first scan <= 2 s at 100,000 movies.

    python benchmarks/feeder_scan.py                       # 20,000 and 100,000 movies
    python benchmarks/feeder_scan.py --movies 20000
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

GLOBS = None  # the schema's default globs (four patterns, one folder pattern)


def write_layout(session: Path, n_movies: int, per_square: int) -> None:
    """``n_movies`` empty movies and tiny XMLs in an EPU folder layout (quick to write)."""
    session.mkdir(parents=True)
    (session / "EpuSession.dm").write_text("<EpuSessionXml/>\n")
    for n in range(n_movies):
        folder = session / "Images-Disc1" / f"GridSquare_{1000 + n // per_square}" / "Data"
        if n % per_square == 0:
            folder.mkdir(parents=True)
        base = folder / f"FoilHole_{20000 + n}_Data_{30000 + n}_{n % 7}_20260101_090000"
        with open(f"{base}.xml", "w") as handle:
            handle.write("<x/>")
        open(f"{base}_fractions.tiff", "w").close()
    old = time.time() - 3600  # a finished acquisition: nothing changed in the last hour
    for folder in session.rglob("*"):
        os.utime(folder, (old, old))


def hand_out(out: Path, session: Path, batch_size: int) -> None:
    """A processing folder whose manifests hold every movie (a finished session)."""
    from emotf.project import prepare_folder
    from emotf.session.batches import MovieEntry, write_manifest

    prepare_folder(out, session, {"batches": {"size": batch_size, "settle_seconds": 0,
                                              "tail_seconds": 0}})  # fmt: skip
    movies = sorted(session.glob("Images-Disc1/GridSquare_*/Data/*_fractions.tiff"))
    now = time.time()
    for start in range(0, len(movies), batch_size):
        entries = [
            MovieEntry(
                key=p.relative_to(session).as_posix(),
                path=str(p),
                size=0,
                mtime=now - 3600,
                found=now,
                stable=now,
            )  # fmt: skip
            for p in movies[start : start + batch_size]
        ]
        write_manifest(out, entries, start // batch_size + 1)


def probe(out: Path) -> int:
    """In a fresh process: open an OtfSession, time its first feeder scan, print JSON."""
    from emotf.config import read_config
    from emotf.session.otf import OtfOptions, OtfSession

    t = time.perf_counter()
    session = OtfSession(out, read_config(out / "config.yaml"), OtfOptions(once=True))
    opened = time.perf_counter() - t
    t = time.perf_counter()
    complete = session.scanner.scan()
    scanned = time.perf_counter() - t
    stats = session.raw_stats()
    peak = C.peak_rss_mb()
    print(json.dumps({"open_s": opened, "scan_s": scanned, "new": len(complete),
                      "movies": stats["movies"], "known": len(session.scanner.known),
                      "peak_rss_mb": peak}))  # fmt: skip
    return 0


def run_probe(out: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--probe", str(out)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def drop_index(out: Path) -> None:
    for name in ("feeder.json", "assigned.txt"):
        (out / ".emotf" / name).unlink(missing_ok=True)


def measure(root: Path, n_movies: int, args: Any, report: C.Report) -> None:
    session, out = root / f"raw_{n_movies}", root / f"raw_{n_movies}_OTF"
    for folder in (session, out):
        if folder.exists():
            shutil.rmtree(folder)
    t = time.perf_counter()
    write_layout(session, n_movies, args.per_square)
    hand_out(out, session, args.batch_size)
    print(f"{n_movies} movies written in {time.perf_counter() - t:.0f} s", flush=True)
    drop_index(out)
    cold = run_probe(out)  # (this process writes the index at its first scan)
    warm = run_probe(out)
    data = session / "Images-Disc1" / f"GridSquare_{1000 + 3}" / "Data"
    open(data / "new_fractions.tiff", "w").close()
    new_square = session / "Images-Disc1" / "GridSquare_999999" / "Data"
    new_square.mkdir(parents=True)
    open(new_square / "new_fractions.tiff", "w").close()
    old = time.time() - 600
    for path in (data, new_square, new_square.parent, new_square.parent.parent):
        os.utime(path, (old, old))
    grown = run_probe(out)
    n = f"{n_movies:,}"
    for label, fig in (("no index", cold), ("index", warm), ("index, 2 new movies", grown)):
        note = f"{fig['movies']} movies counted, {fig['new']} new"
        report.add(f"{n}: first scan ({label})", fig["scan_s"], "s", goal=2, note=note)
        report.add(f"{n}: OtfSession open ({label})", fig["open_s"], "s")
        report.add(f"{n}: peak RSS of the restarted process ({label})", fig["peak_rss_mb"], "MB")
    assert grown["new"] == 2 and grown["movies"] == n_movies + 2, grown
    shutil.rmtree(session)
    shutil.rmtree(out)


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--movies", type=int, action="append", help="default: 20000 and 100000")
    p.add_argument("--per-square", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--probe", help="(internal) time one restart of this processing folder")
    args = p.parse_args()
    if args.probe:
        return probe(Path(args.probe))
    report = C.Report("Feeder first scan after a restart (EPU layout, empty movies)")
    with C.work_folder(args, "feeder_scan") as root:
        for n_movies in args.movies or [20000, 100000]:
            measure(root, n_movies, args, report)
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
