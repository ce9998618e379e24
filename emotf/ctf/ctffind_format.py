"""CTFFIND 4.1 output files written from emotf's estimator: ``.txt``, ``_avrot.txt``, ``.ctf``.

Layouts follow CTFFIND 4.1.x exactly (5 ``#`` header lines; 7 columns; 6 rows per
micrograph in ``_avrot.txt``) so every tool that reads CTFFIND output reads ours.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from ..fsutil import publish
from ..records import CtfResult
from .estimate import CtfEstimate, CtfSearch, estimate_ctf
from .model import Optics

VERSION_LINE = "# Output from CTFFind version 4.1.14 (emotf estimator), run on {date}"


@dataclass(frozen=True)
class CtffindHeader:
    input_file: str
    pixel_size: float
    optics: Optics
    params: CtfSearch

    def lines(self, avrot: bool = False) -> list[str]:
        o, p = self.optics, self.params
        box = f"# Box size: {p.box} pixels ; min. res.: {p.min_res:.1f} Angstroms ; max. res.: "
        box += f"{p.max_res:.1f} Angstroms ; min. def.: {p.min_defocus:.1f} um; max. def. "
        box += f"{p.max_defocus:.1f} um"
        if avrot:
            box += "; num. frames averaged: 1"
        return [
            VERSION_LINE.format(date=dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")),
            f"# Input file: {self.input_file} ; Number of micrographs: 1",
            f"# Pixel size: {self.pixel_size:.3f} Angstroms ; acceleration voltage: "
            f"{o.voltage_kv:.1f} keV ; spherical aberration: {o.cs_mm:.2f} mm ; "
            f"amplitude contrast: {o.amplitude_contrast:.2f}",
            box,
        ]


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    publish(tmp, path)


def ctffind_txt(results: list[CtfResult], header: CtffindHeader) -> str:
    lines = header.lines() + [
        "# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; "
        "#4 - azimuth of astigmatism; #5 - additional phase shift [radians]; "
        "#6 - cross correlation; #7 - spacing (in Angstroms) up to which CTF rings were "
        "fit successfully"
    ]
    for n, r in enumerate(results, start=1):
        res = "inf" if not np.isfinite(r.resolution) else f"{r.resolution:.6f}"
        lines.append(
            f"{n:.6f} {r.defocus_u:.6f} {r.defocus_v:.6f} {r.angle:.6f} "
            f"{r.phase_shift:.6f} {r.score:.6f} {res}"
        )
    return "\n".join(lines) + "\n"


def ctffind_avrot(estimates: list[CtfEstimate], header: CtffindHeader) -> str:
    lines = header.lines(avrot=True) + [
        "# 6 lines per micrograph: #1 - spatial frequency (1/Angstroms); #2 - 1D rotational "
        "average of spectrum (assuming no astigmatism); #3 - 1D rotational average of "
        "spectrum; #4 - CTF fit; #5 - cross-correlation between spectrum and CTF fit; "
        "#6 - 2sigma of expected cross correlation of noise"
    ]
    for est in estimates:
        for row in est.avrot:
            lines.append(" ".join(f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"


def write_diagnostic(path: Path, image: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mrc", dir=path.parent)
    os.close(fd)
    with mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(image.astype(np.float32)[None])
    publish(tmp, path)


def run_on_file(
    micrograph: Path, out_stem: Path, pixel_size: float, optics: Optics, params: CtfSearch
) -> CtfResult:
    """Estimate the CTF of an MRC micrograph; write ``<stem>.txt/_avrot.txt/.ctf``."""
    return estimate_file(micrograph, out_stem, pixel_size, optics, params).result


def estimate_file(
    micrograph: Path, out_stem: Path, pixel_size: float, optics: Optics, params: CtfSearch
) -> CtfEstimate:
    """As ``run_on_file``, returning the whole estimate (with its uncertainty)."""
    with mrcfile.open(micrograph, permissive=True) as mrc:
        image = np.asarray(mrc.data, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    estimate = estimate_ctf(image, pixel_size, optics, params)
    header = CtffindHeader(str(micrograph), pixel_size, optics, params)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(Path(f"{out_stem}.txt"), ctffind_txt([estimate.result], header))
    _atomic_text(Path(f"{out_stem}_avrot.txt"), ctffind_avrot([estimate], header))
    write_diagnostic(Path(f"{out_stem}.ctf"), estimate.diagnostic)
    return estimate
