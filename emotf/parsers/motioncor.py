"""MotionCor2 / MotionCor3 shifts, whatever the version wrote.

Sources understood (all in pixels of the input movie, one ``(x, y)`` per frame):

* ``-LogFile <prefix>`` files of MotionCor2 ≤ 1.5: ``<prefix>0-Full.log`` (global only) or
  ``<prefix>0-Patch-Full.log`` (patch run): ``#`` header lines then rows ``frame x y``
  (``%4d  %8.2f  %8.2f``); ``<prefix>0-Patch-Patch.log``: ``#Patch 001 ...`` headers, rows
  ``frame cx cy dx dy bad`` (first 5 columns kept).
* ``-LogDir <dir>`` files of MotionCor2 ≥ 1.6 and MotionCor3: the same files named
  ``<stem>-Full.log``, ``<stem>-Patch-Full.log``, ``<stem>-Patch-Patch.log``.
* MotionCor3 ``-OutAln`` ``<stem>.aln``: ``globalShift`` rows ``frame x y`` with **0-based**
  frames, then ``localShift`` rows ``frame cx cy dx dy`` under each ``patchID:``.
* stdout (no version banner in any version): after the line ``Full-frame alignment shift``,
  ``...... Frame (  1) shift:  x  y`` lines (MotionCor2 ≤ 1.5, MotionCor3); or, in
  MotionCor2 1.6.x, after a line that is exactly ``Full-frame alignment``, the header
  ``Frame   x Shift   y Shift`` and rows ``frame x y``. A section ends at a blank line.
  ``Full-frame alignment has been started.`` (printed earlier) starts no section.

Sign convention. MotionCor reports, for every frame, the shift it *applies* to bring that
frame onto the reference frame (``-FmRef 0`` = frame 1 → frame 1 is ``(0, 0)``). RELION's
``rlnMicrographShiftX/Y`` is the same quantity: RELION's own MotionCor2 wrapper
(``getShiftsMotioncor2``) copies MotionCor's numbers into the global-shift table without
negation, and its own aligner stores the correction (−drift, verified against a simulator).
So no sign change is made here; values are returned exactly as MotionCor printed them.
Frame numbers become 1-based (RELION's ``rlnMicrographFrameNumber``) also for ``.aln``.

Garbage is rejected with :class:`ParseError` naming the file: non-numeric rows, NaN/inf,
sentinel values (|v| ≥ 9999, e.g. the −9999 RELION wrote when MotionCor2 1.6 logs could not
be read), frame numbers that are not consecutive, and a frame count other than expected.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

from ..records import MotionResult, ParseError

log = logging.getLogger(__name__)

SENTINEL = 9999.0
LocalShift = tuple[int, float, float, float, float]
MOVIE_EXTS = ("", ".tiff", ".tif", ".mrc", ".eer")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_FRAME_LINE = re.compile(rf"Frame\s*\(\s*(\d+)\s*\)\s*shift:\s*({_NUM})\s+({_NUM})", re.I)
_TABLE_ROW = re.compile(rf"^\s*(\d+)\s+({_NUM})\s+({_NUM})\s*$", re.I)
_TABLE_HEADER = re.compile(r"^\s*Frame\s+x\s+Shift\s+y\s+Shift\s*$", re.I)
NO_SECTION = "no 'Full-frame alignment' shift table"


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc


def _floats(line: str, source: object, n_min: int) -> list[float]:
    try:
        values = [float(t) for t in line.split()]
    except ValueError:
        raise ParseError(f"{source}: not a row of numbers: {line.strip()[:70]!r}") from None
    if len(values) < n_min:
        raise ParseError(f"{source}: {len(values)} columns, expected ≥ {n_min}: {line.strip()!r}")
    return values


def _check_values(values: Iterable[float], source: object) -> None:
    for v in values:
        if not math.isfinite(v) or abs(v) >= SENTINEL:
            raise ParseError(f"{source}: invalid shift value {v} (NaN/inf/sentinel)")


def _validate(
    frames: list[int], shifts: list[tuple[float, float]], source: object, n_frames: int | None
) -> MotionResult:
    """Check consecutive frames, sane values and the expected count; return a result."""
    if len(shifts) < 2:
        raise ParseError(f"{source}: {len(shifts)} frame(s) of shifts; need at least 2")
    if any(b - a != 1 for a, b in zip(frames, frames[1:], strict=False)):
        raise ParseError(f"{source}: frame numbers not consecutive: {frames[:12]}")
    if n_frames is not None and len(shifts) != n_frames:
        raise ParseError(f"{source}: {len(shifts)} frames of shifts, expected {n_frames}")
    _check_values((v for s in shifts for v in s), source)
    return MotionResult(shifts=list(shifts))


def _data_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def parse_full_log(path: Path, n_frames: int | None = None) -> MotionResult:
    """``*-Full.log`` / ``*-Patch-Full.log``: ``#`` headers, then rows ``frame x y``."""
    rows = [_floats(line, path, 3) for line in _data_lines(_read(path))]
    frames = [int(r[0]) for r in rows]
    return _validate(frames, [(r[1], r[2]) for r in rows], path, n_frames)


