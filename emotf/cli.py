"""Command line: ``emotf run``, ``emotf demo``, ``emotf simulate``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from . import __version__
from .config import ConfigError
from .project import prepare_folder
from .session.folder_lock import FolderBusy
from .session.otf import FolderNotWritable, OtfOptions, OtfSession, Status
from .trust import TrustPolicy, UntrustedFolder

log = logging.getLogger("emotf")


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config values given on the command line (only those actually set)."""
    over: dict[str, Any] = {}
    if args.config:
        extra = read_config_values(Path(args.config))
        over.update(extra)
    batches = {
        k: v
        for k, v in (
            ("size", args.batch_size),
            ("tail_seconds", args.tail_seconds),
            ("settle_seconds", args.settle),
        )
        if v is not None
    }
    if batches:
        over.setdefault("batches", {}).update(batches)
    return over


def read_config_values(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping")
    return data


def print_status(status: Status, stream: Any = None) -> None:
    stream = stream or sys.stdout
    c = status.counts
    steps = "  ".join(f"{label} {n}" for label, n in status.step_counts)
    totals = (
        "  ".join(f"{k} {c[k]}" for k in status.snapshot.counts.totals) if status.snapshot else ""
    )
    print(
        f"[{status.state}] found {status.movies_found}  batched {c['movies_batched']}  "
        f"{steps}  done {c['done']}  failed {c['failed']}  {totals}  "
        f"batches {c['batches_done']}/{c['batches']}",
        file=stream,
        flush=True,
    )


def run_session(
    session_dir: Path,
    out_dir: Path,
    overrides: dict[str, Any],
    options: OtfOptions,
    quiet: bool = False,
) -> Status:
    policy = TrustPolicy.with_groups(options.trusted_groups)
    config = prepare_folder(out_dir, session_dir, overrides, policy=policy)
    session = OtfSession(out_dir, config, options)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: stopping the run", signum)
        session.request_stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    last: list[str] = []

    shown: set[str] = set()

    def report(status: Status) -> None:
        for error in status.pipeline_errors:
            if error not in shown and not quiet:
                print(f"  pipeline error: {error}", file=sys.stderr, flush=True)
                shown.add(error)
        key = repr(sorted(status.as_dict().items()))
        if not quiet and (not last or last[-1] != key):
            print_status(status)
            last[:] = [key]

    try:
        return session.run_loop(report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    options = OtfOptions(
        once=args.once,
        idle_timeout=args.idle_timeout,
        poll_interval=args.poll,
        profile=args.profile,
        max_runs=args.max_runs,
        trusted_groups=list(args.trust_group or []),
    )
    status = run_session(Path(args.session), Path(args.out), _overrides(args), options)
    print_failures(status)
    return 0 if status.state != "stopped" else 130


def print_failures(status: Status) -> None:
    for reason, count in sorted(status.failures.items()):
        print(f"  failed x{count}: {reason}")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with configuration values (see the schema)")
    p.add_argument("--batch-size", type=int, help="movies per batch (default 16)")
    p.add_argument("--tail-seconds", type=float, help="cut a partial batch after this long")
    p.add_argument("--settle", type=float, help="seconds a movie must be unmodified")
    p.add_argument("--profile", help="Snakemake profile (e.g. slurm, lsf); default: local")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between scans")
    p.add_argument(
        "--trust-group",
        action="append",
        metavar="GROUP",
        help="a group whose members may write the folder's workflow (repeat)",
    )
    p.add_argument(
        "--max-runs",
        type=int,
        default=2,
        help="concurrent Snakemake runs on disjoint batches (default 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotf", description=__doc__)
    parser.add_argument("--version", action="version", version=f"emotf {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="process a session folder on the fly (no EMhub)")
    run.add_argument("session", help="raw session (EPU) folder")
    run.add_argument("--out", required=True, help="processing folder (created if missing)")
    run.add_argument("--once", action="store_true", help="process what is there, then exit")
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="stop after this many seconds without a new movie",
    )
    add_run_options(run)
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="simulate a small session, process it, check accuracy")
    demo.add_argument("--dir", help="folder for the demo (default: a new temporary folder)")
    demo.add_argument("--movies", type=int, default=8)
    demo.add_argument("--size", type=int, default=1024)
    demo.add_argument("--frames", type=int, default=20)
    demo.add_argument("--format", choices=["tiff", "mrc"], default="tiff")
    demo.add_argument(
        "--bad",
        type=int,
        default=1,
        help="corrupt + truncated movies to include (shows failure handling)",
    )
    demo.add_argument("--seed", type=int, default=1)
    demo.set_defaults(func=cmd_demo)

    from .emhub.cli import register as register_worker
    from .profiles_cli import register as register_profiles
    from .session.retry import register as register_retry
    from .sim.cli import register as register_simulate
    from .steps.foreach import register as register_step
    from .views.status_cli import register as register_status

    register_simulate(sub)
    register_worker(sub)
    register_profiles(sub)
    register_status(sub)
    register_retry(sub)
    register_step(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"emotf: configuration error: {exc}", file=sys.stderr)
        return 2
    except FolderNotWritable as exc:
        print(f"emotf: {exc}", file=sys.stderr)
        return 3
    except (FolderBusy, UntrustedFolder) as exc:
        print(f"emotf: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
