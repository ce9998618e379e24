"""Orchestration overhead: ``emotf run`` versus a bare loop over the same tools, side by side.

One simulated session (default 64 movies of 1k×1k×20) is processed twice from the same raw
folder with the same configuration:

(a) ``emotf run --once`` (feeder, batches, Snakemake, step JSON/STAR files, session STARs,
    report), as a subprocess;
(b) a bare loop, also a subprocess, that calls the same backend code of ``emotf.steps`` one
    movie after another: import (``importer.import_movie``), RELION's own motion correction
    on a one-movie STAR (``motioncor.run_relion``, same argv builder, ``--j`` = the rule's
    threads), emotf's numpy CTF estimator (``emotf.ctf.run_on_file`` with the step's search
    parameters), RELION's LoG picker (``picking._run_log_group``) and RELION's extraction
    (``extract._extract``, ``relion_preprocess``).

Prints both wall times and the ratio (a)/(b). Goal: <= 1.10.

    python benchmarks/overhead.py                     # 64 movies, 1024², 20 frames
    python benchmarks/overhead.py --movies 4 --size 512   # a quick try
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

RULE_THREADS = 2  # threads: of the motioncor rule (workflows/rules/motioncor.smk)


def bare_loop(session: Path, out: Path, config_file: Path) -> int:
    """Process every movie of ``session`` one after another with the steps' backend code."""
    import yaml

    from emotf.config import build_config, deep_merge
    from emotf.ctf import run_on_file
    from emotf.steps import ctf, extract, importer, motioncor, picking
    from emotf.steps.base import StepContext, start_output

    overrides = yaml.safe_load(config_file.read_text())
    config = build_config(deep_merge({"session_dir": str(session.resolve())}, overrides))
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    keys = sorted({p.relative_to(session).as_posix() for g in config["movie_globs"]
                   for p in session.glob(g)})  # fmt: skip
    done = particles = extracted = 0
    for n, key in enumerate(keys):
        ctx = StepContext(f"m{n:06d}", config, {}, {}, threads=RULE_THREADS, workdir=out)
        imp = start_output(ctx, "import", "emotf")
        importer.import_movie(ctx, imp, key, session / key)
        if not imp.movies[key]["ok"]:
            continue
        row = imp.movies[key]
        mc = start_output(ctx, "motioncor", config["motioncor"]["backend"])
        motioncor.step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
        motioncor.run_relion(ctx, mc, {key: row})
        if not mc.movies[key]["ok"]:
            continue
        row = {**row, **mc.movies[key]}
        stem = ctf.out_stem(ctx.batch, row)
        pixel = float(row["pixel_size"]) * float(row.get("binning", 1.0))
        fit = run_on_file(Path(row["micrograph_nodw"]), stem, pixel, ctf.optics_of(config, row),
                          ctf.search_params(config, row))  # fmt: skip
        row = {**row, **ctf.ctf_fields(fit, stem, f"{stem}.ctf:mrc")}
        pk = start_output(ctx, "picking", config["cryolo"]["backend"])
        picking.step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
        picking._run_log_group(ctx, pk, {key: row}, "all")
        if not pk.movies[key]["ok"]:
            continue
        done += 1
        particles += int(pk.movies[key]["particles"])
        row = {**row, **pk.movies[key]}
        if int(row["particles"]) > 0:  # the extraction step, on this one movie
            ex = start_output(ctx, "extract", "relion")
            ctx.outputs["star"] = out / extract.step_dir(ctx.batch) / "particles.star"
            extract.step_dir(ctx.batch).mkdir(parents=True, exist_ok=True)
            extract._extract(ctx, ex, {key: row})
            extracted += int(ex.movies[key].get("particles_extracted", 0))
    print(f"bare loop: {done} of {len(keys)} movies done, {particles} particles, "
          f"{extracted} extracted")
    return 0


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--movies", type=int, default=64)
    p.add_argument("--size", type=int, default=1024, help="movie width and height (px)")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16, help="emotf batch size (default 16)")
    p.add_argument("--poll", type=float, default=1.0, help="emotf run --poll (s)")
    p.add_argument(
        "--profile-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment: add a key to the processing folder's default Snakemake profile "
        "(e.g. force-use-threads=true)",
    )
    p.add_argument("--bare", nargs=3, metavar=("SESSION", "OUT", "CONFIG"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.bare:
        return bare_loop(*(Path(a).resolve() for a in args.bare))
    C.require_programs()
    report = C.Report(f"Orchestration overhead ({args.movies} movies, "
                      f"{args.size}×{args.size}×{args.frames})")  # fmt: skip
    with C.work_folder(args, "overhead") as root:
        session = root / "session"
        print(f"simulating {args.movies} movies in {session} ...", flush=True)
        t0 = time.perf_counter()
        truth = C.simulate(session, args.movies, args.size, args.frames, args.seed)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
        config: dict[str, Any] = C.pipeline_config(truth.particle_diameter, args.batch_size,
                                                   settle=0, tail=0)  # fmt: skip
        config_file = C.write_yaml(root / "config.yaml", config)

        if args.profile_set:
            C.seed_profile(root / "pipeline", args.profile_set)
        print("(a) emotf run --once ...", flush=True)
        argv = C.emotf_run_argv(session, root / "pipeline", config_file, "--once",
                                "--poll", str(args.poll))  # fmt: skip
        pipe = C.measure(argv)
        C.check(pipe, "emotf run")
        records = C.results(root / "pipeline")
        pipe_done = sum(r["state"] == "done" for r in records)
        pipe_particles = sum(int(r.get("particles", 0)) for r in records)
        print(f"  {pipe.seconds:.1f} s: {pipe_done} done, {pipe_particles} particles", flush=True)

        print("(b) bare loop, one movie after another ...", flush=True)
        bare = C.measure([sys.executable, __file__, "--bare", str(session), str(root / "bare"),
                          str(config_file)])  # fmt: skip
        C.check(bare, "bare loop")
        print(f"  {bare.seconds:.1f} s: {bare.output.strip()}", flush=True)

    ratio = pipe.seconds / bare.seconds
    report.add(
        "(a) emotf run --once, wall",
        pipe.seconds,
        "s",
        note=f"batch size {args.batch_size}, poll {args.poll} s; {pipe_done} done"
        + (f"; profile {args.profile_set}" if args.profile_set else ""),
    )
    report.add("(b) bare loop, wall", bare.seconds, "s", note=bare.output.strip())
    report.add("ratio (a)/(b)", ratio, "", goal=1.10)
    report.add("(a) per movie", pipe.seconds / args.movies, "s")
    report.add("(b) per movie", bare.seconds / args.movies, "s")
    report.add("(a) peak RSS, process tree", pipe.peak_tree_rss / 1024**2, "MB")
    report.details = {"args": vars(args), "pipeline_done": pipe_done, "bare": bare.output}
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
