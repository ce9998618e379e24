"""Does the gain reference fit the movie? Checks before and after motion correction.

Before: a detector's fixed pattern (pixel-to-pixel sensitivity, column/row patterns) is the
same in every frame, while the specimen drifts and the shot noise is independent. So after
applying a gain, the high-pass filtered sums of the first and of the second half of the
frames correlate only through what the gain left uncorrected (``residual``; about 0 for the
right gain). The residual is measured for the gain as configured and for every other
orientation of it (and without gain): a wrong flip or rotation shows as another orientation
that removes the pattern, a gain from another detector as none that does, a missing gain
as a pattern in the uncorrected movie.

How RELION applies a gain (verified with relion_run_motioncorr 3.1.3 on asymmetric test
gains): ``flip(rot90(gain, -gain_rot))`` with flip 1 = upside down, 2 = left-right, in numpy
orientation, and it reads TIFF frames upside down (MRC frames as stored). Candidate
orientations are compared in that frame.

After: a correction pinned by a fixed pattern reports an almost still movie (every frame
within a fraction of a pixel of the first): noted as evidence when the gain is suspect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import tifffile
from numpy.typing import NDArray
from scipy import ndimage

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
RESIDUAL_LIMIT = 6.0  # significance (σ) of the half-vs-half correlation that flags a pattern
PINNED_PX = 0.3  # a trace whose every frame is within this of frame 1 is "pinned"


class GainCheckError(RuntimeError):
    """The movie or the gain cannot be read for the check."""


@dataclass
class GainVerdict:
    suspect: bool
    evidence: str
    residual: float | None  # pattern significance (σ) with the gain as configured (or none)
    best: str | None = None  # orientation that removes the pattern, when not the configured

    def fields(self) -> dict[str, Any]:
        return {
            "gain_suspect": self.suspect,
            "gain_evidence": self.evidence,
            "gain_residual": None if self.residual is None else round(self.residual, 1),
        }


def relion_gain(gain: FloatArray, rot: int, flip: int) -> FloatArray:
    """The gain as RELION applies it for ``--gain_rot rot --gain_flip flip``."""
    out = np.rot90(gain, -rot)
    if flip == 1:
        out = out[::-1]
    elif flip == 2:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def half_sums(movie: Path, max_frames: int = 64) -> tuple[FloatArray, FloatArray]:
    """Sums of the first and second half of the frames, as RELION sees them (TIFF upside
    down); read frame by frame so a 4k movie costs two 4k images of memory."""
    try:
        if movie.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(movie) as tif:
                pages = list(tif.pages[:max_frames])
                return _split([p.asarray()[::-1] for p in pages])
        with mrcfile.mmap(movie, permissive=True, mode="r") as mrc:
            data = mrc.data
            if data is None or data.ndim != 3:
                raise GainCheckError("the movie is not a frame stack")
            unsigned = data.dtype == np.int8
            return _split(
                [
                    data[i].view(np.uint8) if unsigned else data[i]
                    for i in range(min(len(data), max_frames))
                ]
            )
    except (OSError, ValueError, IndexError) as exc:
        raise GainCheckError(f"cannot read the movie for the gain check: {exc}") from exc


def _split(frames: list[NDArray[Any]]) -> tuple[FloatArray, FloatArray]:
    if len(frames) < 2:
        raise GainCheckError("fewer than 2 frames")
    half = len(frames) // 2
    first = np.zeros(frames[0].shape)
    second = np.zeros(frames[0].shape)
    for i, frame in enumerate(frames):
        (first if i < half else second)[...] += frame
    return first, second


def read_gain(path: Path) -> FloatArray:
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = np.asarray(mrc.data, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise GainCheckError(f"cannot read the gain reference: {exc}") from exc
    return data[0] if data.ndim == 3 else data


def _highpass(image: FloatArray) -> FloatArray:
    return np.asarray(
        4 * image[1:-1, 1:-1]
        - image[:-2, 1:-1]
        - image[2:, 1:-1]
        - image[1:-1, :-2]
        - image[1:-1, 2:]
    )


def residual_pattern(first: FloatArray, second: FloatArray, gain: FloatArray | None) -> float:
    """Significance (correlation × √pixels, in noise σ) of what the high-passed, gain-corrected
    half sums share; defects (gain 0, never-counting pixels) and hot pixels are left out."""
    a, b = (first, second) if gain is None else (first * gain, second * gain)
    total = first + second
    med = float(np.median(total))
    bad = total > med + 8.0 * np.sqrt(max(med, 1.0)) + 5.0
    if med >= 8:  # a pixel that never counts at this dose is dead, not unlucky
        bad |= total <= 0
    if gain is not None:
        bad |= gain <= 0
    bad = ndimage.binary_dilation(bad)[1:-1, 1:-1]
    ha, hb = _highpass(a)[~bad], _highpass(b)[~bad]
    ha, hb = ha - ha.mean(), hb - hb.mean()
    den = float(np.sqrt((ha * ha).sum() * (hb * hb).sum()))
    return float((ha * hb).sum() / den * np.sqrt(ha.size)) if den > 0 else 0.0


def _name(rot: int, flip: int) -> str:
    return f"gain_rot {rot}, gain_flip {flip}"


def check_before(
    movie: Path, gain_path: Path | None, rot: int, flip: int, needs_gain: bool
) -> GainVerdict:
    """Verdict on the gain for one movie, from its raw frames."""
    first, second = half_sums(movie)
    shape = first.shape
    if gain_path is None:
        r = residual_pattern(first, second, None)
        if r > RESIDUAL_LIMIT and needs_gain:
            return GainVerdict(
                True,
                f"no gain reference, but the movie carries a fixed detector pattern ({r:.0f} σ)",
                r,
            )
        return GainVerdict(False, "", r)
    gain = read_gain(gain_path)
    candidates = {(ro, fl): relion_gain(gain, ro, fl) for ro in range(4) for fl in range(3)}
    fits = {k: g for k, g in candidates.items() if g.shape == shape}
    if (rot, flip) not in fits:
        turn = [k for k in fits]
        hint = f"; {_name(*turn[0])} would fit" if turn else ""
        return GainVerdict(
            True,
            f"gain reference {gain.shape[1]}x{gain.shape[0]} does not match the movie "
            f"{shape[1]}x{shape[0]} with {_name(rot, flip)}{hint}",
            None,
        )
    mine = residual_pattern(first, second, fits[(rot, flip)])
    if mine <= RESIDUAL_LIMIT:
        return GainVerdict(False, "", mine)
    residuals = {k: residual_pattern(first, second, g) for k, g in fits.items() if k != (rot, flip)}
    residuals[(rot, flip)] = mine
    best = min(residuals, key=lambda k: residuals[k])
    if residuals[best] <= RESIDUAL_LIMIT or residuals[best] < 0.3 * mine:
        return GainVerdict(
            True,
            f"gain orientation: {_name(*best)} removes the detector pattern (left "
            f"{residuals[best]:.0f} σ), the configured {_name(rot, flip)} leaves {mine:.0f} σ",
            mine,
            _name(*best),
        )
    raw = residual_pattern(first, second, None)
    return GainVerdict(
        True,
        f"gain reference does not fit this detector: no orientation removes the fixed pattern "
        f"({mine:.0f} σ left; best orientation {residuals[best]:.0f} σ, without gain {raw:.0f} σ)",
        mine,
    )


def pinned(shifts: list[list[float]]) -> bool:
    """Every frame within ``PINNED_PX`` of the first: the alignment locked on a fixed pattern."""
    arr = np.asarray(shifts, dtype=float).reshape(-1, 2)
    if len(arr) < 3:
        return False
    return bool(np.all(np.hypot(*(arr - arr[0]).T) < PINNED_PX))


def check_after(verdict: GainVerdict, shifts: list[list[float]]) -> GainVerdict:
    """Add the motion-trace evidence: a pinned trace with some pattern left is suspect."""
    if not pinned(shifts):
        return verdict
    note = f"motion trace pinned (all frames within {PINNED_PX} px of frame 1)"
    evidence = f"{verdict.evidence}; {note}" if verdict.evidence else note
    some_pattern = verdict.residual is None or verdict.residual > 0.5 * RESIDUAL_LIMIT
    return GainVerdict(verdict.suspect or some_pattern, evidence, verdict.residual, verdict.best)
