"""CTFFIND4 / CTFFIND5: the stdin answers, in the order the program asks, and its argv/env.

CTFFIND is interactive: it is started as ``[exe]`` (plus ``--amplitude-spectrum-input`` when
given a power spectrum, ``-j N`` threads) with ``LC_ALL=C`` so that numbers are read
with a decimal point, and it reads one answer per line from stdin:

input, diagnostic output, pixel size, kV, Cs, amplitude contrast, box, min res, max res,
min defocus, max defocus, defocus step, astigmatism known? (no), exhaustive search?,
restrain astigmatism? [→ tolerated astigmatism], additional phase shift? [→ min, max, step
(rad)], then CTFFIND5 only: determine sample tilt? (asked only without a phase-shift search),
determine sample thickness? [→ brute-force 1D?, 2D refinement?, node low res, node high res,
rounded square?, downweight nodes?], and finally expert options? (no). Inputs are single
micrographs (a movie stack would add the movie-averaging questions, which emotf never
triggers). The order and the conditions are those of CTFFIND 4.1.14 / 5.0.2
(``DoInteractiveUserInput`` in cisTEM's ``src/programs/ctffind/ctffind.cpp``); in scripted
mode a blank or unrecognised answer ends the program, so every answer must be valid.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_MIN_RES = 50.0  # CTFFIND's lowest allowed "minimum resolution" (Å)


@dataclass(frozen=True)
class CtffindParams:
    """CTFFIND search parameters (Å, kV, mm, radians for phase)."""

    pixel_size: float  # of the input micrograph (binned size if MotionCor used -FtBin)
    voltage: float
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    box: int = 512
    min_res: float = 30.0
    max_res: float = 5.0
    min_defocus: float = 3000.0
    max_defocus: float = 50000.0
    step: float = 100.0
    exhaustive_search: bool = False
    restrain_astigmatism: bool = False
    tolerated_astigmatism: float = 100.0
    phase_shift: tuple[float, float, float] | None = None  # (min, max, step) radians
    tilt: bool = False  # CTFFIND5 only
    thickness: bool = False  # CTFFIND5 only
    thickness_1d_brute_force: bool = True
    thickness_2d_refinement: bool = True
    thickness_node_low_res: float = 30.0
    thickness_node_high_res: float = 3.0
    thickness_rounded_square: bool = False
    thickness_downweight_nodes: bool = False


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _g(value: float) -> str:
    return f"{value:g}"


def answer_path(path: Path, what: str) -> str:
    """``path`` as one stdin answer; ValueError naming the file if it holds a control
    character (a newline would make the rest of the name the answer to the next question)."""
    text = str(path)
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError(
            f"CTFFIND {what} {text[:200]!r} has a control character (e.g. a newline) in its "
            "name, which CTFFIND would read as several answers; rename the file"
        )
    return text


def stdin_answers(micrograph: Path, diagnostic: Path, p: CtffindParams, version: int) -> list[str]:
    """Answers for ``ctffind`` (``version`` 4) or ``ctffind5`` (5) on one micrograph."""
    answers = [
        answer_path(micrograph, "input"),
        answer_path(diagnostic, "diagnostic output"),
        _g(p.pixel_size),
        _g(p.voltage),
        _g(p.cs),
        _g(p.amplitude_contrast),
        str(p.box),
        _g(p.min_res),
        _g(p.max_res),
        _g(p.min_defocus),
        _g(p.max_defocus),
        _g(p.step),
        "no",  # do you know what astigmatism is present?
        _yn(p.exhaustive_search),  # slower, more exhaustive search?
        _yn(p.restrain_astigmatism),  # use a restraint on astigmatism?
    ]
    if p.restrain_astigmatism:
        answers.append(_g(p.tolerated_astigmatism))  # expected (tolerated) astigmatism
    answers.append(_yn(p.phase_shift is not None))  # find additional phase shift?
    if p.phase_shift is not None:
        answers += [_g(v) for v in p.phase_shift]  # min, max, step (radians)
    if version >= 5:
        if p.phase_shift is None:  # CTFFIND5 asks for tilt only without a phase-shift search
            answers.append(_yn(p.tilt))  # determine sample tilt?
        answers.append(_yn(p.thickness))  # determine sample thickness?
        if p.thickness:
            answers += [
                _yn(p.thickness_1d_brute_force),  # use brute force 1D search?
                _yn(p.thickness_2d_refinement),  # use 2D refinement?
                _g(p.thickness_node_low_res),  # low resolution limit for nodes (Å)
                _g(p.thickness_node_high_res),  # high resolution limit for nodes (Å)
                _yn(p.thickness_rounded_square),  # use rounded square for nodes?
                _yn(p.thickness_downweight_nodes),  # downweight nodes?
            ]
    answers.append("no")  # do you want to set expert options?
    return answers


def stdin_text(answers: list[str]) -> str:
    """The bytes to feed CTFFIND's stdin: one answer per line."""
    return "\n".join(answers) + "\n"


