"""CTFFIND4 / CTFFIND5: the stdin answers, in the order the program asks its questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CtffindParams:
    pixel_size: float
    voltage: float
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    box: int = 512
    min_res: float = 30.0
    max_res: float = 5.0
    min_defocus: float = 3000.0
    max_defocus: float = 50000.0
    step: float = 100.0
    thickness: bool = False  # CTFFIND5 only


def stdin_answers(micrograph: Path, diagnostic: Path, p: CtffindParams, version: int) -> list[str]:
    """Answers for ``ctffind`` (4) or ``ctffind5`` on one micrograph, one per line."""
    answers = [
        str(micrograph),
        str(diagnostic),
        f"{p.pixel_size:g}",
        f"{p.voltage:g}",
        f"{p.cs:g}",
        f"{p.amplitude_contrast:g}",
        str(p.box),
        f"{p.min_res:g}",
        f"{p.max_res:g}",
        f"{p.min_defocus:g}",
        f"{p.max_defocus:g}",
        f"{p.step:g}",
        "no",  # astigmatism known?
        "no",  # slower, exhaustive search?
        "no",  # restrain astigmatism?
        "no",  # additional phase shift?
    ]
    if version >= 5:
        answers.append("no")  # determine sample tilt?
        if p.thickness:
            answers += ["yes", "yes", "yes", "30", "3", "no", "no"]  # thickness + node options
        else:
            answers.append("no")  # determine sample thickness?
    answers.append("no")  # expert options?
    return answers


def outputs(diagnostic: Path) -> tuple[Path, Path]:
    """(``X.txt``, ``X_avrot.txt``) written next to the diagnostic image ``X.ctf``."""
    stem = diagnostic.with_suffix("")
    return Path(f"{stem}.txt"), Path(f"{stem}_avrot.txt")
