"""``emotf status FOLDER``: a terminal view of a processing folder, during a run or after."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from .config import read_config
from .curation import curate
from .ledger import figures, ledger
from .progress import ProgressReader

BAR = 30


def bar(count: int, total: int) -> str:
    filled = round(BAR * count / total) if total else 0
    return "#" * filled + "." * (BAR - filled)


def render(folder: Path) -> str:
    config = read_config(folder / "config.yaml")
    reader = ProgressReader(folder)
    rows = ledger(folder, reader)
    records = reader.summaries()
    counts = reader.counts()
    total = len(rows)
    lines = [f"emotf status: {folder}  ({total} movies in {counts.batches} batches, "
             f"{counts.batches_done} finished)"]  # fmt: skip
    for label, value in (("imported", counts.imported), ("motioncor", counts.motioncor),
                         ("ctffind", counts.ctffind), ("picked", counts.picked),
                         ("done", counts.done), ("failed", counts.failed)):  # fmt: skip
        lines.append(f"  {label:<10} [{bar(value, total)}] {value:>6} / {total}")
    accepted, rejected = curate(records, config.get("curation", {}))
    lines.append(f"  accepted   {len(accepted)}   rejected {len(rejected)}   "
                 f"particles {counts.particles}")  # fmt: skip
    fig = figures(rows, records)
    lines.append(f"  throughput {fig['movies_per_hour_found']} found/h, "
                 f"{fig['movies_per_hour_done']} done/h")  # fmt: skip
    lines.append(f"  latency    found→CTF {fig['latency_found_to_ctf_s']} s, "
                 f"found→picks {fig['latency_found_to_picks_s']} s")  # fmt: skip
    reasons: Counter[str] = Counter(f"{r.failed_step}: {r.reason}" for r in rows
                                    if r.state == "failed")  # fmt: skip
    for reason, n in reasons.most_common():
        lines.append(f"  failed x{n}: {reason[:160]}")
    why: Counter[str] = Counter(
        reason.split(":")[0] for reasons in rejected.values() for reason in reasons
    )
    for reason, n in why.most_common():
        lines.append(f"  rejected x{n}: {reason}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    print(render(Path(args.folder)))
    if args.html:
        from .report import write_report

        folder = Path(args.folder)
        print(f"wrote {write_report(folder, read_config(folder / 'config.yaml'))}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="counts, failures, throughput of a processing folder")
    p.add_argument("folder", help="processing folder (the one with config.yaml)")
    p.add_argument("--html", action="store_true", help="also (re)write report.html")
    p.set_defaults(func=cmd_status)
