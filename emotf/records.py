"""Tool-independent result records.

Every backend of a step (RELION's own motion correction or MotionCor2/3, our estimator or
CTFFIND4/5, LoG or crYOLO) is normalised to one of these records, so that everything
downstream (STAR writers, statistics, EMhub reporting) never needs to know which tool ran.
"""

from __future__ import annotations

import math
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

    def accumulated_motion(
        self, pixel_size: float, dose_per_frame: float, pre_exposure: float = 0.0
    ) -> tuple[float, float, float]:
        """Return RELION's (total, early, late) accumulated motion in Å.

        Per-frame displacement ``d_i = |s_i - s_{i-1}|``; frames whose accumulated dose is at
        most 4 e/Å² count as early, the rest as late.
        """
        total = early = late = 0.0
        for i in range(1, len(self.shifts)):
            dx = self.shifts[i][0] - self.shifts[i - 1][0]
            dy = self.shifts[i][1] - self.shifts[i - 1][1]
            step = math.hypot(dx, dy) * pixel_size
            total += step
            dose = pre_exposure + dose_per_frame * i
            if dose <= EARLY_DOSE_CUTOFF:
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


@dataclass
class Pick:
    """One particle centre in micrograph pixels (MRC row convention), with a score."""

    x: float
    y: float
    score: float = 0.0
