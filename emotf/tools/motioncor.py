"""MotionCor2 / MotionCor3 command lines (argv lists, never shell strings).

* MotionCor2 ≥ 1.6 and MotionCor3 run in batch mode over a folder of movie links
  (``-InTiff ./movies/ -InSuffix .tiff -OutMrc out/ -Serial 1 -LogDir log/``), one program
  start per batch, as facilities (emwrap, Scipion) do it.
* MotionCor2 ≤ 1.5 has no ``-LogDir``: it runs once per movie with ``-LogFile <prefix>``
  (logs ``<prefix>0-Full.log`` …), as RELION's wrapper does.
* ``-AmpCont`` exists in MotionCor3 only (its built-in CTF estimation); ``-OutAln`` too.
* EER: ``-InEer`` with ``-EerSampling`` and ``-FmIntFile`` (lines ``n_frames group dose``).

Multi-value options are separate argv items (``-Patch 5 5``, ``-Bft 500 150``, ``-Gpu 0 1``),
as RELION passes them. ``-FmRef 0`` makes frame 1 the reference, so frame 1's shift is 0 (the
convention of RELION's global-shift table).

Outputs for ``-OutMrc out/`` and movie ``X``: ``out/X.mrc`` (plain sum) and, because
``-FmDose`` is given, ``out/X_DW.mrc`` (dose weighted). RELION's names are ``X.mrc`` for the
dose-weighted sum and ``X_noDW.mrc`` for the plain one: see :func:`rename_to_relion`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

IN_FLAGS = {"tiff": "-InTiff", "tif": "-InTiff", "mrc": "-InMrc", "eer": "-InEer"}


@dataclass(frozen=True)
class MotionCorParams:
    """Everything MotionCor needs besides file names. Pixel size in Å, dose in e/Å²/frame."""

    pixel_size: float
    voltage: float
    dose_per_frame: float
    cs: float = 2.7
    amplitude_contrast: float = 0.07  # MotionCor3 only
    patches: tuple[int, int] = (1, 1)
    bfactor: float = 150.0  # local (patch) B-factor
    bfactor_global: float = 500.0
    bin_factor: float = 1.0
    gain: Path | None = None
    gain_flip: int = 0  # 0 none, 1 upside down, 2 left-right
    gain_rot: int = 0  # × 90° counter-clockwise
    dark: Path | None = None
    defect_file: Path | None = None
    gpu: str = "0"  # "0", "0 1" or "0,1"
    iterations: int = 10
    tolerance: float = 0.5
    throw: int = 0
    trunc: int = 0
    group: tuple[int, int] | None = None  # (global, local) frame grouping
    sum_range: tuple[float, float] | None = None  # dose range (e/Å²) summed; (0, 0) = all
    init_dose: float = 0.0
    fm_ref: int = 0
    out_stack: bool = False
    split_sum: bool = False
    eer_sampling: int = 1
    fmint_file: Path | None = None  # EER frame grouping (see fmint_lines)
    out_aln: Path | None = None  # MotionCor3 -OutAln folder
    extra: tuple[str, ...] = ()  # appended verbatim, one argv item each


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.6.4"`` → ``(1, 6, 4)``; tolerant to ``v1.6`` / ``1.6.4-beta``."""
    parts = []
    for token in version.replace("-", ".").lstrip("vV").split("."):
        digits = "".join(ch for ch in token if ch.isdigit())
        if digits:
            parts.append(int(digits))
    return tuple(parts)


def uses_logdir(program: str, version: str) -> bool:
    """MotionCor3 and MotionCor2 ≥ 1.6 take ``-LogDir``; older MotionCor2 ``-LogFile``."""
    return program.lower() == "motioncor3" or version_tuple(version) >= (1, 6)


def _g(value: float) -> str:
    return f"{value:g}"


def gpu_ids(gpu: str) -> list[str]:
    """``"0,1"`` / ``"0 1"`` → ``["0", "1"]``."""
    ids = gpu.replace(",", " ").split()
    return ids or ["0"]


