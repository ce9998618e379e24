"""A self-contained HTML report of a processing folder (``report.html``, images embedded).

Counts, curation, throughput over time, defocus / CTF resolution / drift histograms, a
per-GridSquare table, failures, and thumbnails of the most recent micrographs with their
picks drawn and their power spectra. Rewritten as batches finish; the page reloads itself.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from .config import Config  # noqa: E402
from .curation import curate  # noqa: E402
from .epu import grid_square_of  # noqa: E402
from .fsutil import atomic_write_text  # noqa: E402
from .ledger import LedgerRow, figures, latency_key  # noqa: E402
from .made import MadeFiles  # noqa: E402
from .parsers.relion import read_coordinates_star  # noqa: E402
from .progress import ProgressReader, Snapshot  # noqa: E402

THUMB = 256
CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#eee}.plots img{width:32%}.mics{display:flex;flex-wrap:wrap}
.mic{margin:4px;font-size:.75em;text-align:center}.fail{color:#a00}"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _hist(values: list[float], title: str, unit: str) -> str:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(values, bins=20, color="#4477aa")
    ax.set_title(title)
    ax.set_xlabel(unit)
    ax.set_ylabel("micrographs")
    return _png(fig)


def _throughput(rows: list[LedgerRow]) -> str:
    fig, ax = plt.subplots(figsize=(4, 3))
    start = min(r.found for r in rows)
    found = sorted(r.found - start for r in rows)
    done = sorted(max(r.times.values()) - start for r in rows if r.state == "done" and r.times)
    ax.step([t / 60 for t in found], range(1, len(found) + 1), label="found", where="post")
    ax.step([t / 60 for t in done], range(1, len(done) + 1), label="done", where="post")
    ax.set_title("throughput")
    ax.set_xlabel("minutes")
    ax.set_ylabel("movies")
    ax.legend()
    return _png(fig)


def _image_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def thumbnails(folder: Path, record: dict[str, Any]) -> tuple[str, str]:
    """(micrograph with picks, power spectrum) as PNG data URIs."""
    raw = np.asarray(mrcfile.read(folder / record["micrograph"]), dtype=np.float32)
    data: np.ndarray[Any, np.dtype[np.float32]] = raw.reshape(raw.shape[-2:])
    step = max(1, max(data.shape) // THUMB)
    small = data[: data.shape[0] // step * step, : data.shape[1] // step * step]
    small = small.reshape(small.shape[0] // step, step, small.shape[1] // step, step).mean((1, 3))
    lo, hi = np.percentile(small, (1, 99))
    gray = np.clip((small - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    mic = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(mic)
    diameter_px = float(record.get("particle_diameter_px", 0)) or 120.0 / float(
        record.get("pixel_size", 1.0)
    )
    radius = max(3.0, 0.5 * diameter_px / step)
    if record.get("coordinates") and (folder / record["coordinates"]).is_file():
        for pick in read_coordinates_star(folder / record["coordinates"]):
            x, y = pick.x / step, pick.y / step
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 255, 0))
    box = min(data.shape) // 2 * 2
    crop = data[:box, :box]
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(crop - crop.mean()))))
    step_ps = max(1, box // THUMB)
    spectrum = spectrum[::step_ps, ::step_ps]
    lo, hi = np.percentile(spectrum, (5, 99.5))
    ps = np.clip((spectrum - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return _image_uri(mic), _image_uri(Image.fromarray(ps))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _squares(records: list[dict[str, Any]]) -> list[list[Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(grid_square_of(r["key"]) or "-")].append(r)
    rows = []
    for square, items in sorted(groups.items()):
        done = [r for r in items if r["state"] == "done"]
        defocus = [0.5 * (r["defocus_u"] + r["defocus_v"]) for r in done if "defocus_u" in r]
        rows.append(
            [
                square,
                len(items),
                len(done),
                len(items) - len(done),
                f"{np.mean(defocus):.0f}" if defocus else "-",
                sum(int(r.get("particles", 0)) for r in done),
            ]
        )
    return rows


def _counts_table(snap: Snapshot, accepted: int, rejected: int) -> str:
    c = snap.counts
    labels = [s.count for s in snap.pipeline]
    headers = ["movies", *labels, "done", "failed", "accepted", "rejected", *c.totals]
    values = [
        len(snap.rows),
        *(c.steps[k] for k in labels),
        c.done,
        c.failed,
        accepted,
        rejected,
        *c.totals.values(),
    ]
    return _table(headers, [values])


def _plots(snap: Snapshot, done: list[dict[str, Any]]) -> list[str]:
    plots = [_throughput(snap.rows)]
    for step, f in snap.pipeline.fields():
        if f.histogram:
            values = [
                float(r[f.name])
                for r in done
                if (r.get("steps") or {}).get(step.name) and isinstance(r.get(f.name), int | float)
            ]
            if values:
                plots.append(_hist(values, f.label or f.name, f.unit or "value"))
    return plots


def _recent(folder: Path, config: Config, done: list[dict[str, Any]], recent: int) -> str:
    latest = sorted(done, key=lambda r: max((r.get("times") or {"": 0}).values()))[-recent:]
    cells = []
    diameter = float(config.get("cryolo", {}).get("diameter_max", 120))
    for r in reversed(latest):
        if "micrograph" not in r:
            continue
        r = {**r, "particle_diameter_px": diameter / float(r.get("pixel_size", 1.0))}
        mic, ps = thumbnails(folder, r)
        name = html.escape(Path(r["key"]).name)
        cells.append(
            f'<div class="mic"><img alt="micrograph" src="{mic}"> '
            f'<img alt="power spectrum" src="{ps}"><br>{name}<br>'
            f"{r.get('particles', 0)} picks, {r.get('ctf_resolution', '-')} Å</div>"
        )
    return '<h2>Recent micrographs</h2><div class="mics">' + "".join(cells) + "</div>"


def render(folder: Path, config: Config, recent: int = 6) -> str:
    """The report page; thumbnails circle picks at the LoG maximum diameter."""
    reader = ProgressReader(folder)
    snap = reader.snapshot()
    records = reader.results()
    done = [r for r in records if r["state"] == "done"]
    accepted, rejected = curate(records, config.get("curation", {}))
    fig = figures(snap.rows, records, snap.pipeline.names)
    latency = [fig.get(latency_key(s.name)) for s in snap.pipeline]
    parts = [
        f"<h1>emotf report: {html.escape(str(config.get('session_dir', folder)))}</h1>",
        f"<p>updated {time.strftime('%Y-%m-%d %H:%M:%S')}</p>",
        _counts_table(snap, len(accepted), len(rejected)),
        _table(
            [f"latency found→{s.name} (s)" for s in snap.pipeline] + ["done per hour"],
            [[*latency, fig["movies_per_hour_done"]]],
        ),
    ]
    if done:
        parts.append(
            '<h2>Statistics</h2><div class="plots">'
            + "".join(f'<img alt="plot" src="{p}">' for p in _plots(snap, done))
            + "</div>"
        )
        parts.append(
            "<h2>Grid squares</h2>"
            + _table(
                ["GridSquare", "movies", "done", "failed", "mean defocus (Å)", "particles"],
                _squares(records),
            )
        )
        parts.append(_recent(folder, config, done, recent))
    failures = [[r.key, r.failed_step, r.reason] for r in snap.rows if r.state == "failed"]
    if failures:
        parts.append(
            '<h2 class="fail">Failures</h2>' + _table(["movie", "step", "reason"], failures)
        )
    notes = [
        [r["key"], step, note] for r in records for step, note in (r.get("notes") or {}).items()
    ]
    if notes:
        parts.append("<h2>Notes of optional steps</h2>" + _table(["movie", "step", "note"], notes))
    if snap.pipeline.errors:
        parts.append(
            '<h2 class="fail">Pipeline errors</h2><ul>'
            + "".join(f"<li>{html.escape(e)}</li>" for e in snap.pipeline.errors)
            + "</ul>"
        )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>emotf report</title>'
        f'<meta http-equiv="refresh" content="60"><style>{CSS}</style></head><body>'
        + "".join(parts)
        + "</body></html>"
    )


def write_report(folder: Path, config: Config) -> Path:
    """(Re)write ``report.html``, unless a file there is not emotf's (then left as is)."""
    path = Path(folder) / "report.html"
    made = MadeFiles(Path(folder))
    if made.may_write(path.name):
        atomic_write_text(path, render(Path(folder), config))
        made.wrote(path.name)
    return path
