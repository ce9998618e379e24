"""Tool-independent result records.

Every backend of a step (RELION's own motion correction or MotionCor2/3, our estimator or
CTFFIND4/5, LoG or crYOLO) is normalised to one of these records, so that everything
downstream (STAR writers, statistics, EMhub reporting) never needs to know which tool ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

EARLY_DOSE_CUTOFF = 4.0  # e/Å², RELION's "early" motion definition


class ParseError(ValueError):
    """A tool output file could not be understood; the message says which file and why."""


@dataclass
class MotionResult:
    """Global (full-frame) shifts of one movie, in unbinned pixels, one (x, y) per frame.

    Shifts follow RELION's convention: the *correction* applied to each frame, frame 1 at
    the reference. ``local`` holds optional per-patch shifts ``(frame, cx, cy, dx, dy)``.
    """

    shifts: list[tuple[float, float]]
    local: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    def accumulated_motion_px(
        self, dose_per_frame: float, pre_exposure: float = 0.0
    ) -> tuple[float, float, float]:
        """(total, early, late) in pixels of the shifts, exactly as RELION writes them."""
        return relion_accum_motion_px(self.shifts, dose_per_frame, pre_exposure)

    def accumulated_motion(
        self, pixel_size: float, dose_per_frame: float, pre_exposure: float = 0.0
    ) -> tuple[float, float, float]:
        """(total, early, late) in Å: RELION's pixel sums × ``pixel_size`` (our statistics).

        ``pixel_size`` must be the size of the pixels the shifts are in (the movie's frames).
        """
        total, early, late = self.accumulated_motion_px(dose_per_frame, pre_exposure)
        return total * pixel_size, early * pixel_size, late * pixel_size


def relion_accum_motion_px(
    shifts: Sequence[tuple[float, float]],
    dose_per_frame: float,
    pre_exposure: float = 0.0,
    cutoff: float = EARLY_DOSE_CUTOFF,
) -> tuple[float, float, float]:
    """RELION's ``rlnAccumMotionTotal/Early/Late``: sums of per-frame shift steps in PIXELS.

    As ``relion_run_motioncorr`` computes them (``motioncorr_runner.cpp``, no pixel-size
    factor despite the docs saying Å): the step from frame f-1 to frame f (1-based, f ≥ 2)
    is ``|s_f - s_{f-1}|``; it is early when ``f <= (cutoff - pre_exposure) /
    dose_per_frame``, i.e. ``pre_exposure + f * dose_per_frame <= cutoff`` (4 e/Å²).
    """
    if dose_per_frame <= 0:
        raise ValueError(f"dose per frame must be > 0, got {dose_per_frame}")
    cutoff_frame = (cutoff - pre_exposure) / dose_per_frame
    total = early = late = 0.0
    for f in range(2, len(shifts) + 1):
        (x0, y0), (x1, y1) = shifts[f - 2], shifts[f - 1]
        step = math.sqrt((x1 - x0) ** 2 + (y1 - y0) ** 2)
        total += step
        if f <= cutoff_frame:
            early += step
        else:
            late += step
    return total, early, late


@dataclass
class CtfResult:
    """CTF fit of one micrograph, CTFFIND conventions (Å, degrees, radians for phase)."""

    defocus_u: float
    defocus_v: float
    angle: float
    phase_shift: float = 0.0
    score: float = 0.0  # CTFFIND "cross correlation"
    resolution: float = math.inf  # Å, "CTF rings fit successfully up to"
    tilt_axis: float | None = None  # CTFFIND5
    tilt_angle: float | None = None  # CTFFIND5
    thickness: float | None = None  # Å, CTFFIND5
    ice_ring_density: float | None = None  # from _avrot.txt

    @property
    def astigmatism(self) -> float:
        return abs(self.defocus_u - self.defocus_v)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if math.isinf(self.resolution):
            data["resolution"] = 999.0  # RELION maps CTFFIND's inf to 999
        return data


NO_FOM = -999.0  # RELION coordinate STAR: rlnAutopickFigureOfMerit of a pick without a score


@dataclass
class Pick:
    """One particle centre in micrograph pixels (MRC row convention), with a score.

    ``score`` is ``None`` for a pick without one (RELION's ``-999`` figure of merit, crYOLO's
    ``<NA>`` confidence, EMAN box files).
    """

    x: float
    y: float
    score: float | None = None
