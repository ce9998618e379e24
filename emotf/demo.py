"""``emotf demo``: simulate a small EPU session, process it with the CPU backends, report.

Needs no EMhub and no GPU, only RELION (``apt-get install relion``) for motion correction
and LoG picking. Prints per-step counts (every movie accounted for) and the accuracy of
drift, CTF and picks against the simulation's ground truth.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .evaluate import evaluate, summarise
from .session.otf import OtfOptions, Status
from .session.progress import ProgressReader

REQUIRED_PROGRAMS = ("relion_run_motioncorr", "relion_autopick")


def demo_config(particle_diameter: float) -> dict[str, Any]:
    """Experiment settings for the simulated session (what a facility would put in config)."""
    return {
        "batches": {"size": 4, "tail_seconds": 5, "settle_seconds": 1},
        "cryolo": {
            "backend": "relion_log",
            "diameter_min": round(0.8 * particle_diameter),
            "diameter_max": round(1.2 * particle_diameter),
        },
    }


def _check_programs() -> None:
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        raise SystemExit(
            f"emotf demo needs RELION's CPU programs ({', '.join(missing)} not found): "
            "run `make demo` or `sudo apt-get install relion`"
        )


def print_summary(status: Status, out_dir: Path, session_dir: Path, seconds: float) -> bool:
    c = status.counts
    accounted = c["done"] + c["failed"]
    print(f"\nemotf demo: {status.movies_found} movies found in {session_dir}")
    print(f"  processing folder: {out_dir}   ({seconds:.0f} s)")
    labels = [label for label, _n in status.step_counts] + ["done", "failed"]
    labels += list(status.snapshot.counts.totals) if status.snapshot else []
    for label in labels:
        print(f"  {label:<19} {c[label]}")
    print(
        f"  accounted  {accounted} of {status.movies_found} "
        f"({'OK' if accounted == status.movies_found else 'MISSING MOVIES'})"
    )
    for reason, count in sorted(status.failures.items()):
        print(f"  failed x{count}: {reason}")
    records = ProgressReader(out_dir).results()
    figures = summarise(evaluate(out_dir, session_dir, records))
    print("  accuracy against ground truth (worst movie):")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"    {key:<22} {shown}")
    return accounted == status.movies_found


def run_demo(args: argparse.Namespace) -> int:
    from .cli import run_session
    from .sim import SimParams, simulate_session

    _check_programs()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="emotf-demo-"))
    session_dir, out_dir = root / "EPU_session", root / "EPU_session_OTF"
    params = SimParams(size=args.size, n_frames=args.frames, format=args.format, seed=args.seed)
    print(
        f"simulating {args.movies} movies ({args.size}² × {args.frames}, {args.format}) "
        f"+ {args.bad} corrupt + {args.bad} truncated in {session_dir}"
    )
    truth = simulate_session(
        session_dir, params, n_movies=args.movies, n_corrupt=args.bad, n_truncated=args.bad
    )
    start = time.time()
    options = OtfOptions(once=True, idle_timeout=30, poll_interval=1)
    status = run_session(session_dir, out_dir, demo_config(truth.particle_diameter), options)
    ok = print_summary(status, out_dir, session_dir, time.time() - start)
    return 0 if ok else 1