def ctffind_argv(exe: str, amplitude_spectrum_input: bool = False,
                 threads: int | None = None) -> list[str]:  # fmt: skip
    """``[exe]`` plus optional flags; everything else goes through stdin.

    ``-j N`` is CTFFIND's thread option (4.1.12 and later; ``OMP_NUM_THREADS`` overrides it).
    It is given only for more than one thread, so older builds keep working by default.
    """
    argv = [exe]
    if amplitude_spectrum_input:
        argv.append("--amplitude-spectrum-input")
    if threads is not None and threads > 1:
        argv += ["-j", str(threads)]
    return argv


def ctffind_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for CTFFIND: ``base`` (default os.environ) with ``LC_ALL=C``."""
    return {**(os.environ if base is None else base), "LC_ALL": "C"}


def check_params(p: CtffindParams, version: int, amplitude_spectrum_input: bool = False) -> None:
    """Raise ValueError for combinations CTFFIND would reject or mis-handle.

    CTFFIND's own limits: minimum resolution at most 50 Å, box at least 128 px, amplitude
    contrast in [0, 1], defocus step at least 1 Å (out of range = exit in scripted mode).
    """
    if p.min_res <= p.max_res:
        raise ValueError(f"min_res {p.min_res} Å must be larger than max_res {p.max_res} Å")
    if p.min_res > MAX_MIN_RES:
        raise ValueError(f"min_res {p.min_res} Å: CTFFIND accepts at most {MAX_MIN_RES} Å")
    if p.min_defocus >= p.max_defocus:
        raise ValueError("min_defocus must be below max_defocus")
    if p.step < 1 or p.box < 128 or not 0 <= p.amplitude_contrast <= 1:
        raise ValueError(
            f"CTFFIND needs step ≥ 1 Å (got {p.step}), box ≥ 128 px (got {p.box}) and "
            f"amplitude contrast in [0, 1] (got {p.amplitude_contrast})"
        )
    if version < 5 and (p.tilt or p.thickness):
        raise ValueError("sample tilt/thickness need CTFFIND5")
    if p.tilt and p.phase_shift is not None:  # CTFFIND5 then does not ask for tilt
        raise ValueError("sample tilt cannot be estimated together with a phase shift")
    if p.tilt and amplitude_spectrum_input:  # cisTEM issue #253
        raise ValueError("sample tilt must be off with --amplitude-spectrum-input")


def diagnostic_path(out_stem: Path) -> Path:
    """The diagnostic image ``X.ctf`` for output stem ``X``."""
    return Path(f"{out_stem}.ctf")


def outputs(diagnostic: Path) -> tuple[Path, Path]:
    """(``X.txt``, ``X_avrot.txt``) written next to the diagnostic image ``X.ctf``/``X.mrc``."""
    stem = Path(diagnostic).with_suffix("")
    return Path(f"{stem}.txt"), Path(f"{stem}_avrot.txt")
