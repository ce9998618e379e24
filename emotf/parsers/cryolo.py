"""crYOLO picks: CBOX (all boxes with confidence), STAR (centres) and EMAN box files.

* ``CBOX/<mic>.cbox`` (crYOLO ≥ 1.8, STAR syntax): ``data_global`` (``_cbox_format_version``),
  ``data_cryolo`` loop ``_CoordinateX _CoordinateY _CoordinateZ _Width _Height _Depth
  _EstWidth _EstHeight _Confidence _NumBoxes _Angle`` (X/Y = **lower-left corner**, centre =
  X + Width/2; Z/Depth/NumBoxes/Angle are ``<NA>``/nan for single particles) and
  ``data_cryolo_include``. It holds **every** box, also those below crYOLO's threshold, so the
  caller's threshold is applied here.
* ``STAR/<mic>.star``: ``_rlnCoordinateX/Y`` = box centres, already thresholded.
* ``EMAN/<mic>.box``: ``x y w h`` per line (tabs), lower-left corner, already thresholded.
* ``DISTR/*_summary_*.txt``: CSV ``Metric,Value`` (MEAN, SD, Q25, Q50, Q75).

An empty file means no particle (crYOLO writes one for zero picks).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from ..records import ParseError, Pick
from .relion import read_coordinates_star, read_star

log = logging.getLogger(__name__)

SUBDIRS = (("CBOX", ".cbox"), ("STAR", ".star"), ("EMAN", ".box"))


def _column(table: pd.DataFrame, name: str) -> list[float]:
    if name not in table.columns:
        return [math.nan] * len(table)
    return pd.to_numeric(table[name], errors="coerce").astype(float).tolist()


def read_cbox(path: Path, threshold: float | None = None) -> list[Pick]:
    """Box centres with confidence ≥ ``threshold`` (``None``: every box) of a CBOX file.

    A box whose confidence is ``<NA>`` (box-manager files) has no score: it is kept, with
    ``score=None``, when no threshold is set and dropped when one is (it cannot pass it).
    Rows without coordinates or size are skipped; a missing ``_Width`` falls back to
    ``_EstWidth`` (same for height).
    """
    path = Path(path)
    blocks = read_star(path)
    if not blocks:
        return []
    table = blocks.get("cryolo")
    if table is None:
        raise ParseError(f"{path}: no data_cryolo block (not a crYOLO ≥ 1.8 CBOX file)")
    if not isinstance(table, pd.DataFrame) or table.empty:
        return []
    missing = {"CoordinateX", "CoordinateY", "Confidence"} - set(table.columns)
    if missing or ("Width" not in table.columns and "EstWidth" not in table.columns):
        raise ParseError(f"{path}: CBOX columns missing: {sorted(missing) or ['Width']}")
    xs, ys = _column(table, "CoordinateX"), _column(table, "CoordinateY")
    ws, hs = _column(table, "Width"), _column(table, "Height")
    ews, ehs = _column(table, "EstWidth"), _column(table, "EstHeight")
    confs = _column(table, "Confidence")
    picks: list[Pick] = []
    skipped = unscored = 0
    for x, y, w, h, ew, eh, conf in zip(xs, ys, ws, hs, ews, ehs, confs, strict=True):
        w = w if math.isfinite(w) else ew
        h = h if math.isfinite(h) else (eh if math.isfinite(eh) else w)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            skipped += 1
            continue
        score = conf if math.isfinite(conf) else None
        if threshold is not None and score is None:
            unscored += 1
        elif threshold is None or (score is not None and score >= threshold):
            picks.append(Pick(x + w / 2, y + h / 2, score))
    if skipped:
        log.warning("%s: %d box(es) without coordinates/size skipped", path, skipped)
    if unscored:
        log.info("%s: %d box(es) without a confidence dropped by threshold %s", path, unscored,
                 threshold)  # fmt: skip
    return picks


def read_cryolo_star(path: Path) -> list[Pick]:
    """crYOLO ``STAR/<mic>.star`` (centres; no score unless a figure of merit is given)."""
    return read_coordinates_star(path)


def read_eman_box(path: Path) -> list[Pick]:
    """EMAN ``.box``: ``x y w h`` (lower-left corner) per line → centres."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc
    picks = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            x, y, w, h = (float(v) for v in line.split()[:4])
        except ValueError:
            raise ParseError(f"{path}:{n}: expected 'x y w h', got {line[:60]!r}") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise ParseError(f"{path}:{n}: non-finite box {line.strip()!r}")
        picks.append(Pick(x + w / 2, y + h / 2))
    return picks


def read_distr_summary(path: Path) -> dict[str, float]:
    """``DISTR/*_summary_*.txt``: CSV ``Metric,Value`` → ``{"MEAN": ..., "Q50": ...}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc
    values: dict[str, float] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0] or parts[0].lower() == "metric":
            continue
        try:
            values[parts[0]] = float(parts[1])
        except ValueError:
            raise ParseError(f"{path}: bad value in {line.strip()!r}") from None
    return values


def find_distr_summaries(out_dir: Path) -> dict[str, dict[str, float]]:
    """Newest ``size`` and ``confidence`` summaries in ``<out_dir>/DISTR`` (if written)."""
    found: dict[str, dict[str, float]] = {}
    for kind in ("size", "confidence"):
        files = sorted((Path(out_dir) / "DISTR").glob(f"{kind}_distribution_summary*.txt"))
        if files:
            found[kind] = read_distr_summary(files[-1])
    return found


def find_cryolo_outputs(out_dir: Path, mic_stem: str) -> Path | None:
    """The best pick file crYOLO wrote for ``mic_stem``: CBOX, else STAR, else EMAN."""
    for sub, ext in SUBDIRS:
        path = Path(out_dir) / sub / f"{mic_stem}{ext}"
        if path.is_file():
            return path
    return None


def read_cryolo_picks(path: Path, threshold: float | None = None) -> list[Pick]:
    """Picks from any crYOLO pick file, by extension; ``threshold`` applies to CBOX only."""
    path = Path(path)
    if path.suffix == ".cbox":
        return read_cbox(path, threshold)
    if path.suffix == ".star":
        return read_cryolo_star(path)
    if path.suffix == ".box":
        return read_eman_box(path)
    raise ParseError(f"{path}: not a crYOLO pick file (.cbox, .star, .box)")


def find_cryolo_picks(out_dir: Path, mic_stem: str, threshold: float | None) -> list[Pick]:
    """Picks of one micrograph from crYOLO's ``-o`` folder (CBOX > STAR > EMAN)."""
    path = find_cryolo_outputs(out_dir, mic_stem)
    if path is None:
        raise ParseError(f"crYOLO wrote no picks for {mic_stem} in {out_dir}")
    log.debug("crYOLO picks of %s from %s", mic_stem, path)
    return read_cryolo_picks(path, threshold)
