"""CTFFIND 4.1.14 / 5.0.2 stand-in: the real program's scripted-mode questions, in order.

The questions, their conditions and the accepted answers follow ``DoInteractiveUserInput``
of cisTEM's ``src/programs/ctffind/ctffind.cpp`` and its ``UserInput`` class
(``src/core/userinput.cpp``), read for this purpose:

* one answer per line; a blank line or the end of stdin ends the program ("Blank answer in
  scripted mode"), an answer that is not recognised (a word where a number is expected, a
  number outside the question's range, a missing input file) ends it too (exit code 255);
* a number must start with a digit (or ``-``/``.`` then a digit) and is read like ``atof``;
* yes/no answers start with ``y``/``n`` (either case).

Stricter than the real program in one respect, on purpose: answers left over after the last
question are an error here (CTFFIND ignores them silently, which hides an answer sequence
that is out of step with the questions). Outputs: the diagnostic image, ``X.txt`` and
``X_avrot.txt`` in the real program's format with fixture values (no fitting is done).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

SWITCHES = {"--old-school-input", "--old-school-input-ctffind4", "--amplitude-spectrum-input",
            "--filtered-amplitude-spectrum-input", "--fast", "--debug"}  # fmt: skip
VERSIONS = {4: "4.1.14", 5: "5.0.2"}
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class Exit(Exception):
    """The program ends: ``code`` and the message it prints."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Script:
    lines: list[str]
    pos: int = 0
    asked: list[tuple[str, str]] = field(default_factory=list)

    def _ask(self, question: str) -> str:
        answer = self.lines[self.pos] if self.pos < len(self.lines) else ""
        self.pos += 1
        if not answer:
            raise Exit(255, f"{question}: Error: Blank answer in scripted mode, exiting...")
        self.asked.append((question, answer))
        return answer

    def _invalid(self, question: str, answer: str) -> Exit:
        return Exit(255, f"{question}: {answer!r}: Error: Running as script, and answer is "
                         "not recognized...")  # fmt: skip

    def yes_no(self, question: str) -> bool:
        answer = self._ask(question)
        if answer[0] in "yYnN":
            return answer[0] in "yY"
        raise self._invalid(question, answer)

    def number(self, question: str, lo: float = -math.inf, hi: float = math.inf,
               integer: bool = False) -> float:  # fmt: skip
        answer = self._ask(question)
        lead = "-" if integer else "-."
        ok = answer[0].isdigit() or (answer[0] in lead and answer[1:2].isdigit())
        match = _NUMBER.match(answer) if ok else None
        if match is None:
            raise self._invalid(question, answer)
        value = float(int(float(match.group(0)))) if integer else float(match.group(0))
        if not lo <= value <= hi:
            raise Exit(255, f"{question}: {answer}: Error: Number outside of acceptable range!")
        return value

    def filename(self, question: str, must_exist: bool) -> str:
        answer = self._ask(question)
        if must_exist and not Path(answer).is_file():
            raise Exit(255, f"{question}: {answer}: Error: File does not exist, please provide "
                            "an existing file!")  # fmt: skip
        return answer


def _check_argv(argv: list[str]) -> None:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-j" and i + 1 < len(argv) and argv[i + 1].isdigit():
            i += 2
            continue
        if arg not in SWITCHES:
            raise Exit(255, f"Unknown option '{arg}'")
        if arg.startswith("--old-school"):
            raise Exit(3, f"{arg}: the stand-in implements the interactive questions only")
        i += 1


def _is_movie(s: Script, path: str) -> bool:
    if path.lower().endswith(".eer"):
        return True
    try:
        with mrcfile.open(path, permissive=True, header_only=True) as mrc:
            nz = int(mrc.header.nz)
    except (OSError, ValueError) as exc:
        raise Exit(255, f"Error: cannot open {path} as an image: {exc}") from exc
    return nz > 1 and s.yes_no("Input is a movie (stack of frames)")


def _expert(s: Script, version: int, movie: bool, eer: bool, phase: bool) -> None:
    if s.yes_no("Resample micrograph if pixel size too small?") and version >= 5:
        s.number("Target pixel size after resampling", 0.0)
    if movie:
        if not s.yes_no("Movie is dark-subtracted?"):
            s.filename("Dark image filename", True)
        if not s.yes_no("Movie is gain-corrected?"):
            s.filename("Gain image filename", True)
        if s.yes_no("Correct Movie Mag. Distortion?"):
            for what in ("angle", "major scale", "minor scale"):
                s.number(f"Mag. distortion {what}")
        if eer and version >= 5:
            s.number("Number of EER frames per image", 1, integer=True)
            s.number("EER super resolution factor", 1, 4, integer=True)
    if s.yes_no("Do you already know the defocus?"):
        for what in ("Known defocus 1", "Known defocus 2", "Known astigmatism angle"):
            s.number(what)
        if phase:
            s.number("Known phase shift (radians)")
    if version >= 5:
        s.yes_no("Weight down low resolution signal?")
    s.number("Desired number of parallel threads", 1, integer=True)


