"""MotionCor2 / MotionCor3 shifts, whatever the version wrote.

Sources, in the order they are tried by :func:`find_motion_result`:

* ``-LogDir`` files of MotionCor2 ≥ 1.6 and MotionCor3: ``<stem>-Patch-Full.log`` (patch
  alignment) or ``<stem>-Full.log`` (global only); ``#`` header lines, rows ``frame x y``.
* ``-LogFile <prefix>`` files of MotionCor2 ≤ 1.5: ``<prefix>0-Patch-Full.log`` or
  ``<prefix>0-Full.log`` (same rows); ``...-Patch-Patch.log`` rows ``frame cx cy dx dy ...``.
* MotionCor3 ``-OutAln`` ``<stem>.aln``: ``globalShift`` rows ``frame x y`` (0-based frames),
  then ``localShift`` rows ``frame cx cy dx dy`` per patch.
* stdout: after ``Full-frame alignment shift``, either ``...... Frame (  1) shift: x y``
  lines (1.4/1.5, MotionCor3) or the 1.6 table whose header contains ``x Shift``.

Shifts are returned as MotionCor reports them, which is RELION's convention (the correction
applied to each frame): RELION stores MotionCor's numbers unchanged as rlnMicrographShiftX/Y.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..records import MotionResult, ParseError

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FRAME_LINE = re.compile(rf"Frame\s*\(\s*(\d+)\s*\)\s*shift:\s*({_NUM})\s+({_NUM})")


def _numbers(line: str) -> list[float] | None:
    try:
        return [float(t) for t in line.split()]
    except ValueError:
        return None


def _check(shifts: list[tuple[float, float]], source: str) -> MotionResult:
    if len(shifts) < 2:
        raise ParseError(f"{source}: fewer than 2 frames of shifts")
    for x, y in shifts:
        if not (math.isfinite(x) and math.isfinite(y)) or min(x, y) <= -9999:
            raise ParseError(f"{source}: invalid shift values ({x}, {y})")
    return MotionResult(shifts=shifts)


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from exc


def parse_full_log(path: Path) -> MotionResult:
    """``*-Full.log`` / ``*-Patch-Full.log``: rows ``frame x y`` after ``#`` headers."""
    rows = []
    for line in _read(path).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            values = _numbers(line)
            if values is None or len(values) < 3:
                raise ParseError(f"{path}: unexpected line {line.strip()[:60]!r}")
            rows.append(values)
    rows.sort(key=lambda r: r[0])
    return _check([(r[1], r[2]) for r in rows], str(path))


def parse_patch_log(path: Path) -> list[tuple[int, float, float, float, float]]:
    """``*-Patch-Patch.log``: rows ``frame cx cy dx dy [fit x, fit y]``."""
    local = []
    for line in _read(path).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            values = _numbers(line)
            if values is None or len(values) < 5:
                raise ParseError(f"{path}: unexpected line {line.strip()[:60]!r}")
            local.append((int(values[0]), values[1], values[2], values[3], values[4]))
    return local


def parse_aln(path: Path) -> MotionResult:
    """MotionCor3 ``.aln``: global shifts (0-based frames) and optional local shifts."""
    section = ""
    shifts: list[tuple[float, float]] = []
    local: list[tuple[int, float, float, float, float]] = []
    for line in _read(path).splitlines():
        text = line.strip()
        lowered = text.lower().replace(" ", "")
        if "globalshift" in lowered or "localshift" in lowered:
            section = "global" if "global" in lowered else "local"
            continue
        values = _numbers(text) if text and not text.startswith("#") else None
        if values is None:
            continue
        if section == "global" and len(values) == 3:
            shifts.append((values[1], values[2]))
        elif section == "local" and len(values) >= 5:
            local.append((int(values[0]) + 1, values[1], values[2], values[3], values[4]))
    result = _check(shifts, str(path))
    result.local = local
    return result


def parse_stdout(text: str) -> MotionResult:
    """Shifts printed after ``Full-frame alignment shift`` (1.4/1.5/MC3 lines or 1.6 table)."""
    start = text.find("Full-frame alignment shift")
    if start < 0:
        raise ParseError("MotionCor output has no 'Full-frame alignment shift' section")
    lines = text[start:].splitlines()[1:]
    framed = [m for m in (_FRAME_LINE.search(ln) for ln in lines) if m]
    if framed:
        return _check([(float(m.group(2)), float(m.group(3))) for m in framed], "stdout")
    shifts: list[tuple[float, float]] = []
    in_table = False
    for line in lines:
        if "x Shift" in line or "x shift" in line:
            in_table = True
            continue
        if in_table:
            values = _numbers(line)
            if not line.strip() or values is None or len(values) < 3:
                break
            shifts.append((values[1], values[2]))
    return _check(shifts, "stdout")


def find_motion_result(log_dir: Path, stem: str) -> MotionResult:
    """The shifts of movie ``stem`` from whichever MotionCor log files exist."""
    log_dir = Path(log_dir)
    for name in (f"{stem}-Patch-Full.log", f"{stem}-Full.log",
                 f"{stem}0-Patch-Full.log", f"{stem}0-Full.log"):  # fmt: skip
        path = log_dir / name
        if path.is_file():
            result = parse_full_log(path)
            patch = path.with_name(path.name.replace("-Patch-Full.log", "-Patch-Patch.log"))
            if patch != path and patch.is_file():
                result.local = parse_patch_log(patch)
            return result
    aln = log_dir / f"{stem}.aln"
    if aln.is_file():
        return parse_aln(aln)
    raise ParseError(f"no MotionCor log for {stem} in {log_dir}")
