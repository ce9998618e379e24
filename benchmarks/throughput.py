"""CPU throughput: movies/hour of each step's CPU backend on this machine, per movie size.

For each size (default 16 movies of 1k×1k×20 and 4 of 4k×4k×40) one batch is run step after
step exactly as the Snakemake rules run it (``emotf.steps.<step>.run`` with the rule's
threads: import 1, motioncor 2, ctffind 2, picking 1; the same configuration as
``emotf demo``), each step timed on its own. 4k movies are slow to simulate, so
``--large-render`` (default 1) distinct movies are rendered and copied under new names up to
``--large-movies``.

    python benchmarks/throughput.py
    python benchmarks/throughput.py --small-movies 2 --large-movies 0
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

# threads: of each rule in workflows/rules/*.smk
STEPS = (("import", 1), ("motioncor", 2), ("ctffind", 2), ("picking", 1))
OUTPUTS = {
    "import": ("Import", "import.json", "movies.star"),
    "motioncor": ("MotionCorr", "motioncor.json", "micrographs.star"),
    "ctffind": ("CtfFind", "ctffind.json", "micrographs_ctf.star"),
    "picking": ("AutoPick", "picking.json", "autopick.star"),
}


def copy_movies(session: Path, truth: Any, total: int) -> None:
    """Copy the rendered movies (and XML) under new FoilHole names up to ``total`` movies."""
    keys = list(truth.movies)
    for n in range(len(keys), total):
        src = keys[n % len(keys)]
        dst = src.replace("FoilHole_", f"FoilHole_9{n:03d}")
        for a, b in ((src, dst), (src.replace("_fractions.tiff", ".xml"),
                                  dst.replace("_fractions.tiff", ".xml"))):  # fmt: skip
            shutil.copyfile(session / a, session / b)


def run_batch(session: Path, out: Path, config: dict[str, Any]) -> dict[str, float]:
    """Run the four steps on one batch of every movie of ``session``; seconds per step."""
    from emotf.config import build_config, deep_merge
    from emotf.session.batches import MovieEntry, write_manifest
    from emotf.steps import ctf, importer, motioncor, picking
    from emotf.steps.base import StepContext

    cfg = build_config(deep_merge({"session_dir": str(session)}, config))
    keys = sorted({p.relative_to(session).as_posix() for g in cfg["movie_globs"]
                   for p in session.glob(g)})  # fmt: skip
    out.mkdir(parents=True)
    now = time.time()
    movies = [MovieEntry(k, str(session / k), (session / k).stat().st_size, now, now, now)
              for k in keys]  # fmt: skip
    write_manifest(out, movies, 1)
    funcs = {"import": importer.run, "motioncor": motioncor.run, "ctffind": ctf.run,
             "picking": picking.run}  # fmt: skip
    inputs = {"manifest": out / "batches" / "b000001.json"}
    seconds: dict[str, float] = {}
    cwd = os.getcwd()
    os.chdir(out)
    try:
        for step, threads in STEPS:
            folder, js, star = OUTPUTS[step]
            outputs = {"json": Path(folder, "b000001", js), "star": Path(folder, "b000001", star)}
            ctx = StepContext("b000001", cfg, dict(inputs), outputs, threads=threads, workdir=out)
            t = time.perf_counter()
            result = funcs[step](ctx)
            seconds[step] = time.perf_counter() - t
            ok = len(result.ok())
            if ok != len(keys):
                print(f"  warning: {step} ok for {ok} of {len(keys)} movies", flush=True)
            inputs[f"{step}_json"] = outputs["json"]
    finally:
        os.chdir(cwd)
    return seconds


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--small-movies", type=int, default=16)
    p.add_argument("--small", default="1024x20", help="size x frames of the small movies")
    p.add_argument("--large-movies", type=int, default=4)
    p.add_argument("--large", default="4096x40", help="size x frames of the large movies")
    p.add_argument("--large-render", type=int, default=1, help="distinct large movies rendered")
    args = p.parse_args()
    C.require_programs()
    report = C.Report(f"CPU throughput per step ({os.cpu_count()} cores)")
    details: dict[str, Any] = {"args": vars(args)}
    with C.work_folder(args, "throughput") as root:
        for label, count, spec, render in (
            ("small", args.small_movies, args.small, args.small_movies),
            ("large", args.large_movies, args.large, args.large_render),
        ):
            if count <= 0:
                continue
            size, frames = (int(v) for v in spec.split("x"))
            session = root / f"{label}_session"
            print(f"rendering {min(render, count)} movies of {size}²×{frames} ...", flush=True)
            t = time.perf_counter()
            truth = C.simulate(session, min(render, count), size, frames, args.seed)
            copy_movies(session, truth, count)
            print(f"  {time.perf_counter() - t:.0f} s; processing {count} movies ...", flush=True)
            config = C.pipeline_config(truth.particle_diameter, count, 0, 0)
            seconds = run_batch(session, root / f"{label}_OTF", config)
            details[label] = {"movies": count, "seconds": seconds}
            name = f"{size}²×{frames}"
            for step, _threads in STEPS:
                report.add(f"{name} {step}", 3600 * count / seconds[step], "movies/h",
                           note=f"{seconds[step] / count:.2f} s/movie")  # fmt: skip
            total = sum(seconds.values())
            report.add(f"{name} all steps in series", 3600 * count / total, "movies/h",
                       note=f"{total / count:.2f} s/movie")  # fmt: skip
    report.details = details
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
