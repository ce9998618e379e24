"""MotionCor3 1.2.1 stand-in: reads the options the real program reads, writes what it writes.

Behaviour taken from MotionCor3's source (github.com/czimaginginstitute/MotionCor3, read for
this purpose: ``CInput.cpp``, ``DataUtil/CStackFolder.cpp``, ``Align/CAlignMain.cpp``,
``Align/CFullAlign.cpp``, ``Align/CPatchShifts.cpp``, ``Align/CSaveAlign.cpp``,
``DataUtil/CReadFmIntFile.cpp``, ``CSaveSerialCryoEM.cpp``):

* tags are matched case-insensitively; a tag's values run to the next ``-<letter>`` item;
* ``-Serial 1``: the input names a folder (and a file-name prefix); every file there with the
  ``-InSuffix`` is one movie, its "serial" is the name without prefix and suffix; no movie,
  or no such folder, ends the run (exit 6); without ``-Serial`` the input is one file;
* outputs ``<OutMrc><serial>.mrc`` and, when dose weighting is possible (80–300 kV, a pixel
  size, and ``-FmDose`` or a dose in ``-FmIntFile``), ``<serial>_DW.mrc``;
* ``-LogDir``: logs named after the input file without its ``.mrc``/``.tif``/``.eer``
  extension: ``-Full.log`` for full-frame alignment, ``-Patch-Full.log``,
  ``-Patch-Patch.log`` and ``-Patch-Frame.log`` when both ``-Patch`` numbers are > 1;
  ``-OutAln``: ``<dir>/<input name, last extension replaced>.aln``;
* EER: each raw EER frame is one frame unless ``-FmIntFile`` (lines ``<raw frames> <group>
  [<dose per raw frame>]``) groups them: then ``raw frames // group`` frames are aligned.

Stricter than the real program, on purpose: a tag MotionCor3 does not know (which the real
program ignores silently, so the option has no effect) ends the run with exit code 1, and
``-LogFile`` (MotionCor2 ≤ 1.5 only) is such a tag. Shifts are fixture values (frame ``i``:
``(-0.5 (i-1), 0.25 (i-1))`` px, frame 1 the reference); no image processing is done.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mrcfile
import numpy as np
import tifffile

TAGS = ("InMrc InTiff InEer InSuffix InSkips OutMrc ArcDir Gain Dark DefectFile InAln OutAln "
        "DefectMap FullSum Patch Iter Tol Bft PhaseOnly TmpFile LogDir Gpu StackZ FtBin Align "
        "InitDose FmDose PixSize kV Cs AmpCont ExtPhase Throw Trunc SumRange Group FmRef Serial "
        "Tilt Crop OutStack RotGain FlipGain InvGain Mag InFmMotion GpuMemUsage UseGpus SplitSum "
        "FmIntFile EerSampling OutStar TiffOrder CorrInterp").split()  # fmt: skip
KNOWN = {f"-{t.lower()}": f"-{t}" for t in TAGS}


class Fail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse(argv: list[str]) -> dict[str, list[str]]:
    """``{"-Tag": [values]}``; an unknown tag or a stray value is an error."""
    opts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for arg in argv:
        if len(arg) >= 2 and arg[0] == "-" and arg[1].isalpha():
            tag = KNOWN.get(arg.lower())
            if tag is None:
                raise Fail(1, f"unknown option {arg} (MotionCor3 would ignore it silently)")
            current = opts.setdefault(tag, [])
        elif current is None:
            raise Fail(1, f"value {arg!r} before any option")
        else:
            current.extend(v for v in arg.replace(",", " ").split() if v)
    return opts


def _num(opts: dict[str, list[str]], tag: str, default: float, i: int = 0) -> float:
    values = opts.get(tag, [])
    return float(values[i]) if len(values) > i else default


def _cut_ext(name: str, exts: tuple[str, ...] = (".mrc", ".tif", ".eer")) -> str:
    low = name.lower()
    for ext in exts:
        if ext in low:
            return name[: low.index(ext)]
    return name


def movies(opts: dict[str, list[str]]) -> tuple[str, list[tuple[Path, str]]]:
    """(format, [(movie, serial)]) for the input tag given."""
    given = [(t, opts[t][0]) for t in ("-InMrc", "-InTiff", "-InEer") if opts.get(t)]
    if not given:
        raise Fail(3, "Error: no valid input file name.")
    tag, value = given[0]
    fmt = {"-InMrc": "mrc", "-InTiff": "tiff", "-InEer": "eer"}[tag]
    if int(_num(opts, "-Serial", 0)) == 0:
        if not Path(value).is_file():
            raise Fail(6, f"Error: cannot open {value}")
        return fmt, [(Path(value), "")]
    folder, prefix = os.path.split(value)
    suffix = opts.get("-InSuffix", [""])[0]
    if not os.path.isdir(folder or "."):
        raise Fail(6, f"Error: cannot open folder {folder}")
    found = []
    for name in sorted(os.listdir(folder or ".")):
        rest = name[len(prefix) :] if name.startswith(prefix) else None
        if name.startswith(".") or rest is None or suffix.lower() not in rest.lower():
            continue
        serial = rest[: rest.lower().index(suffix.lower())] if suffix else _cut_ext(rest)
        found.append((Path(folder or ".") / name, serial))
    if not found:
        raise Fail(6, f"Error: no movie in {folder} with prefix {prefix!r}, suffix {suffix!r}")
    return fmt, found


def n_frames(movie: Path, fmt: str, opts: dict[str, list[str]]) -> tuple[int, bool]:
    """(frames aligned, a dose is known from -FmIntFile)."""
    if fmt == "mrc":
        with mrcfile.open(movie, permissive=True, header_only=True) as mrc:
            raw = int(mrc.header.nz)
    else:
        with tifffile.TiffFile(movie) as tif:
            raw = len(tif.pages)
    fmint = opts.get("-FmIntFile")
    if not fmint:
        return raw - int(_num(opts, "-Throw", 0)) - int(_num(opts, "-Trunc", 0)), False
    fields = Path(fmint[0]).read_text().split()
    if len(fields) < 2:
        raise Fail(3, f"-FmIntFile {fmint[0]}: expected '<raw frames> <group> [<dose>]'")
    return max(1, raw // int(fields[1])), len(fields) >= 3 and float(fields[2]) > 0


def shifts(n: int) -> list[tuple[float, float]]:
    return [(-0.5 * i, 0.25 * i) for i in range(n)]


def write_logs(prefix: str, n: int, patches: tuple[int, int]) -> None:
    rows = "".join(f"{i + 1:4d}  {x:8.2f}  {y:8.2f}\n" for i, (x, y) in enumerate(shifts(n)))
    if patches[0] <= 1 or patches[1] <= 1:
        Path(f"{prefix}-Full.log").write_text(f"# full frame alignment\n{rows}")
        return
    head = "# Patch based alignment\n"
    Path(f"{prefix}-Patch-Full.log").write_text(
        f"{head}# Initial alignment based upon full frames\n\n{rows}"
    )
    centres = [(100.0 + 200 * px, 100.0 + 200 * py)
               for py in range(patches[1]) for px in range(patches[0])]  # fmt: skip
    blocks = []
    for k, (cx, cy) in enumerate(centres, start=1):
        lines = [f"#Patch {k:03d} raw and fit shifts"]
        lines += [f"{i + 1:4d} {cx:8.2f} {cy:8.2f} {x:8.2f} {y:8.2f} {0:4d}"
                  for i, (x, y) in enumerate(shifts(n))]  # fmt: skip
        blocks.append("\n".join(lines) + "\n")
    info = f"{head}# Number of patches: {len(centres)}\n"
    Path(f"{prefix}-Patch-Patch.log").write_text(f"{info}# Shifts are listed per patch.\n\n"
                                                 + "\n".join(blocks))  # fmt: skip
    Path(f"{prefix}-Patch-Frame.log").write_text(f"{info}# Shifts are listed per frame.\n\n")


def write_aln(path: Path, n: int, patches: tuple[int, int]) -> None:
    rows = "".join(f"{i:6d}  {x:+8.3f}  {y:+8.3f}\n" for i, (x, y) in enumerate(shifts(n)))
    head = (f"setting\n   stackSize: 256 256 {n} 1\n   patches: {patches[0]} {patches[1]} 0\n"
            "   throw: 0 0\n")  # fmt: skip
    path.write_text(f"{head}#    Global Shift\n#---------------------\nglobalShift\n"
                    f"   stackID 0\n{rows}")  # fmt: skip


def run(argv: list[str]) -> int:
    opts = parse(argv)
    if not opts.get("-OutMrc"):
        raise Fail(4, "Error: cannot open output MRC file (no -OutMrc)")
    fmt, found = movies(opts)
    out = _cut_ext(opts["-OutMrc"][0], (".mrc", ".st"))
    patches = (int(_num(opts, "-Patch", 0)), int(_num(opts, "-Patch", 0, 1)))
    kv, pix, dose = _num(opts, "-kV", 300), _num(opts, "-PixSize", 0), _num(opts, "-FmDose", 0)
    for movie, serial in found:
        n, file_dose = n_frames(movie, fmt, opts)
        image = np.zeros((256, 256), dtype=np.float32)
        weighted = 80 <= kv <= 300 and pix > 0 and (dose > 0 or file_dose)
        for suffix in ("", "_DW") if weighted else ("",):
            with mrcfile.new(f"{out}{serial}{suffix}.mrc", overwrite=True) as mrc:
                mrc.set_data(image)
        if opts.get("-LogDir"):
            folder = opts["-LogDir"][0].rstrip("/") + "/"
            write_logs(folder + _cut_ext(movie.name), n, patches)
        if opts.get("-OutAln"):
            aln = Path(opts["-OutAln"][0]) / f"{movie.name.rsplit('.', 1)[0]}.aln"
            write_aln(aln, n, patches)
    return 0


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except Fail as exc:
        print(exc, file=sys.stderr)
        return exc.code
