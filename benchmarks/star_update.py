"""Micro-benchmark: the per-batch update of the session STAR files at two session sizes.

``python benchmarks/star_update.py [--sizes 1000 50000] [--batch 200] [--full]`` synthesises a
folder per size (manifests, full results, summaries and per-batch particle STAR files in
the formats the pipeline writes), brings its session STAR files up to date once, then
times the update after each of ``--repeat`` new batches: in this process, and as the
worker runs it (``python -m emotf.outputs --no-report``, wall time and peak RSS). With
``--full`` it also times the reference full rebuild. Prints one line per size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as C

from emotf.config import Config, build_config, write_config
from emotf.fsutil import atomic_write_json
from emotf.pipeline import builtin_pipeline
from emotf.session.batches import MovieEntry, write_manifest
from emotf.steps.results import summary_text
from emotf.views.session_stars import update_session_stars

STEPS = builtin_pipeline().names


def _record(batch: int, i: int) -> dict[str, Any]:
    key = f"Images-Disc1/GridSquare_{batch}/Data/FoilHole_{i}_Data_{batch}_fractions.tiff"
    stem = f"b{batch:06d}/{key[:-5]}"
    fail = "ctffind" if i % 25 == 3 else None
    steps = {s: s != fail for s in STEPS if not (fail and s == "extract")}
    return {
        "key": key,
        "state": "failed" if fail else "done",
        "found": 1.7e9 + i,
        "times": dict.fromkeys(steps, 1.7e9 + i),
        "steps": steps,
        "notes": {},
        "movie": f"Movies/{key}",
        "pixel_size": 0.83,
        "voltage": 300.0,
        "micrograph": f"MotionCorr/{stem}.mrc",
        "motion_star": f"MotionCorr/{stem}.star",
        "shifts": [[0.1 * f, -0.05 * f] for f in range(40)],
        "accum_motion_total_px": 12.34567 + i % 7,
        "accum_motion_early_px": 8.1,
        "accum_motion_late_px": 4.24567,
        "ctf_image": f"CtfFind/{stem}.ctf:mrc",
        "defocus_u": 15000.0 + i % 900,
        "defocus_v": 14500.0 + i % 900,
        "astigmatism": 500.0,
        "defocus_angle": 12.5,
        "ctf_score": 0.25478,
        "ctf_resolution": 4.0 + (i % 5) * 0.7,
        "coordinates": f"AutoPick/{stem}_autopick.star",
        "particles": 40,
        **({"failed_step": fail, "reason": "no fit"} if fail else {}),
    }


def _particles(out: Path, batch: int, records: list[dict[str, Any]]) -> None:
    rows = [
        f"{10.0 * n:12.6f} {20.0 * n:12.6f} {n:06d}@Extract/b{batch:06d}/x.mrcs "
        f"{r['micrograph']} {1:12d} "
        for r in records
        if r["steps"].get("extract")
        for n in range(1, 41)
    ]
    path = out / "Extract" / f"b{batch:06d}" / "particles.star"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n# version 30001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n_rlnOpticsGroup #2 \n"
        "_rlnMicrographOriginalPixelSize #3 \n_rlnImagePixelSize #4 \n_rlnImageSize #5 \n"
        "opticsGroup1 1 0.830000 4.980000 64 \n \n\n# version 30001\n\ndata_particles\n\n"
        "loop_ \n_rlnCoordinateX #1 \n_rlnCoordinateY #2 \n_rlnImageName #3 \n"
        "_rlnMicrographName #4 \n_rlnOpticsGroup #5 \n" + "\n".join(rows) + "\n \n"
    )


def add_batch(out: Path, batch: int, size: int) -> None:
    """One finished batch of ``size`` movies, as ``batch_results`` leaves it."""
    records = [_record(batch, i) for i in range(size)]
    entries = [MovieEntry(r["key"], f"/raw/{r['key']}", 10, 1.0, 1.0, 1.0) for r in records]
    write_manifest(out, entries, batch)
    _particles(out, batch, records)
    result = {"batch": f"b{batch:06d}", "finished": time.time(), "movies": records}
    (out / "Summary").mkdir(exist_ok=True)
    (out / "Summary" / f"b{batch:06d}.json").write_text(summary_text(result))
    atomic_write_json(out / "Results" / f"b{batch:06d}.json", result)


def _child(out: Path) -> tuple[float, int]:
    """Wall time and peak RSS (MB) of ``python -m emotf.outputs --no-report``."""
    m = C.measure([sys.executable, "-m", "emotf.outputs", "--no-report", str(out)])
    C.check(m, "emotf.outputs")
    # sampled RSS, not RUSAGE_CHILDREN: Linux carries a parent's size into its child at exec
    return m.seconds, m.peak_tree_rss // C.MB


def measure(
    root: Path, movies: int, batch: int, repeat: int, full: bool, config: Config
) -> dict[str, Any]:
    out = root / f"m{movies}"
    out.mkdir()
    write_config(out / "config.yaml", config)
    first = max(1, movies // batch - 2 * repeat)
    for number in range(1, first + 1):
        add_batch(out, number, batch)
    start = time.perf_counter()
    update_session_stars(out, config)
    catch_up = time.perf_counter() - start
    inproc, child, rss = [], [], 0
    for n in range(first + 1, first + 2 * repeat + 1):
        add_batch(out, n, batch)
        if n % 2:
            start = time.perf_counter()
            update_session_stars(out, config)
            inproc.append(time.perf_counter() - start)
        else:
            wall, rss = _child(out)
            child.append(wall)
    figures = {
        "movies": (first + 2 * repeat) * batch,
        "first_update_s": round(catch_up, 2),
        "per_batch_s": round(statistics.median(inproc), 4),
        "per_batch_child_s": round(statistics.median(child), 3),
        "child_peak_rss_mb": rss,
    }
    if full:
        from emotf.outputs import write_session_stars_full

        start = time.perf_counter()
        write_session_stars_full(out, config)
        figures["full_rebuild_s"] = round(time.perf_counter() - start, 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/star_update.py", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="timed batches per way")
    parser.add_argument("--full", action="store_true", help="also time the full rebuild")
    args = parser.parse_args(argv)
    config = build_config(
        {"session_dir": "/raw", "acquisition": {"cs": 2.7, "amplitude_contrast": 0.07}}
    )
    with tempfile.TemporaryDirectory(prefix="emotf-star-bench-") as tmp:
        for movies in args.sizes:
            figures = measure(Path(tmp), movies, args.batch, args.repeat, args.full, config)
            print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
