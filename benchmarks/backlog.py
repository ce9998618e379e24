"""Backlog: the first result after a restart with N batches pending vs one batch alone.

Each arm is a fresh processing folder of tiny movies (32×32×20 TIFF + EPU XML) with the
``recorded`` backend (real import, every Snakemake job real; motioncor/ctffind/cryolo
replayed from a one-movie recording made of the test fixtures, benchmarks/_recording.py).
The batches are cut first (``OtfSession.feed``, as a worker does before it is stopped), then
the session loop is started in a fresh process (the restart: ``OtfSession.run_loop``, the
loop of ``emotf run`` and of the worker) and the time from its start to the first
``Results/<batch>.json`` is measured, with the number of batches whose import had finished
by then. Arms, side by side in one run:

* one batch alone;
* ``--backlog`` batches with the session loop as shipped (``batches_per_run`` default);
* the same backlog with every pending batch in one Snakemake run (``batches_per_run: 0``,
  the behaviour before issue 13: the greedy scheduler runs every import first).

Goal: first result after the backlog <= 2 × one batch alone.

    python benchmarks/backlog.py                   # 50 batches of 4 movies (~3 min)
    python benchmarks/backlog.py --backlog 10      # quick try
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C
import _recording as R

DEFAULT_BATCHES_PER_RUN = -1  # the OtfOptions default


def prepare_backlog(root: Path, name: str, n_batches: int, batch_size: int) -> Path:
    """A processing folder with ``n_batches`` batches cut and none processed."""
    from emotf.project import prepare_folder
    from emotf.session.otf import OtfOptions, OtfSession

    session, out = root / f"{name}_raw", root / f"{name}_OTF"
    R.write_tiny_session(session, n_batches * batch_size)
    recording = root / "recording"
    if not recording.exists():
        R.make_recording(recording)
    config = prepare_folder(out, session, R.recorded_config(recording, batch_size))
    otf = OtfSession(out, config, OtfOptions(once=True))
    otf.feed(time.time())
    cut = len(list((out / "batches").glob("b*.json")))
    if cut != n_batches:
        raise RuntimeError(f"{name}: {cut} batches cut, expected {n_batches}")
    return out


def drive(out: Path, batches_per_run: int, poll: float) -> int:
    """The restarted session loop (in its own process); SIGTERM stops it."""
    from emotf.config import read_config
    from emotf.session.otf import OtfOptions, OtfSession

    options = OtfOptions(once=True, poll_interval=poll)
    if batches_per_run != DEFAULT_BATCHES_PER_RUN:
        options.batches_per_run = batches_per_run
    session = OtfSession(out, read_config(out / "config.yaml"), options)
    signal.signal(signal.SIGTERM, lambda *_: session.request_stop())
    session.run_loop()
    return 0


def first_result(out: Path, batches_per_run: int, poll: float, timeout: float,
                 drain: bool = False) -> dict[str, Any]:  # fmt: skip
    """Start the loop on ``out``; seconds to its first batch result, imports done by then,
    the targets of its first Snakemake run. The loop is stopped after the first result, or
    with ``drain`` once every batch has its result (``drain_seconds``)."""
    argv = [sys.executable, __file__, "--drive", str(out), "--batches-per-run",
            str(batches_per_run), "--poll", str(poll)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not list((out / "Results").glob("b*.json")):
            if proc.poll() is not None:
                raise RuntimeError(f"loop ended early: {proc.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"no result in {out} after {timeout:.0f} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        first = sorted(p.stem for p in (out / "Results").glob("b*.json"))
        imported = len(list((out / "Import").glob("b*/import.json")))
        drained = None
        if drain:
            total = len(list((out / "batches").glob("b*.json")))
            while len(list((out / "Results").glob("b*.json"))) < total:
                ended = proc.poll() is not None  # then the count is checked once more
                if ended and len(list((out / "Results").glob("b*.json"))) < total:
                    raise RuntimeError(f"{out}: the loop ended before the backlog was drained")
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(f"{out}: backlog not drained in {timeout:.0f} s")
                time.sleep(0.2)
            drained = time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logs = sorted((out / "logs" / "snakemake").glob("*.log"))
    return {"seconds": seconds, "first": first, "imported": imported, "drain_seconds": drained,
            "runs": len(logs), "first_run_log": logs[0].name if logs else None}  # fmt: skip


def measure(root: Path, backlog: int, batch_size: int, poll: float = 0.5, repeat: int = 1,
            timeout: float = 900.0, old_arm: bool = True,
            drain: bool = False) -> dict[str, Any]:  # fmt: skip
    """The arms side by side, interleaved ``repeat`` times after one untimed warm-up batch
    (so no arm pays for cold caches); per arm the run with the median time, and all times."""
    first_result(prepare_backlog(root, "warmup", 1, batch_size), DEFAULT_BATCHES_PER_RUN,
                 poll, timeout)  # fmt: skip
    todo = [("alone", 1, DEFAULT_BATCHES_PER_RUN), ("backlog", backlog, DEFAULT_BATCHES_PER_RUN)]
    if old_arm:
        todo.append(("backlog_all", backlog, 0))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _n, _k in todo}
    for n in range(repeat):
        for name, batches, per_run in todo:
            out = prepare_backlog(root, f"{name}{n}", batches, batch_size)
            runs[name].append(first_result(out, per_run, poll, timeout, drain and batches > 1))
    arms: dict[str, Any] = {}
    for name, results in runs.items():
        ordered = sorted(results, key=lambda r: float(r["seconds"]))
        arms[name] = {**ordered[len(ordered) // 2], "all_seconds": [r["seconds"] for r in results]}
    return arms


def main() -> int:
    p = C.parser(__doc__.split("\n")[0])
    p.add_argument("--backlog", type=int, default=50, help="batches pending at the restart")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--poll", type=float, default=0.5, help="session loop poll interval (s)")
    p.add_argument("--repeat", type=int, default=3, help="runs per arm (the median is shown)")
    p.add_argument(
        "--drain",
        action="store_true",
        help="also run each backlog to its end (time to the last result)",
    )
    p.add_argument("--batches-per-run", type=int, default=DEFAULT_BATCHES_PER_RUN,
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--drive", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.drive:
        return drive(Path(args.drive), args.batches_per_run, args.poll)
    from emotf.session.otf import OtfOptions

    shipped = OtfOptions().batches_per_run
    report = C.Report(f"Backlog ({args.backlog} batches of {args.batch_size} tiny movies, "
                      "recorded backends)")  # fmt: skip
    with C.work_folder(args, "backlog") as root:
        print(f"measuring {args.repeat}x: one batch alone, the backlog (shipped), the backlog "
              "all in one run", flush=True)  # fmt: skip
        arms = measure(root, args.backlog, args.batch_size, args.poll, args.repeat,
                       drain=args.drain)  # fmt: skip
    one = arms["alone"]["seconds"]
    report.add("one batch alone: first result", one, "s")
    new, old = arms["backlog"], arms["backlog_all"]
    report.add(f"first result after a {args.backlog}-batch backlog", new["seconds"], "s",
               goal=round(2 * one, 1), note=f"batches_per_run {shipped}; {new['imported']} of "
               f"{args.backlog} batches imported by then")  # fmt: skip
    report.add("ratio backlog / alone", new["seconds"] / one, "", goal=2)
    report.add("same backlog, every batch in one run (before issue 13)", old["seconds"], "s",
               note=f"{old['imported']} of {args.backlog} batches imported by then")  # fmt: skip
    if args.drain:
        report.add("backlog drained (last result), as shipped", new["drain_seconds"], "s",
                   note=f"{new['runs']} Snakemake runs")  # fmt: skip
        report.add("backlog drained, every batch in one run", old["drain_seconds"], "s",
                   note=f"{old['runs']} Snakemake runs")  # fmt: skip
    report.details = {"args": vars(args), "arms": arms}
    report.print()
    report.write_json(args.json)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
