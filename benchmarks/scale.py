"""Scale: a 20,000-movie session, every file and Snakemake job real, compute replayed.

1. A small real session (``--record-movies`` of 1k×1k×20) is processed with the CPU backends
   (``emotf run --once``): its processing folder is the *recording*.
2. A 20,000-movie EPU session of tiny movies (32×32×20 TIFF + EPU XML, 50 per GridSquare) is
   written and processed by ``emotf run --once`` with ``backend: recorded`` for motioncor,
   ctffind, cryolo and extract (``emotf/steps/recorded.py``, benchmarks only): import really probes
   every movie; the other steps write every per-movie file their real backend writes, replayed
   from the recording, and read their records back with the real parsers. Batches of
   ``--batch-size`` (default 200 → 100 batches, 500 Snakemake jobs).
3. In the finished processing folder:
   * a full no-op ``snakemake`` (no target, the folder's default profile) and a no-op for one
     batch target as ``emotf run`` invokes it: wall time, peak RSS of the process tree;
   * the worker's progress scan (``ProgressReader.counts()`` + ``summaries()``, and
     ``OtfSession.status()``), cold (new reader) and warm (same reader), in a fresh process
     that holds an ``OtfSession`` over the folder, and that process's RSS (the worker state);
   * the feeder's scan of the raw folder (``MovieScanner.scan`` over 20,000 known movies).

Goals: no-op re-invocation <= 15 s and <= 500 MB; scan <= 1 s; worker RSS <= 300 MB.

    python benchmarks/scale.py                               # 20,000 movies
    python benchmarks/scale.py --movies 1000 --batch-size 100
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

MB = 1024**2


def write_tiny_session(session: Path, n_movies: int, per_square: int, frames: int) -> None:
    """An EPU layout of ``n_movies`` identical tiny TIFF movies with their XML."""
    from emotf.sim.epu_writer import XmlFields, encode_movie, movie_xml

    rng = np.random.default_rng(0)
    movie = encode_movie(rng.poisson(1.5, (frames, 32, 32)).astype(np.uint8), "tiff")
    session.mkdir(parents=True)
    (session / "EpuSession.dm").write_text("<EpuSessionXml/>\n")
    start = dt.datetime(2026, 1, 1, 9, 0, 0)
    for n in range(n_movies):
        stamp = start + dt.timedelta(seconds=8 * n)
        base = (f"Images-Disc1/GridSquare_{1000 + n // per_square}/Data/"
                f"FoilHole_{20000 + n}_Data_{30000 + n}_{n % 7}_{stamp:%Y%m%d_%H%M%S}")  # fmt: skip
        folder = session / base.rsplit("/", 1)[0]
        if n % per_square == 0:
            folder.mkdir(parents=True, exist_ok=True)
        fields = XmlFields(1.0, 300.0, 1.5 * frames, frames, 15000.0, 1.0, stamp.isoformat())
        (session / f"{base}.xml").write_text(movie_xml(fields))
        (session / f"{base}_fractions.tiff").write_bytes(movie)


def summary_times(out: Path) -> list[float]:
    """When each finished batch's summary was written, in order."""
    return sorted(p.stat().st_mtime for p in (out / "Summary").glob("b*.json"))


