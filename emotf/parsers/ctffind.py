"""CTFFIND4 / CTFFIND5 output: ``X.txt``, ``X_avrot.txt`` and the stdout summary.

The version is decided by the number of columns of the result rows: 7 (CTFFIND4: number,
defocus 1, defocus 2, azimuth, phase shift, cross correlation, fit resolution) or 10
(CTFFIND5 adds tilt axis, tilt angle and sample thickness in Å). A fit resolution of
``inf`` means "no rings fitted"; it stays ``math.inf`` here (RELION maps it to 999).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..records import CtfResult, ParseError

ICE_BAND = (0.25, 0.28)  # 1/Å, where hexagonal ice rings sit (RELION's rlnIceRingDensity)


def _rows(path: Path) -> list[list[float]]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(v) for v in line.split()])  # float() accepts inf and nan
        except ValueError:
            raise ParseError(f"{path}:{n}: not a row of numbers: {line[:80]!r}") from None
    return rows


def read_ctffind_txt(path: Path) -> list[CtfResult]:
    """One CtfResult per micrograph row of a CTFFIND4 (7 columns) or CTFFIND5 (10) file."""
    results = []
    for row in _rows(path):
        if len(row) not in (7, 10):
            raise ParseError(f"{path}: {len(row)} columns; expected 7 (CTFFIND4) or 10 (CTFFIND5)")
        if not all(math.isfinite(v) for v in row[1:6]):
            raise ParseError(f"{path}: non-finite defocus/score values")
        res = row[6] if row[6] > 0 else math.inf
        extra = row[7:10] if len(row) == 10 else [None, None, None]
        results.append(
            CtfResult(
                defocus_u=row[1],
                defocus_v=row[2],
                angle=row[3],
                phase_shift=row[4],
                score=row[5],
                resolution=res,
                tilt_axis=extra[0],
                tilt_angle=extra[1],
                thickness=extra[2],
            )
        )
    if not results:
        raise ParseError(f"{path}: no result rows")
    return results


def read_avrot(path: Path) -> NDArray[np.float64]:
    """``_avrot.txt`` as an array of shape (n_micrographs, 6, n_bins)."""
    rows = _rows(path)
    if not rows or len(rows) % 6:
        raise ParseError(f"{path}: {len(rows)} data rows; expected 6 per micrograph")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ParseError(f"{path}: rows of different lengths {sorted(lengths)}")
    return np.asarray(rows, dtype=float).reshape(-1, 6, lengths.pop())


def ice_ring_density(avrot: NDArray[np.float64]) -> float:
    """Σ |rotational average (row #2)| over 0.25–0.28 1/Å, for one micrograph's 6 rows."""
    freq, rot = avrot[0], avrot[1]
    band = (freq >= ICE_BAND[0]) & (freq <= ICE_BAND[1])
    return float(np.abs(rot[band]).sum())


_STDOUT = {
    "defocus": re.compile(r"Estimated defocus values\s*:\s*([-\d.eE+]+)\s*,\s*([-\d.eE+]+)"),
    "angle": re.compile(r"Estimated azimuth of astigmatism\s*:\s*([-\d.eE+]+)"),
    "score": re.compile(r"^\s*Score\s*:\s*([-\d.eE+]+)", re.M),
    "resolution": re.compile(r"Thon rings with good fit up to\s*:\s*([-\d.eE+infINF]+)"),
    "pixel": re.compile(r"Pixel size for fitting\s*:\s*([-\d.eE+]+)"),
}


def parse_ctffind_stdout(text: str) -> CtfResult:
    """The summary CTFFIND prints (used when the ``.txt`` is missing)."""
    found = {k: rx.search(text) for k, rx in _STDOUT.items()}
    if not found["defocus"] or not found["angle"]:
        raise ParseError("CTFFIND output has no 'Estimated defocus values' summary")
    d = found["defocus"]
    res_match = found["resolution"]
    return CtfResult(
        defocus_u=float(d.group(1)),
        defocus_v=float(d.group(2)),
        angle=float(found["angle"].group(1)),
        score=float(found["score"].group(1)) if found["score"] else 0.0,
        resolution=float(res_match.group(1)) if res_match else math.inf,
    )
