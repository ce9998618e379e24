"""A self-contained HTML report of a processing folder (``report.html``, images embedded).

Counts, curation, throughput over time, defocus / CTF resolution / drift histograms, a
per-GridSquare table, failures, and thumbnails of the most recent micrographs with their
picks drawn and their power spectra. Rewritten as batches finish; the page reloads itself.
Everything comes from the session's combined part (:mod:`emotf.session.aggregate`): the cost of a
rewrite does not grow with the number of movies, except for its per-GridSquare rows.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from ..config import Config  # noqa: E402
from ..fsutil import atomic_write_text, read_json  # noqa: E402
from ..session.aggregate import Part  # noqa: E402
from ..session.ledger import figures, latency_key  # noqa: E402
from ..session.progress import ProgressReader, Snapshot  # noqa: E402
from .made import MadeFiles  # noqa: E402
from .star_text import read_loops  # noqa: E402

log = logging.getLogger(__name__)

THUMB = 256
FAILURES_SHOWN = 200  # the failures table lists the most recent ones
CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#eee}.plots img{width:32%}.mics{display:flex;flex-wrap:wrap}
.mic{margin:4px;font-size:.75em;text-align:center}.fail{color:#a00}"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _hist(values: np.ndarray[Any, Any], title: str, unit: str) -> str:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(values, bins=20, color="#4477aa")
    ax.set_title(title)
    ax.set_xlabel(unit)
    ax.set_ylabel("micrographs")
    return _png(fig)


def _throughput(part: Part) -> str:
    fig, ax = plt.subplots(figsize=(4, 3))
    start = float(part.found.min())
    found, done = np.sort(part.found - start), np.sort(part.finished - start)
    ax.step(found / 60, np.arange(1, found.size + 1), label="found", where="post")
    ax.step(done / 60, np.arange(1, done.size + 1), label="done", where="post")
    ax.set_title("throughput")
    ax.set_xlabel("minutes")
    ax.set_ylabel("movies")
    ax.legend()
    return _png(fig)


def _image_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pick_centres(path: Path) -> list[tuple[float, float]]:
    """(x, y) of every pick in a coordinate STAR file, read without pandas (the report's
    process stays small: it runs beside the Snakemake runs)."""
    for loop in read_loops(path).values():
        if "rlnCoordinateX" in loop.columns and "rlnCoordinateY" in loop.columns:
            ix, iy = loop.columns.index("rlnCoordinateX"), loop.columns.index("rlnCoordinateY")
            return [(float(r[ix]), float(r[iy])) for r in loop.rows if len(r) > max(ix, iy)]
    return []


def power_spectrum(data: np.ndarray[Any, Any], box: int = 2 * THUMB) -> np.ndarray[Any, Any]:
    """log of the power spectrum averaged over non-overlapping ``box``-pixel tiles (centred):
    Thon rings show with less noise than in one transform of the whole micrograph, and the
    memory is a tile's, not a whole K3 micrograph's complex transform (~270 MB)."""
    box = min(box, min(data.shape) // 2 * 2)
    total = np.zeros((box, box))
    tiles = 0
    for y in range(0, data.shape[0] - box + 1, box):
        for x in range(0, data.shape[1] - box + 1, box):
            tile = np.asarray(data[y : y + box, x : x + box], dtype=np.float64)
            total += np.abs(np.fft.fft2(tile - tile.mean())) ** 2
            tiles += 1
    spectrum = np.log1p(np.sqrt(np.fft.fftshift(total / max(tiles, 1))))
    step = max(1, box // THUMB)
    return spectrum.reshape(box // step, step, box // step, step).mean((1, 3))


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
        for px, py in pick_centres(folder / record["coordinates"]):
            x, y = px / step, py / step
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=(0, 255, 0))
    spectrum = power_spectrum(data)
    lo, hi = np.percentile(spectrum, (5, 99.5))
    ps = np.clip((spectrum - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return _image_uri(mic), _image_uri(Image.fromarray(ps))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _squares(part: Part) -> list[list[Any]]:
    rows = []
    for name, sq in sorted(part.squares.items()):
        defocus = f"{sq.defocus_sum / sq.defocus_n:.0f}" if sq.defocus_n else "-"
        rows.append([name, sq.movies, sq.done, sq.movies - sq.done, defocus, sq.particles])
    return rows


def _counts_table(snap: Snapshot) -> str:
    c, part = snap.counts, snap.part
    labels = [s.count for s in snap.pipeline]
    headers = ["movies", *labels, "done", "failed", "accepted", "rejected", *c.totals]
    values = [
        c.movies_batched,
        *(c.steps[k] for k in labels),
        c.done,
        c.failed,
        part.accepted,
        part.rejected,
        *c.totals.values(),
    ]
    return _table(headers, [values])


def _plots(snap: Snapshot) -> list[str]:
    plots = [_throughput(snap.part)]
    for _step, f in snap.pipeline.fields():
        values = snap.part.values.get(f.stat_key)
        if f.histogram and values is not None and values.size:
            plots.append(_hist(values, f.label or f.name, f.unit or "value"))
    return plots


def recent_records(folder: Path, part: Part, recent: int) -> list[dict[str, Any]]:
    """Full records of the ``recent`` newest done movies (newest first), from the few batch
    results that hold them."""
    wanted = part.recent[-recent:]
    by_batch: dict[str, dict[str, Any]] = {}
    for batch in {b for _t, b, _k in wanted}:
        keys = {k for _t, b, k in wanted if b == batch}
        try:
            data = read_json(folder / "Results" / f"{batch}.json")
        except (OSError, ValueError):
            continue  # being rewritten (a rerun): shown next time
        by_batch[batch] = {m["key"]: m for m in data.get("movies", []) if m["key"] in keys}
        del data  # one batch's full records at a time
    found = [by_batch.get(b, {}).get(k) for _t, b, k in reversed(wanted)]
    return [r for r in found if r is not None and "micrograph" in r]


def _recent(folder: Path, config: Config, part: Part, recent: int) -> str:
    cells = []
    diameter = float(config.get("cryolo", {}).get("diameter_max", 120))
    for r in recent_records(folder, part, recent):
        r = {**r, "particle_diameter_px": diameter / float(r.get("pixel_size", 1.0))}
        try:
            mic, ps = thumbnails(folder, r)
        except (OSError, ValueError) as exc:  # a micrograph removed or being rewritten
            mic = ps = ""
            log.info("no thumbnail of %s: %s", r["key"], exc)
        name = html.escape(Path(r["key"]).name)
        cells.append(
            f'<div class="mic"><img alt="micrograph" src="{mic}"> '
            f'<img alt="power spectrum" src="{ps}"><br>{name}<br>'
            f"{r.get('particles', 0)} picks, {r.get('ctf_resolution', '-')} Å</div>"
        )
    return '<h2>Recent micrographs</h2><div class="mics">' + "".join(cells) + "</div>"


def _failures(part: Part) -> str:
    shown = part.failures[-FAILURES_SHOWN:]
    more = len(part.failures) - len(shown)
    head = f"<p>the last {len(shown)} of {len(part.failures)}</p>" if more else ""
    rows = [list(f) for f in shown]
    return '<h2 class="fail">Failures</h2>' + head + _table(["movie", "step", "reason"], rows)


def render(folder: Path, config: Config, recent: int = 6) -> str:
    """The report page; thumbnails circle picks at the LoG maximum diameter."""
    snap = ProgressReader(folder, config=config).snapshot()
    part = snap.part
    fig = figures(part, snap.pipeline.names)
    latency = [fig.get(latency_key(s.name)) for s in snap.pipeline]
    parts = [
        f"<h1>emotf report: {html.escape(str(config.get('session_dir', folder)))}</h1>",
        f"<p>updated {time.strftime('%Y-%m-%d %H:%M:%S')}</p>",
        _counts_table(snap),
        _table(
            [f"latency found→{s.name} (s)" for s in snap.pipeline] + ["done per hour"],
            [[*latency, fig["movies_per_hour_done"]]],
        ),
    ]
    if snap.counts.done:
        parts.append(
            '<h2>Statistics</h2><div class="plots">'
            + "".join(f'<img alt="plot" src="{p}">' for p in _plots(snap))
            + "</div>"
        )
        parts.append(
            "<h2>Grid squares</h2>"
            + _table(
                ["GridSquare", "movies", "done", "failed", "mean defocus (Å)", "particles"],
                _squares(part),
            )
        )
        parts.append(_recent(folder, config, part, recent))
    if part.failures:
        parts.append(_failures(part))
    if part.notes:
        rows = [[note, n] for note, n in part.notes.most_common()]
        parts.append("<h2>Notes of optional steps</h2>" + _table(["note", "movies"], rows))
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