def _common(p: MotionCorParams, program: str) -> list[str]:
    argv = ["-PixSize", _g(p.pixel_size), "-kV", _g(p.voltage), "-Cs", _g(p.cs)]
    if program.lower() == "motioncor3":
        argv += ["-AmpCont", _g(p.amplitude_contrast)]
    argv += ["-FmDose", _g(p.dose_per_frame), "-InitDose", _g(p.init_dose)]
    argv += ["-Patch", str(p.patches[0]), str(p.patches[1])]
    argv += ["-Iter", str(p.iterations), "-Tol", _g(p.tolerance)]
    argv += ["-Bft", _g(p.bfactor_global), _g(p.bfactor), "-FtBin", _g(p.bin_factor)]
    argv += ["-Throw", str(p.throw), "-Trunc", str(p.trunc), "-FmRef", str(p.fm_ref)]
    if p.group is not None:
        argv += ["-Group", str(p.group[0]), str(p.group[1])]
    if p.sum_range is not None:
        argv += ["-SumRange", _g(p.sum_range[0]), _g(p.sum_range[1])]
    if p.gain is not None:
        argv += ["-Gain", str(p.gain), "-RotGain", str(p.gain_rot), "-FlipGain", str(p.gain_flip)]
    if p.dark is not None:
        argv += ["-Dark", str(p.dark)]
    if p.defect_file is not None:
        argv += ["-DefectFile", str(p.defect_file)]
    if p.fmint_file is not None:
        argv += ["-FmIntFile", str(p.fmint_file)]
    argv += ["-OutStack", "1" if p.out_stack else "0"]
    if p.split_sum:
        argv += ["-SplitSum", "1"]
    if p.out_aln is not None and program.lower() == "motioncor3":
        argv += ["-OutAln", f"{p.out_aln}/"]
    argv += ["-Gpu", *gpu_ids(p.gpu)]
    return [*argv, *p.extra]


def _input(fmt: str, p: MotionCorParams) -> tuple[str, list[str]]:
    key = fmt.lower().lstrip(".")
    if key not in IN_FLAGS:
        raise ValueError(f"unknown movie format {fmt!r} (tiff, mrc, eer)")
    eer = ["-EerSampling", str(p.eer_sampling)] if key == "eer" else []
    return IN_FLAGS[key], eer


def batch_argv(exe: str, program: str, fmt: str, in_dir: Path, suffix: str, out_dir: Path,
               log_dir: Path, p: MotionCorParams) -> list[str]:  # fmt: skip
    """Batch mode over every ``*<suffix>`` movie of ``in_dir`` (MotionCor2 ≥ 1.6, MC3)."""
    flag, eer = _input(fmt, p)
    return [
        exe,
        flag,
        f"{in_dir}/",
        "-InSuffix",
        suffix,
        "-OutMrc",
        f"{out_dir}/",
        "-Serial",
        "1",
        "-LogDir",
        f"{log_dir}/",
        *eer,
        *_common(p, program),
    ]


def single_argv(exe: str, fmt: str, movie: Path, out_mrc: Path, log_prefix: Path,
                p: MotionCorParams) -> list[str]:  # fmt: skip
    """One movie with MotionCor2 ≤ 1.5 (``-LogFile <prefix>`` → ``<prefix>0-Full.log``)."""
    flag, eer = _input(fmt, p)
    return [
        exe,
        flag,
        str(movie),
        "-OutMrc",
        str(out_mrc),
        "-LogFile",
        str(log_prefix),
        *eer,
        *_common(p, "motioncor2"),
    ]


def fmint_lines(n_frames: int, group: int, dose_per_frame: float) -> list[str]:
    """``-FmIntFile`` content for EER: ``<raw frames> <frames per group> <dose per raw frame>``.

    The whole movie is one line; MotionCor sums ``group`` raw EER frames per rendered frame.
    """
    if n_frames < 1 or group < 1:
        raise ValueError("n_frames and group must be ≥ 1")
    return [f"{n_frames} {group} {dose_per_frame:.6g}"]


def outputs(out_dir: Path, stem: str) -> tuple[Path, Path]:
    """(dose-weighted, plain) sums MotionCor writes for ``stem``: ``X_DW.mrc``, ``X.mrc``."""
    return Path(out_dir) / f"{stem}_DW.mrc", Path(out_dir) / f"{stem}.mrc"


def relion_names(final_stem: Path) -> tuple[Path, Path]:
    """RELION's names: (``X.mrc`` dose weighted, ``X_noDW.mrc`` plain sum)."""
    return Path(f"{final_stem}.mrc"), Path(f"{final_stem}_noDW.mrc")


def rename_to_relion(out_dir: Path, stem: str, final_stem: Path) -> tuple[Path, Path | None]:
    """Move MotionCor's outputs to RELION's names: ``X_DW.mrc`` → ``X.mrc``, ``X.mrc`` →
    ``X_noDW.mrc``. Without a dose-weighted sum the plain sum becomes ``X.mrc``.

    Returns (micrograph, plain sum or None). Raises FileNotFoundError if nothing was written.
    """
    dw, plain = outputs(out_dir, stem)
    mic, nodw = relion_names(final_stem)
    mic.parent.mkdir(parents=True, exist_ok=True)
    if dw.is_file():
        os.replace(dw, mic)
        if plain.is_file():
            os.replace(plain, nodw)
            return mic, nodw
        return mic, None
    if plain.is_file():
        os.replace(plain, mic)
        return mic, None
    raise FileNotFoundError(f"MotionCor wrote neither {dw.name} nor {plain.name} in {out_dir}")
