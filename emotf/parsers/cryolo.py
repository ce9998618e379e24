"""crYOLO picks: CBOX (all boxes with confidence), STAR (centres) and EMAN box files.

* ``CBOX/<mic>.cbox`` (crYOLO ≥ 1.8, STAR syntax): ``data_cryolo`` loop with
  ``_CoordinateX/_CoordinateY`` = lower-left corner, ``_Width/_Height``, ``_Confidence``;
  it holds every box, also those below the threshold, so the caller's threshold applies.
* ``STAR/<mic>.star``: ``_rlnCoordinateX/Y`` = box centres, already thresholded.
* ``EMAN/<mic>.box``: ``x y w h`` per line, lower-left corner, already thresholded.

An empty file means no particle (crYOLO writes one for zero picks).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import starfile

from ..records import ParseError, Pick
from .relion import read_coordinates_star


def _float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number


def read_cbox(path: Path, threshold: float = 0.0) -> list[Pick]:
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"{path}: missing")
    if path.stat().st_size == 0:
        return []
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:
        raise ParseError(f"{path}: not a readable CBOX file ({exc})") from exc
    table = blocks.get("cryolo")
    if not isinstance(table, pd.DataFrame) or table.empty:
        return []
    needed = {"CoordinateX", "CoordinateY", "Width", "Height", "Confidence"}
    if not needed <= set(table.columns):
        raise ParseError(f"{path}: columns {sorted(needed - set(table.columns))} missing")
    picks = []
    for row in table.itertuples(index=False):
        x, y = _float(row.CoordinateX), _float(row.CoordinateY)
        w, h, conf = _float(row.Width), _float(row.Height), _float(row.Confidence)
        if math.isnan(x) or math.isnan(y) or math.isnan(conf) or conf < threshold:
            continue
        picks.append(Pick(x + (0.0 if math.isnan(w) else w / 2),
                          y + (0.0 if math.isnan(h) else h / 2), conf))  # fmt: skip
    return picks


def read_eman_box(path: Path) -> list[Pick]:
    picks = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            x, y, w, h = (float(v) for v in line.split()[:4])
        except ValueError:
            raise ParseError(f"{path}:{n}: expected 'x y w h', got {line[:60]!r}") from None
        picks.append(Pick(x + w / 2, y + h / 2))
    return picks


def read_distr_summary(path: Path) -> dict[str, float]:
    """``DISTR/*_summary_*.txt``: CSV ``Metric,Value`` (MEAN, SD, Q25, Q50, Q75)."""
    values: dict[str, float] = {}
    for line in Path(path).read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] and parts[0].lower() != "metric":
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                raise ParseError(f"{path}: bad value in {line!r}") from None
    return values


def find_cryolo_picks(out_dir: Path, mic_stem: str, threshold: float) -> list[Pick]:
    """Picks of one micrograph from crYOLO's output folder (CBOX, else STAR, else EMAN)."""
    out_dir = Path(out_dir)
    cbox = out_dir / "CBOX" / f"{mic_stem}.cbox"
    if cbox.is_file():
        return read_cbox(cbox, threshold)
    star = out_dir / "STAR" / f"{mic_stem}.star"
    if star.is_file():
        return read_coordinates_star(star)
    box = out_dir / "EMAN" / f"{mic_stem}.box"
    if box.is_file():
        return read_eman_box(box)
    raise ParseError(f"crYOLO wrote no picks for {mic_stem} in {out_dir}")