def ask_all(s: Script, version: int) -> dict[str, Any]:
    """Every question CTFFIND ``version`` asks for these answers, in its order."""
    v: dict[str, Any] = {"input": s.filename("Input image file name", True)}
    movie = _is_movie(s, str(v["input"]))
    if movie:
        s.number("Number of frames to average together", integer=True)
    v["output"] = s.filename("Output diagnostic image file name", False)
    v["pixel"] = s.number("Pixel size", 0.0)
    v["kv"] = s.number("Acceleration voltage", 0.0)
    v["cs"] = s.number("Spherical aberration", 0.0)
    v["ac"] = s.number("Amplitude contrast", 0.0, 1.0)
    v["box"] = s.number("Size of amplitude spectrum to compute", 128, integer=True)
    v["min_res"] = min_res = s.number("Minimum resolution", 0.0, 50.0)
    v["max_res"] = s.number("Maximum resolution", 0.0, min_res)
    v["min_def"] = min_def = s.number("Minimum defocus")
    v["max_def"] = s.number("Maximum defocus", min_def)
    v["step"] = s.number("Defocus search step", 1.0)
    if s.yes_no("Do you know what astigmatism is present?"):
        s.yes_no("Slower, more exhaustive search?")
        s.number("Known astigmatism", 0.0)
        s.number("Known astigmatism angle")
    else:
        s.yes_no("Slower, more exhaustive search?")
        if s.yes_no("Use a restraint on astigmatism?"):
            s.number("Expected (tolerated) astigmatism")
    phase = s.yes_no("Find additional phase shift?")
    if phase:
        low = s.number("Minimum phase shift (rad)", -3.15, 3.15)
        high = s.number("Maximum phase shift (rad)", low, 3.15)
        s.number("Phase shift search step", 0.0, high - low)
    if version >= 5:
        if not phase:
            v["tilt"] = s.yes_no("Determine sample tilt?")
        v["thickness"] = s.yes_no("Determine samnple thickness?")  # sic, the program's text
        if v["thickness"]:
            s.yes_no("Use brute force 1D search?")
            s.yes_no("Use 2D refinement?")
            s.number("Low resolution limit for nodes", 0.0)
            s.number("High resolution limit for nodes", 0.0)
            s.yes_no("Use rounded square for nodes?")
            s.yes_no("Downweight nodes?")
    if s.yes_no("Do you want to set expert options?"):
        _expert(s, version, movie, str(v["input"]).lower().endswith(".eer"), phase)
    if s.pos < len(s.lines):
        raise Exit(4, f"{len(s.lines) - s.pos} answer(s) left after the last question "
                      f"(first: {s.lines[s.pos]!r}): the answers are out of step")  # fmt: skip
    return v


def write_outputs(v: dict[str, Any], version: int) -> None:
    stem = Path(str(v["output"])).with_suffix("")
    header = (
        f"# Output from CTFFind version {VERSIONS[version]}, run on 2025-03-02 10:11:40\n"
        f"# Input file: {v['input']} ; Number of micrographs: 1\n"
        f"# Pixel size: {v['pixel']:.3f} Angstroms ; acceleration voltage: {v['kv']:.1f} keV ;"
        f" spherical aberration: {v['cs']:.2f} mm ; amplitude contrast: {v['ac']:.2f}\n"
        f"# Box size: {int(v['box'])} pixels ; min. res.: {v['min_res']:.1f} Angstroms ; "
        f"max. res.: {v['max_res']:.1f} Angstroms ; min. def.: {v['min_def']:.1f} um; "
        f"max. def. {v['max_def']:.1f} um\n"
    )
    columns = ("# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2;"
               " #4 - azimuth of astigmatism; #5 - additional phase shift [radians]; #6 - cross "
               "correlation; #7 - spacing (in Angstroms) up to which CTF rings were fit "
               "successfully")  # fmt: skip
    row = "1.000000 8984.742188 8709.236328 45.948771 0.000000 0.446317 3.720000"
    if version >= 5:
        columns += ("; #8 - Estimated tilt axis angle; #9 - Estimated tilt angle ; #10 Estimated"
                    " sample thickness (in Angstroms)")  # fmt: skip
        row += " 221.912292 12.251187 " + ("1619.773438" if v.get("thickness") else "0.000000")
    Path(f"{stem}.txt").write_text(f"{header}{columns}\n{row}\n")
    freq = np.linspace(0, 0.3, 30)
    rows = [freq, np.ones(30), np.ones(30), np.zeros(30), np.zeros(30), np.ones(30)]
    body = "\n".join(" ".join(f"{x:.6f}" for x in r) for r in rows)
    Path(f"{stem}_avrot.txt").write_text(f"{header}# 6 lines per micrograph: ...\n{body}\n")
    with mrcfile.new(str(v["output"]), overwrite=True) as mrc:
        mrc.set_data(np.zeros((int(v["box"]), int(v["box"])), dtype=np.float32))


def main(version: int, argv: list[str], stdin: str,
         transcript: list[tuple[str, str]] | None = None) -> int:  # fmt: skip
    """Run like CTFFIND ``version``; ``transcript`` receives (question, answer) pairs."""
    script = Script(stdin.splitlines())
    if transcript is not None:
        script.asked = transcript
    try:
        _check_argv(argv)
        values = ask_all(script, version)
    except Exit as exc:
        print(f"\n {exc}\n", file=sys.stderr)
        return exc.code
    write_outputs(values, version)
    print(f"Estimated defocus values        : 8984.74 , 8709.24 Angstroms\nCTFFind {version} done")
    return 0
