"""``emotf status FOLDER``: a terminal view of a processing folder, during a run or after."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import read_folder_config
from ..session.ledger import figures, latency_key
from ..session.progress import ProgressReader

BAR = 30


def bar(count: int, total: int) -> str:
    filled = round(BAR * count / total) if total else 0
    return "#" * filled + "." * (BAR - filled)


def render(folder: Path) -> str:
    config = read_folder_config(folder)
    snap = ProgressReader(folder, config=config).snapshot()
    part, counts = snap.part, snap.counts
    total = counts.movies_batched
    lines = [
        f"emotf status: {folder}  ({total} movies in {counts.batches} batches, "
        f"{counts.batches_done} finished)"
    ]
    labels = [
        (s.count, counts.steps[s.count], "" if s.required else " (optional)") for s in snap.pipeline
    ]
    labels += [("done", counts.done, ""), ("failed", counts.failed, "")]
    for label, value, note in labels:
        lines.append(f"  {label:<10} [{bar(value, total)}] {value:>6} / {total}{note}")
    totals = "   ".join(f"{k} {v}" for k, v in counts.totals.items())
    lines.append(f"  accepted   {part.accepted}   rejected {part.rejected}   {totals}")
    fig = figures(part, snap.pipeline.names)
    lines.append(
        f"  throughput {fig['movies_per_hour_found']} found/h, {fig['movies_per_hour_done']} done/h"
    )
    latency = ", ".join(
        f"{s.name} {fig[latency_key(s.name)]}"
        for s in snap.pipeline
        if fig.get(latency_key(s.name))
    )
    lines.append(f"  latency from found (s): {latency or '-'}")
    for reason, n in sorted(counts.failures.items(), key=lambda item: -item[1]):
        lines.append(f"  failed x{n}: {reason[:160]}")
    for note, n in part.notes.most_common():
        lines.append(f"  note x{n}: {note}")
    for reason, n in part.rejections.most_common():
        lines.append(f"  rejected x{n}: {reason}")
    for error in snap.pipeline.errors:
        lines.append(f"  pipeline error: {error}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    print(render(Path(args.folder)))
    if args.html:
        from .report import write_report

        folder = Path(args.folder)
        print(f"wrote {write_report(folder, read_folder_config(folder))}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="counts, failures, throughput of a processing folder")
    p.add_argument("folder", help="processing folder (the one with config.yaml)")
    p.add_argument("--html", action="store_true", help="also (re)write report.html")
    p.set_defaults(func=cmd_status)
