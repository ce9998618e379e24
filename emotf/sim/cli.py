"""``emotf simulate``: write a synthetic EPU session (optionally over time)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .session import SimParams, simulate_session


def cmd_simulate(args: argparse.Namespace) -> int:
    params = SimParams(
        size=args.size,
        n_frames=args.frames,
        pixel_size=args.pixel_size,
        dose_per_frame=args.dose,
        format=args.format,
        gain=not args.no_gain,
        seed=args.seed,
        realism=args.realism,
        detector=args.detector,
        molecular_weight=args.molecular_weight,
        size_y=args.size_y,
    )
    truth = simulate_session(
        Path(args.out), params, args.movies, args.corrupt, args.truncated, interval=args.interval
    )
    print(f"wrote {len(truth.movies)} movies to {args.out} (ground_truth.json)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help="write a synthetic EPU session with ground truth")
    p.add_argument("out", help="session folder to create")
    p.add_argument("--movies", type=int, default=8)
    p.add_argument("--size", type=int, default=1024, help="movie width and height (px)")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--pixel-size", type=float, default=1.0, help="Å")
    p.add_argument("--dose", type=float, default=1.5, help="e/Å² per frame")
    p.add_argument("--format", choices=["tiff", "mrc"], default="tiff")
    p.add_argument("--no-gain", action="store_true", help="gain-normalised movies, no gain.mrc")
    p.add_argument("--corrupt", type=int, default=0, help="movies with a garbage header")
    p.add_argument("--truncated", type=int, default=0, help="movies cut to half their size")
    p.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between movies; movies then grow while written, like EPU",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--realism",
        choices=["ideal", "realistic"],
        default="ideal",
        help="ideal: fixed contrast, white gain (fast tests); realistic: contrast from the "
        "molecular weight, DQE/MTF, dose damage, local motion, ice gradients, carbon edges, "
        "contamination, structured gain with hot/dead pixels",
    )
    p.add_argument("--detector", choices=["K3", "Falcon4i"], default="K3")
    p.add_argument("--molecular-weight", type=float, default=200.0, help="kDa (realistic)")
    p.add_argument("--size-y", type=int, default=None, help="rows, when not square")
    p.set_defaults(func=cmd_simulate)
