"""CTFFIND4 / CTFFIND5 output: ``X.txt``, ``X_avrot.txt``, the stdout summary, MC3 ``_Ctf.txt``.

``X.txt`` has ``#`` header lines then one row per micrograph. The version is decided by the
column count of the rows, not by the header: 7 columns = CTFFIND4 (number, defocus 1,
defocus 2, azimuth, phase shift [rad], cross correlation, fit resolution [Å]); 10 columns =
CTFFIND5 (adds tilt axis angle, tilt angle, sample thickness [Å]). A fit resolution of
``inf`` or ``nan`` (no rings fitted) becomes ``math.inf``; RELION maps it to 999 on output.

``X_avrot.txt`` has 6 rows per micrograph (frequency 1/Å, rotational average without and
with astigmatism, CTF fit, fit cross-correlation, 2σ noise CC) → array (n_mics, 6, n_bins).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..records import CtfResult, ParseError

log = logging.getLogger(__name__)

ICE_BAND = (0.25, 0.28)  # 1/Å, hexagonal ice rings (RELION's rlnIceRingDensity)
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf(?:inity)?|nan"


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc


def _rows(path: Path) -> list[list[float]]:
    rows = []
    for n, line in enumerate(_read(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(v) for v in line.split()])  # float() accepts inf and nan
        except ValueError:
            raise ParseError(f"{path}:{n}: not a row of numbers: {line[:80]!r}") from None
    return rows


def _resolution(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else math.inf


def ctffind_version(path: Path) -> str | None:
    """``4.1.14`` / ``5.0.2`` from the ``# Output from CTFFind version ...`` header, if any."""
    match = re.search(r"CTFFind version\s+(\d+(?:\.\d+)+)", _read(path), re.I)
    return match.group(1) if match else None


def _result(row: list[float], path: Path) -> CtfResult:
    if len(row) not in (7, 10):
        raise ParseError(f"{path}: {len(row)} columns; expected 7 (CTFFIND4) or 10 (CTFFIND5)")
    if not all(math.isfinite(v) for v in row[1:6]):
        raise ParseError(f"{path}: non-finite defocus/angle/score in row {row[0]:g}")
    if row[1] <= 0 or row[2] <= 0:
        raise ParseError(f"{path}: non-positive defocus {row[1]:g}, {row[2]:g}")
    tilt_axis = tilt_angle = thickness = None
    if len(row) == 10:
        tilt_axis, tilt_angle, thickness = (v if math.isfinite(v) else None for v in row[7:10])
    return CtfResult(
        defocus_u=row[1],
        defocus_v=row[2],
        angle=row[3],
        phase_shift=row[4],
        score=row[5],
        resolution=_resolution(row[6]),
        tilt_axis=tilt_axis,
        tilt_angle=tilt_angle,
        thickness=thickness,
    )


def read_ctffind_txt(path: Path) -> list[CtfResult]:
    """One :class:`CtfResult` per micrograph row of a CTFFIND4 (7 col.) or CTFFIND5 (10) file."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise ParseError(f"{path}: no result rows")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ParseError(f"{path}: rows with different column counts {sorted(widths)}")
    return [_result(row, path) for row in rows]


def read_avrot(path: Path) -> NDArray[np.float64]:
    """``_avrot.txt`` as an array of shape (n_micrographs, 6, n_bins)."""
    path = Path(path)
    rows = _rows(path)
    if not rows or len(rows) % 6:
        raise ParseError(f"{path}: {len(rows)} data rows; expected 6 per micrograph")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ParseError(f"{path}: rows of different lengths {sorted(lengths)}")
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6, lengths.pop())


def ice_ring_density(avrot_rows: NDArray[np.float64]) -> float:
    """Σ |row #2| (rotational average, no astigmatism) over bins with 0.25 ≤ freq ≤ 0.28 1/Å.

    ``avrot_rows`` are one micrograph's 6 rows (``read_avrot(p)[i]``).
    """
    rows = np.asarray(avrot_rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 2:
        raise ValueError(f"expected one micrograph's avrot rows (6, n_bins), got {rows.shape}")
    freq, rot = rows[0], rows[1]
    band = (freq >= ICE_BAND[0]) & (freq <= ICE_BAND[1])
    return float(np.abs(rot[band]).sum())


def read_ctffind(txt: Path, avrot: Path | None = None) -> list[CtfResult]:
    """``X.txt`` results with ``ice_ring_density`` filled from ``X_avrot.txt`` if it exists."""
    results = read_ctffind_txt(txt)
    avrot = Path(avrot) if avrot is not None else Path(str(txt)[: -len(".txt")] + "_avrot.txt")
    if avrot.is_file():
        spectra = read_avrot(avrot)
        if len(spectra) != len(results):
            raise ParseError(f"{avrot}: {len(spectra)} micrographs but {len(results)} in {txt}")
        for result, rows in zip(results, spectra, strict=True):
            result.ice_ring_density = ice_ring_density(rows)
    return results


_STDOUT = {
    "defocus": re.compile(rf"Estimated defocus values\s*:\s*({_NUM})\s*,\s*({_NUM})", re.I),
    "angle": re.compile(rf"Estimated azimuth of astigmatism\s*:\s*({_NUM})", re.I),
    "score": re.compile(rf"^\s*Score\s*:\s*({_NUM})", re.I | re.M),
    "resolution": re.compile(rf"Thon rings with good fit up to\s*:\s*({_NUM})", re.I),
    "pixel": re.compile(rf"Pixel size for fitting\s*:\s*({_NUM})", re.I),
}


def parse_ctffind_summary(text: str, source: str = "stdout") -> tuple[CtfResult, float | None]:
    """The summary CTFFIND prints, and the "Pixel size for fitting" (Å) if printed."""
    found = {k: rx.search(text) for k, rx in _STDOUT.items()}
    defocus, angle = found["defocus"], found["angle"]
    if defocus is None or angle is None:
        raise ParseError(f"{source}: no 'Estimated defocus values' / azimuth summary")
    values = [float(defocus.group(1)), float(defocus.group(2)), float(angle.group(1))]
    if not all(math.isfinite(v) for v in values):
        raise ParseError(f"{source}: non-finite defocus/azimuth {values}")
    score, res, pixel = found["score"], found["resolution"], found["pixel"]
    result = CtfResult(
        defocus_u=values[0],
        defocus_v=values[1],
        angle=values[2],
        score=float(score.group(1)) if score else 0.0,
        resolution=_resolution(float(res.group(1))) if res else math.inf,
    )
    return result, float(pixel.group(1)) if pixel else None


def parse_ctffind_stdout(text: str, source: str = "stdout") -> CtfResult:
    """The summary CTFFIND prints (fallback when ``X.txt`` is missing)."""
    return parse_ctffind_summary(text, source)[0]


def read_mc3_ctf_txt(path: Path) -> list[CtfResult]:
    """MotionCor3 ``<stem>_Ctf.txt``: rows ``n df1 df2 azimuth phase CC res`` (like CTFFIND4).

    Some MotionCor3 builds hard-code the resolution column to 10.0; it is returned as is.
    Rows of 6 values (no micrograph number) are accepted too.
    """
    path = Path(path)
    results: list[CtfResult] = []
    for row in _rows(path):
        if len(row) == 6:
            row = [float(len(results) + 1), *row]
        if len(row) != 7:
            raise ParseError(f"{path}: {len(row)} columns; expected 7 (MotionCor3 _Ctf.txt)")
        results.append(_result(row, path))
    if not results:
        raise ParseError(f"{path}: no result rows")
    return results