def batch_pace(times: list[float]) -> tuple[float, float]:
    """Mean time per batch over the first and the last 10 finished batches."""
    n = min(10, len(times) // 2)
    if n < 2:
        return float("nan"), float("nan")
    return (times[n] - times[0]) / n, (times[-1] - times[-1 - n]) / n


def pace_by_tenth(times: list[float]) -> list[float]:
    """Mean time per batch in each tenth of the session: flat after the first runs' ramp if
    a batch's cost does not grow."""
    if len(times) < 20:
        return []
    edges = [round(i * (len(times) - 1) / 10) for i in range(11)]
    return [(times[b] - times[a]) / (b - a) for a, b in zip(edges, edges[1:], strict=False)]


def probe(out: Path) -> int:
    """In a fresh process: hold an OtfSession over ``out``, time its scans, print JSON."""
    import os

    import psutil

    from emotf.config import read_config
    from emotf.session.otf import OtfOptions, OtfSession
    from emotf.session.progress import ProgressReader

    me = psutil.Process()
    figures: dict[str, float] = {"rss_start": me.memory_info().rss / MB}
    peaks: dict[str, float] = {}  # peak RSS so far after each step: where the peak is reached

    def step(name: str) -> None:
        peaks[name] = C.peak_rss_mb()

    t = time.perf_counter()
    session = OtfSession(out, read_config(out / "config.yaml"), OtfOptions(once=True))
    figures["session_open_s"] = time.perf_counter() - t
    step("open")
    t = time.perf_counter()
    session.scanner.scan()  # the feeder's first scan after a restart
    figures["feeder_scan_s"] = time.perf_counter() - t
    step("feeder scan")
    t = time.perf_counter()
    snap = session.progress.snapshot()  # cold: the session index, then what it lacks
    figures["scan_cold_s"] = time.perf_counter() - t
    step("cold snapshot")
    counts = snap.counts
    t = time.perf_counter()
    session.progress.snapshot()
    figures["scan_warm_s"] = time.perf_counter() - t
    t = time.perf_counter()
    status = session.status()
    figures["status_warm_s"] = time.perf_counter() - t
    step("status")
    # what the EMhub worker adds at every progress event: statistics and latency figures
    from emotf.session.ledger import figures as ledger_figures
    from emotf.views.stats import session_stats

    t = time.perf_counter()
    snap = status.snapshot or snap
    session_stats(snap.part, snap.pipeline)
    ledger_figures(snap.part, snap.pipeline.names)
    figures["event_stats_s"] = time.perf_counter() - t
    step("event statistics")
    t = time.perf_counter()
    session.write_outputs(wait=True)  # session STARs + report (in a child process)
    figures["outputs_update_s"] = time.perf_counter() - t
    step("outputs")
    figures["rss_worker"] = me.memory_info().rss / MB
    figures["maxrss_worker"] = C.peak_rss_mb()
    # side by side, after the RSS figures: a cold scan without the session index (a folder
    # of an older version), and a read of every full record (what each STAR/report rewrite
    # did before they were kept incrementally)
    from emotf.session.session_index import SessionIndex

    t = time.perf_counter()
    bare = ProgressReader(out)
    bare.index = SessionIndex(out / "no-index-here")
    bare.index._writable = False
    bare.snapshot()
    figures["scan_cold_no_index_s"] = time.perf_counter() - t
    t = time.perf_counter()
    figures["full_records"] = len(ProgressReader(out).results())
    figures["full_read_s"] = time.perf_counter() - t
    records = counts.done + counts.failed
    figures["done"] = counts.done
    figures["records"] = records
    figures["movies_found"] = status.movies_found
    figures["pid"] = os.getpid()
    for folder in ("Summary", "Results"):
        size = sum(p.stat().st_size for p in (out / folder).glob("b*.json"))
        figures[f"{folder.lower()}_mb"] = size / MB
    index = out / ".emotf" / "index.jsonl"
    figures["index_mb"] = index.stat().st_size / MB if index.is_file() else 0.0
    print(json.dumps({**figures, "peaks": peaks}))
    return 0


def record(root: Path, args: argparse.Namespace) -> Path:
    """A real run of a few movies with the CPU backends: the results to replay."""
    session, out = root / "record_session", root / "record_OTF"
    truth = C.simulate(session, args.record_movies, 1024, 20, args.seed)
    cfg = C.pipeline_config(truth.particle_diameter, args.record_movies, 0, 0)
    cfg_file = C.write_yaml(root / "record.yaml", cfg)
    m = C.measure(C.emotf_run_argv(session, out, cfg_file, "--once", "--poll", "1"))
    C.check(m, "recording run")
    return out


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--movies", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--per-square", type=int, default=50, help="movies per GridSquare folder")
    p.add_argument("--record-movies", type=int, default=4)
    p.add_argument("--recording", help="processing folder of an earlier recording run to "
                   "replay (e.g. WORKDIR/record_OTF of a run with --keep)")  # fmt: skip
    p.add_argument("--poll", type=float, default=2.0, help="emotf run --poll (s)")
    p.add_argument(
        "--processing-profile",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="extra Snakemake profile keys for the (setup) processing run only; default: "
        "the folder's profile as shipped. The no-op runs always use the shipped profile.",
    )
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--pace", metavar="FOLDER", help="print the per-batch times of a finished "
                   "processing folder (e.g. one kept with --keep) and exit")  # fmt: skip
    args = p.parse_args()
    if args.probe:
        return probe(Path(args.probe))
    if args.pace:
        times = summary_times(Path(args.pace))
        first, last = batch_pace(times)
        tenths = pace_by_tenth(times)
        print(json.dumps({"first10_s": first, "last10_s": last, "tenths_s": tenths}))
        return 0
    C.require_programs()
    report = C.Report(f"Scale ({args.movies} movies, batches of {args.batch_size}, "
                      "recorded backends)")  # fmt: skip
    with C.work_folder(args, "scale") as root:
        if args.recording:
            recording = Path(args.recording).resolve()
        else:
            print(f"recording a real run of {args.record_movies} movies ...", flush=True)
            recording = record(root, args)
        session, out = root / "session", root / "session_OTF"
        t = time.perf_counter()
        write_tiny_session(session, args.movies, args.per_square, 20)
        print(f"wrote {args.movies} tiny movies in {time.perf_counter() - t:.0f} s", flush=True)
        cfg: dict[str, Any] = {
            "batches": {"size": args.batch_size, "settle_seconds": 0, "tail_seconds": 0},
            "acquisition": {"pixel_size": 1.0, "dose_per_frame": 1.5},
            "motioncor": {"backend": "recorded"},
            "ctffind": {"backend": "recorded"},
            "cryolo": {"backend": "recorded"},
            "extract": {"backend": "recorded"},
            "recorded": {"folder": str(recording)},
        }
        cfg_file = C.write_yaml(root / "scale.yaml", cfg)
        setup = args.processing_profile or []
        C.seed_profile(out, setup)
        print(f"processing with emotf run --once (recorded backends, {setup}) ...", flush=True)
        run = C.measure(C.emotf_run_argv(session, out, cfg_file, "--once", "--poll",
                                         str(args.poll)), interval=0.5)  # fmt: skip
        C.check(run, "emotf run")
        print(f"  {run.seconds:.0f} s", flush=True)
        C.seed_profile(out, [])  # the no-op runs use the profile as shipped
        batches = sorted(p.stem for p in (out / "batches").glob("b*.json"))
        times = summary_times(out)
        first, last = batch_pace(times)
        tenths = pace_by_tenth(times)
        n_files = sum(1 for _ in out.rglob("*"))

        print("no-op snakemake, whole folder ...", flush=True)
        full = C.measure([sys.executable, "-m", "snakemake"], cwd=out)
        C.check(full, "no-op snakemake")
        noop_ok = "Nothing to be done" in full.output
        from emotf.session.runner import snakemake_argv

        print("no-op snakemake, last batch target (as emotf run does) ...", flush=True)
        one = C.measure(snakemake_argv([f"Results/{batches[-1]}.json"], None), cwd=out)
        C.check(one, "no-op snakemake for one batch")

        print("worker state and scans (fresh process) ...", flush=True)
        probed = C.measure([sys.executable, __file__, "--probe", str(out)])
        C.check(probed, "probe")
        fig = json.loads(probed.output.strip().splitlines()[-1])

    report.add("processing wall (emotf run --once)", run.seconds, "s",
               note=f"{len(batches)} batches, {n_files} files in the processing folder; "
               f"{fig['done']} movies done; profile {setup}")  # fmt: skip
    report.add("time per batch, first 10 batches", first, "s")
    report.add("time per batch, last 10 batches", last, "s",
               note=f"{last / first:.2f}x the first 10 (goal <= 1.20x)")  # fmt: skip
    report.add("time per batch, per tenth of the session", max(tenths, default=float("nan")),
               "s", note="max; all: " + ", ".join(f"{t:.2f}" for t in tenths))  # fmt: skip
    report.add("processing peak RSS (tree)", run.peak_tree_rss / MB, "MB", goal=1024,
               note=C.peak_breakdown(run))  # fmt: skip
    report.add(
        "no-op snakemake (all), wall",
        full.seconds,
        "s",
        goal=15,
        note="'Nothing to be done'" if noop_ok else "NOT a no-op: jobs ran",
    )
    report.add("no-op snakemake (all), peak RSS tree", full.peak_tree_rss / MB, "MB", goal=500)
    report.add("no-op snakemake (1 batch target), wall", one.seconds, "s", goal=15)
    report.add("no-op snakemake (1 batch), peak RSS", one.peak_tree_rss / MB, "MB", goal=500)
    report.add("progress scan cold (first after a restart)", fig["scan_cold_s"], "s", goal=1,
               note=f"{fig['index_mb']:.1f} MB session index")  # fmt: skip
    report.add("progress scan cold without the index", fig["scan_cold_no_index_s"], "s",
               note=f"{fig['summary_mb']:.1f} MB of Summary/ (an older folder)")  # fmt: skip
    report.add("progress scan warm", fig["scan_warm_s"], "s", goal=0.2)
    report.add("OtfSession.status() warm", fig["status_warm_s"], "s", goal=0.2)
    report.add("statistics for one EMhub event (stats + ledger)", fig["event_stats_s"], "s",
               goal=0.2)  # fmt: skip
    report.add("session STARs + report update (no new batch)", fig["outputs_update_s"], "s")
    report.add("read of all full records (not needed per batch)", fig["full_read_s"], "s",
               note=f"{fig['results_mb']:.1f} MB of Results/")  # fmt: skip
    report.add("feeder first raw-folder scan (MovieScanner)", fig["feeder_scan_s"], "s", goal=2)
    report.add("OtfSession open (reads manifests)", fig["session_open_s"], "s")
    worker = max((v for k, v in run.peak_by_label.items() if " emotf run " in f" {k} "),
                 default=0)  # fmt: skip
    report.add("worker peak RSS during processing (emotf run, sampled)", worker / MB, "MB",
               goal=300)  # fmt: skip
    report.add("worker RSS (OtfSession, scanned)", fig["rss_worker"], "MB", goal=300,
               note=f"{fig['rss_start']:.0f} MB after imports")  # fmt: skip
    steps = ", ".join(f"{k} {v:.0f}" for k, v in fig["peaks"].items())
    report.add("worker peak RSS", fig["maxrss_worker"], "MB", goal=300,
               note=f"peak so far after each step, MB: {steps}")  # fmt: skip
    report.details = {"args": vars(args), "probe": fig, "noop_output_tail": full.output[-2000:],
                      "processing_peak_by_process_mb": {k: v / MB for k, v in
                                                        run.peak_by_label.items()}}  # fmt: skip
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
