"""MotionCor2 / MotionCor3 command lines (argv lists, never shell strings).

* MotionCor2 ≥ 1.6 and MotionCor3 run in batch mode over a folder of movie links
  (``-InTiff ./movies/ -InSuffix .tiff -Serial 1 -OutMrc out/ -LogDir log/``), one program
  start per batch, as facilities do it.
* MotionCor2 ≤ 1.5 has no ``-LogDir``: it runs once per movie with ``-LogFile <prefix>``.

Outputs: ``X.mrc`` (sum) and ``X_DW.mrc`` (dose weighted, because ``-FmDose`` is given).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IN_FLAGS = {"tiff": "-InTiff", "mrc": "-InMrc", "eer": "-InEer"}


@dataclass(frozen=True)
class MotionCorParams:
    pixel_size: float
    voltage: float
    dose_per_frame: float
    cs: float = 2.7
    amplitude_contrast: float = 0.07
    patches: tuple[int, int] = (1, 1)
    bfactor: float = 150.0
    bin_factor: float = 1.0
    gain: Path | None = None
    gain_flip: int = 0
    gain_rot: int = 0
    gpu: str = "0"


def version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for token in version.replace("-", ".").split("."):
        digits = "".join(ch for ch in token if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def uses_logdir(program: str, version: str) -> bool:
    """MotionCor3 and MotionCor2 ≥ 1.6 write ``-LogDir`` logs; older MotionCor2 ``-LogFile``."""
    return program == "motioncor3" or version_tuple(version) >= (1, 6)


def _common(p: MotionCorParams, program: str) -> list[str]:
    argv = [
        "-PixSize",
        f"{p.pixel_size:g}",
        "-kV",
        f"{p.voltage:g}",
        "-Cs",
        f"{p.cs:g}",
        "-FmDose",
        f"{p.dose_per_frame:g}",
        "-Patch",
        str(p.patches[0]),
        str(p.patches[1]),
        "-Bft",
        "500",
        f"{p.bfactor:g}",
        "-FtBin",
        f"{p.bin_factor:g}",
        "-Gpu",
        p.gpu,
    ]
    if program == "motioncor3":
        argv += ["-AmpCont", f"{p.amplitude_contrast:g}"]
    if p.gain is not None:
        argv += ["-Gain", str(p.gain), "-FlipGain", str(p.gain_flip), "-RotGain", str(p.gain_rot)]
    return argv


def batch_argv(exe: str, program: str, fmt: str, in_dir: Path, suffix: str, out_dir: Path,
               log_dir: Path, p: MotionCorParams) -> list[str]:  # fmt: skip
    """Batch mode over every ``*<suffix>`` movie of ``in_dir`` (MotionCor2 ≥ 1.6, MC3)."""
    return [
        exe,
        IN_FLAGS[fmt],
        f"{in_dir}/",
        "-InSuffix",
        suffix,
        "-OutMrc",
        f"{out_dir}/",
        "-Serial",
        "1",
        "-LogDir",
        f"{log_dir}/",
        *_common(p, program),
    ]


def single_argv(exe: str, fmt: str, movie: Path, out_mrc: Path, log_prefix: Path,
                p: MotionCorParams) -> list[str]:  # fmt: skip
    """One movie with MotionCor2 ≤ 1.5 (``-LogFile`` prefix)."""
    return [
        exe,
        IN_FLAGS[fmt],
        str(movie),
        "-OutMrc",
        str(out_mrc),
        "-LogFile",
        str(log_prefix),
        *_common(p, "motioncor2"),
    ]


def outputs(out_dir: Path, stem: str) -> tuple[Path, Path]:
    """(dose-weighted, plain) sums MotionCor writes for ``stem``."""
    return out_dir / f"{stem}_DW.mrc", out_dir / f"{stem}.mrc"