def parse_patch_log(path: Path) -> list[LocalShift]:
    """``*-Patch-Patch.log``: rows ``frame cx cy dx dy [fitx fity]`` (first 5 columns kept)."""
    local: list[LocalShift] = []
    for line in _data_lines(_read(path)):
        v = _floats(line, path, 5)
        _check_values(v[1:5], path)
        local.append((int(v[0]), v[1], v[2], v[3], v[4]))
    return local


def parse_aln(path: Path, n_frames: int | None = None) -> MotionResult:
    """MotionCor3 ``.aln``: global shifts (0-based frames) and optional local shifts."""
    section = ""
    frames: list[int] = []
    shifts: list[tuple[float, float]] = []
    local: list[LocalShift] = []
    for line in _read(path).splitlines():
        text = line.strip()
        key = text.lower().replace(" ", "").lstrip("#")
        if key.startswith("globalshift"):
            section = "global"
            continue
        if key.startswith("localshift"):
            section = "local"
            continue
        if not text or text.startswith("#") or not (text[0].isdigit() or text[0] in "+-."):
            continue  # setting lines, stackID / patchID markers
        v = _floats(text, path, 3)
        if section == "global":
            frames.append(int(v[0]))
            shifts.append((v[1], v[2]))
        elif section == "local":
            if len(v) < 5:
                raise ParseError(f"{path}: local shift row needs 5 columns: {text!r}")
            _check_values(v[1:5], path)
            local.append((int(v[0]) + 1, v[1], v[2], v[3], v[4]))
    if section == "":
        raise ParseError(f"{path}: no globalShift block (not a MotionCor3 .aln file)")
    result = _validate(frames, shifts, path, n_frames)
    result.local = local
    return result


def _section_start(line: str) -> bool:
    """``Full-frame alignment shift`` (≤ 1.5, MC3) or exactly ``Full-frame alignment`` (1.6)."""
    text = line.strip()
    return text == "Full-frame alignment" or text.startswith("Full-frame alignment shift")


def _section_rows(lines: list[str]) -> list[tuple[int, float, float]]:
    rows: list[tuple[int, float, float]] = []
    table = False
    for row in lines:
        match = _FRAME_LINE.search(row)
        if match:  # MotionCor2 ≤ 1.5, MotionCor3
            rows.append((int(match.group(1)), float(match.group(2)), float(match.group(3))))
            continue
        if not rows and _TABLE_HEADER.match(row):  # MotionCor2 1.6.x table header
            table = True
            continue
        if table and (match := _TABLE_ROW.match(row)):
            rows.append((int(match.group(1)), float(match.group(2)), float(match.group(3))))
            continue
        break  # blank line, "Global shifts are corrected", anything else
    return rows


