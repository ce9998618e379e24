#!/usr/bin/env python3
"""Stand-ins for MotionCor3, CTFFIND5 and crYOLO (GPU/licensed programs that cannot run here).

Test boundary only: each records its argv, stdin and CUDA_VISIBLE_DEVICES in
``$FAKE_TOOLS_LOG`` (JSON lines) and writes output files in the real program's exact format
(fixture-style values), so the production code paths of emotf run end to end. They do no
image processing. Invoked through symlinks named after the programs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np


def record(name: str, stdin: str = "") -> None:
    with open(os.environ["FAKE_TOOLS_LOG"], "a") as handle:
        handle.write(
            json.dumps(
                {
                    "tool": name,
                    "argv": sys.argv[1:],
                    "stdin": stdin,
                    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "time": time.time(),
                }
            )
            + "\n"
        )


def opt(flag: str) -> str:
    return sys.argv[sys.argv.index(flag) + 1]


def motioncor3() -> int:
    record("MotionCor3")
    time.sleep(float(os.environ.get("FAKE_TOOLS_SLEEP", "0")))  # a GPU job takes time
    in_dir, suffix = Path(opt("-InTiff")), opt("-InSuffix")
    out_dir, log_dir = Path(opt("-OutMrc")), Path(opt("-LogDir"))
    for movie in sorted(in_dir.glob(f"*{suffix}")):
        stem = movie.name[: -len(suffix)]
        image = np.zeros((256, 256), dtype=np.float32)
        for name in (f"{stem}.mrc", f"{stem}_DW.mrc"):
            with mrcfile.new(out_dir / name, overwrite=True) as mrc:
                mrc.set_data(image)
        rows = "\n".join(
            f"{i:7d} {-0.5 * (i - 1):10.4f} {0.25 * (i - 1):10.4f}" for i in range(1, 5)
        )
        (log_dir / f"{stem}-Full.log").write_text(
            f"# Full-frame alignment shift\n# Frame   x-Shift   y-Shift\n#\n{rows}\n"
        )
    return 0


def ctffind5() -> int:
    answers = sys.stdin.read().splitlines()
    record("ctffind5", "\n".join(answers))
    stem = Path(answers[1]).with_suffix("")
    header = (
        "# Output from CTFFind version 5.0.2, run on 2025-03-02 10:11:40\n"
        f"# Input file: {answers[0]} ; Number of micrographs: 1\n"
        f"# Pixel size: {float(answers[2]):.3f} Angstroms ; acceleration voltage: 300.0 keV ;"
        " spherical aberration: 2.70 mm ; amplitude contrast: 0.07\n"
        "# Box size: 512 pixels ; min. res.: 30.0 Angstroms ; max. res.: 5.0 Angstroms ;"
        " min. def.: 3000.0 um; max. def. 50000.0 um\n"
    )
    Path(f"{stem}.txt").write_text(
        header + "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2;"
        " #4 - azimuth of astigmatism; #5 - additional phase shift [radians]; #6 - cross "
        "correlation; #7 - spacing (in Angstroms) up to which CTF rings were fit successfully;"
        " #8 - Estimated tilt axis angle; #9 - Estimated tilt angle ; #10 Estimated sample "
        "thickness (in Angstroms)\n"
        "1.000000 8984.742188 8709.236328 45.948771 0.000000 0.446317 3.720000 221.912292 "
        "12.251187 1619.773438\n"
    )
    freq = np.linspace(0, 0.3, 30)
    rows = [freq, np.ones(30), np.ones(30), np.zeros(30), np.zeros(30), np.ones(30)]
    Path(f"{stem}_avrot.txt").write_text(
        header
        + "# 6 lines per micrograph: ...\n"
        + "\n".join(" ".join(f"{v:.6f}" for v in r) for r in rows)
        + "\n"
    )
    Path(f"{stem}.ctf").write_bytes(b"")
    return 0


def cryolo_predict() -> int:
    record("cryolo_predict.py")
    mics, out = Path(opt("-i")), Path(opt("-o"))
    (out / "CBOX").mkdir(parents=True, exist_ok=True)
    for mic in sorted(mics.glob("*.mrc")):
        lines = ["", "data_global", "", "_cbox_format_version 1.0", "", "data_cryolo", "", "loop_"]
        lines += [
            f"_{c} #{i}"
            for i, c in enumerate(
                [
                    "CoordinateX",
                    "CoordinateY",
                    "CoordinateZ",
                    "Width",
                    "Height",
                    "Depth",
                    "EstWidth",
                    "EstHeight",
                    "Confidence",
                    "NumBoxes",
                    "Angle",
                ],
                start=1,
            )
        ]
        for x, conf in ((10.0, 0.9), (60.0, 0.5), (110.0, 0.1)):
            lines.append(f"{x} 20.0 <NA> 40.0 40.0 <NA> 38.0 38.0 {conf} <NA> <NA>")
        (out / "CBOX" / f"{mic.stem}.cbox").write_text("\n".join(lines) + "\n")
    return 0


TOOLS = {"MotionCor3": motioncor3, "ctffind5": ctffind5, "cryolo_predict.py": cryolo_predict}

if __name__ == "__main__":
    sys.exit(TOOLS[os.environ.get("FAKE_TOOL") or Path(sys.argv[0]).name]())
