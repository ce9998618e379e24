"""Contrast transfer function physics shared by the simulator and the CTF estimator.

Conventions (same as CTFFIND and RELION on MRC data):

* spatial frequency ``k`` in 1/Å; the azimuth ``theta = atan2(ky, kx)`` has ``ky`` along array
  axis 0 and is measured from +x towards +y;
* defocus is positive for underfocus, ``defocus_u >= defocus_v``;
* ``defocus(theta) = 0.5 * (dU + dV + (dU - dV) * cos(2 * (theta - angle)))``;
* ``chi = pi * lambda * k^2 * defocus(theta) - 0.5 * pi * Cs * lambda^3 * k^4 + phase_shift``;
* ``CTF = -w1 * sin(chi) - w2 * cos(chi)`` with ``w2`` the amplitude contrast and
  ``w1 = sqrt(1 - w2^2)``, so protein is dark in underfocus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    if voltage_kv <= 0:
        raise ValueError(f"voltage must be positive, got {voltage_kv} kV")
    volts = voltage_kv * 1000.0
    return 12.2643247 / math.sqrt(volts * (1.0 + 0.978466e-6 * volts))


@dataclass(frozen=True)
class Optics:
    """Microscope parameters that do not change between micrographs of a session."""

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07

    @property
    def wavelength(self) -> float:
        return electron_wavelength(self.voltage_kv)

    @property
    def cs_angstrom(self) -> float:
        return self.cs_mm * 1.0e7


@dataclass(frozen=True)
class Defocus:
    """Astigmatic defocus in Å (underfocus positive) and astigmatism azimuth in degrees."""

    u: float
    v: float
    angle: float
    phase_shift: float = 0.0  # radians

    def normalised(self) -> Defocus:
        """Return the equivalent parameters with ``u >= v`` and the angle in (-90, 90]."""
        u, v, angle = self.u, self.v, self.angle
        if v > u:
            u, v, angle = v, u, angle + 90.0
        angle = (angle + 90.0) % 180.0 - 90.0
        if angle <= -90.0:
            angle += 180.0
        return Defocus(u, v, angle, self.phase_shift)

    @property
    def mean(self) -> float:
        return 0.5 * (self.u + self.v)

    @property
    def astigmatism(self) -> float:
        return abs(self.u - self.v)


def frequency_grid(shape: tuple[int, int], pixel_size: float) -> tuple[FloatArray, FloatArray]:
    """Return ``(k2, theta)`` for the full (non-rfft) FFT layout of an image of ``shape``."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    kx = np.fft.fftfreq(nx, d=pixel_size)[None, :]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(np.broadcast_to(ky, k2.shape), np.broadcast_to(kx, k2.shape))
    return k2, theta


def rfrequency_grid(shape: tuple[int, int], pixel_size: float) -> tuple[FloatArray, FloatArray]:
    """Return ``(k2, theta)`` for the ``numpy.fft.rfft2`` layout of an image of ``shape``."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    kx = np.fft.rfftfreq(nx, d=pixel_size)[None, :]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(np.broadcast_to(ky, k2.shape), np.broadcast_to(kx, k2.shape))
    return k2, theta


def astigmatic_defocus(theta: FloatArray, defocus: Defocus) -> FloatArray:
    """Defocus in Å along azimuth ``theta`` (radians)."""
    ang = math.radians(defocus.angle)
    return 0.5 * (defocus.u + defocus.v + (defocus.u - defocus.v) * np.cos(2.0 * (theta - ang)))


def chi(k2: FloatArray, theta: FloatArray, defocus: Defocus, optics: Optics) -> FloatArray:
    """Phase aberration (radians) at squared frequency ``k2`` (1/Å²) and azimuth ``theta``."""
    lam = optics.wavelength
    df = astigmatic_defocus(theta, defocus)
    return (
        math.pi * lam * k2 * df
        - 0.5 * math.pi * optics.cs_angstrom * lam**3 * k2 * k2
        + defocus.phase_shift
    )


def amplitude_contrast_phase(optics: Optics) -> float:
    """Extra phase ``atan(w2 / w1)`` contributed by amplitude contrast."""
    w2 = optics.amplitude_contrast
    return math.atan2(w2, math.sqrt(1.0 - w2 * w2))


def ctf(k2: FloatArray, theta: FloatArray, defocus: Defocus, optics: Optics) -> FloatArray:
    """Signed CTF, ``-sin(chi + atan(w2/w1))``."""
    return -np.sin(chi(k2, theta, defocus, optics) + amplitude_contrast_phase(optics))


def ctf_squared(k2: FloatArray, theta: FloatArray, defocus: Defocus, optics: Optics) -> FloatArray:
    """CTF², the quantity CTFFIND correlates with the background-subtracted spectrum."""
    values = ctf(k2, theta, defocus, optics)
    return values * values