def _stdout_sections(text: str) -> list[list[tuple[int, float, float]]]:
    lines = text.splitlines()
    return [_section_rows(lines[i + 1 :]) for i, ln in enumerate(lines) if _section_start(ln)]


def parse_stdout_all(text: str, source: str = "stdout") -> list[MotionResult]:
    """Every full-frame shift section (a batch run prints one per movie)."""
    sections = _stdout_sections(text)
    if not sections:
        raise ParseError(f"{source}: {NO_SECTION}")
    return [
        _validate([r[0] for r in rows], [(r[1], r[2]) for r in rows], source, None)
        for rows in sections
    ]


def parse_stdout(text: str, source: str = "stdout", n_frames: int | None = None) -> MotionResult:
    """Shifts of the first full-frame shift section of MotionCor's stdout."""
    sections = _stdout_sections(text)
    if not sections:
        raise ParseError(f"{source}: {NO_SECTION}")
    rows = sections[0]
    return _validate([r[0] for r in rows], [(r[1], r[2]) for r in rows], source, n_frames)


def detect_version(text: str) -> str | None:
    """``1.2.1`` from ``MotionCor3 --version`` output (``MotionCor3 version 1.2.1``), if any.

    A processing run's stdout carries no version banner in any MotionCor2/3 version, so
    ``None`` is the normal answer for a run log; the version comes from the configuration.
    """
    match = re.search(r"MotionCor[23]?\s+(?:version\s+)?v?(\d+(?:\.\d+)+)", text, re.I)
    return match.group(1) if match else None


def motion_log_files(log_dir: Path, stem: str) -> dict[str, Path]:
    """The MotionCor files that exist for ``stem``: keys ``full``, ``patch``, ``aln``.

    ``-LogDir`` names (``<stem>-Patch-Full.log``, ``<stem>-Full.log``; some builds keep the
    movie extension) are tried first, then the ``-LogFile`` prefix names ``<stem>0-...``.
    """
    log_dir = Path(log_dir)
    found: dict[str, Path] = {}
    names = [f"{stem}{ext}" for ext in MOVIE_EXTS] + [f"{stem}0", f"{stem}_0"]
    for base in names:
        for kind in ("-Patch-Full.log", "-Full.log"):
            if "full" not in found and (log_dir / f"{base}{kind}").is_file():
                found["full"] = log_dir / f"{base}{kind}"
                patch = log_dir / f"{base}-Patch-Patch.log"
                if kind == "-Patch-Full.log" and patch.is_file():
                    found["patch"] = patch
    if (log_dir / f"{stem}.aln").is_file():
        found["aln"] = log_dir / f"{stem}.aln"
    return found


def find_motion_result(
    log_dir: Path,
    stem: str,
    n_frames: int | None = None,
    aln_dir: Path | None = None,
    stdout: str | None = None,
) -> MotionResult:
    """Shifts of movie ``stem`` from whichever MotionCor output exists, any version.

    Order: full-frame log (+ Patch-Patch local shifts), MotionCor3 ``.aln`` (in ``aln_dir``,
    default ``log_dir``), then ``stdout`` text if given. ``log_dir`` may also be a
    ``-LogFile`` prefix's folder with ``stem`` the prefix's file part.
    """
    files = motion_log_files(log_dir, stem)
    if aln_dir is not None and "aln" not in files and (Path(aln_dir) / f"{stem}.aln").is_file():
        files["aln"] = Path(aln_dir) / f"{stem}.aln"
    if "full" in files:
        log.debug("motion shifts of %s from %s", stem, files["full"])
        result = parse_full_log(files["full"], n_frames)
        if "patch" in files:
            result.local = parse_patch_log(files["patch"])
        elif "aln" in files:
            result.local = parse_aln(files["aln"]).local
        return result
    if "aln" in files:
        return parse_aln(files["aln"], n_frames)
    if stdout is not None:
        return parse_stdout(stdout, f"stdout of {stem}", n_frames)
    raise ParseError(f"no MotionCor log for {stem} in {log_dir}")
