"""Counting detectors for the realistic simulator: DQE/MTF and a structured gain with defects.

DQE. Counted frames here carry white Poisson noise, so a signal filter ``M(ω)`` gives
``DQE(ω) = DQE(0) · M(ω)²`` (ω = frequency / Nyquist). ``M`` is chosen so that DQE follows the
shape of the manufacturers' published curves at 300 kV (Gatan K3 in counting mode; Thermo
Fisher Falcon 4i, EER), read at ω = 0, ½ and 1 from the public data-sheet plots; McMullan et
al. (2014, Ultramicroscopy 147:156) give the same shape for counting detectors (DQE(0) near
0.8–0.9, about half of it at Nyquist). The values are indicative, not a measurement.

Gain. ``sensitivity`` (counts per incident electron, mean 1) combines per-pixel variation,
a detector-specific fixed pattern (K3: column-to-column and read-out stripes along x;
Falcon 4i: row pattern and a 2 × 2 tile offset) and a smooth fall-off. Defects: dead pixels and
one dead column segment (sensitivity 0; the gain reference carries 0 there, which RELION and
MotionCor treat as defects) and hot pixels (extra counts every frame, not in the gain).
The gain reference written for a session is ``1 / sensitivity`` (multiplicative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Detector:
    name: str
    dqe: tuple[float, float, float]  # DQE at 0, ½ and 1 × Nyquist
    pixel_std: float  # per-pixel sensitivity spread (fraction)
    line_std: float  # column (K3) or row (Falcon) pattern spread
    block_std: float  # read-out stripes (K3) or tiles (Falcon)
    hot_fraction: float = 2e-5
    dead_fraction: float = 5e-5
    hot_rate: float = 3.0  # extra counts per frame on a hot pixel

    def mtf(self, shape: tuple[int, int]) -> FloatArray:
        """Signal filter ``M(ω)`` on the rfft2 grid of ``shape``."""
        ny, nx = shape
        wy = np.fft.fftfreq(ny)[:, None] * 2.0
        wx = np.fft.rfftfreq(nx)[None, :] * 2.0
        omega = np.sqrt(wx * wx + wy * wy)
        d0, dh, d1 = self.dqe
        dqe = np.interp(omega, [0.0, 0.5, 1.0, 1.5], [d0, dh, d1, 0.6 * d1])
        return np.asarray(np.sqrt(dqe / d0))

    @property
    def dqe0(self) -> float:
        return self.dqe[0]


DETECTORS = {
    "K3": Detector("K3", dqe=(0.80, 0.60, 0.36), pixel_std=0.03, line_std=0.02, block_std=0.03),
    "Falcon4i": Detector(
        "Falcon4i", dqe=(0.88, 0.66, 0.42), pixel_std=0.025, line_std=0.015, block_std=0.02
    ),
}


@dataclass
class GainModel:
    sensitivity: FloatArray  # mean 1; 0 on dead pixels
    hot: NDArray[np.bool_]
    detector: Detector

    def reference(self) -> NDArray[np.float32]:
        """Multiplicative gain reference (1/sensitivity; 0 marks a defect)."""
        with np.errstate(divide="ignore"):
            gain = np.where(self.sensitivity > 0, 1.0 / self.sensitivity, 0.0)
        return gain.astype(np.float32)

    def summary(self) -> dict[str, object]:
        return {
            "detector": self.detector.name,
            "dead_pixels": int((self.sensitivity == 0).sum()),
            "hot_pixels": int(self.hot.sum()),
        }


def structured_gain(
    shape: tuple[int, int], detector: Detector, rng: np.random.Generator
) -> GainModel:
    ny, nx = shape
    sens = np.exp(rng.normal(0.0, detector.pixel_std, shape))
    if detector.name == "K3":
        sens *= 1.0 + rng.normal(0.0, detector.line_std, (1, nx))  # columns
        stripes = np.repeat(rng.normal(0.0, detector.block_std, 24), -(-nx // 24))[:nx]
        sens *= 1.0 + stripes[None, :]
    else:
        sens *= 1.0 + rng.normal(0.0, detector.line_std, (ny, 1))  # rows
        tiles = 1.0 + rng.normal(0.0, detector.block_std, (2, 2))
        sens *= np.kron(tiles, np.ones((-(-ny // 2), -(-nx // 2))))[:ny, :nx]
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) / nx) ** 2 + ((yy - ny / 2) / ny) ** 2
    sens *= 1.0 - 0.08 * r2  # smooth fall-off towards the corners
    sens /= sens.mean()
    dead = rng.random(shape) < detector.dead_fraction
    col = int(rng.integers(0, nx))
    start = int(rng.integers(0, ny // 2))
    dead[start : start + ny // 3, col] = True
    sens[dead] = 0.0
    hot = (rng.random(shape) < detector.hot_fraction) & ~dead
    return GainModel(sens, hot, detector)
