"""The simulator's own electron optics, written independently of ``emotf.ctf``.

The estimator under test (``emotf.ctf.model``) must not be the source of the truth it is
scored against: a sign, azimuth or wavelength slip shared by both would cancel out. This
module therefore derives everything from physical constants and a different (Cartesian)
formulation, and the tests check it against published numbers (electron wavelength
2.508 pm at 200 kV and 1.969 pm at 300 kV) and closed-form CTF zeros.

Conventions of the *truth* (what a CTFFIND/RELION result on an MRC micrograph reports):

* numpy image, x = column (axis 1), y = row (axis 0); frequency ``(kx, ky)`` in 1/Å;
* ``defocus_u`` is the underfocus (positive, Å) along the direction at ``angle`` degrees
  from +x towards +y, ``defocus_v`` the one perpendicular to it;
* the wave aberration is ``W = π λ (dU·a² + dV·b²) − π/2 · Cs · λ³ · (a² + b²)²`` with
  ``(a, b)`` the frequency in the astigmatism frame, and the image contrast of a weak phase
  object ``φ`` is ``−2 (√(1−A²) sin W + A cos W) · φ̂`` (protein dark in underfocus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# CODATA 2018 exact/recommended values (SI)
PLANCK = 6.62607015e-34  # J s
ELECTRON_MASS = 9.1093837015e-31  # kg
ELEMENTARY_CHARGE = 1.602176634e-19  # C
LIGHT_SPEED = 299792458.0  # m/s


def wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic de Broglie wavelength, λ = h / √(2 m₀ e V (1 + eV / 2m₀c²)), in Å."""
    if voltage_kv <= 0:
        raise ValueError(f"acceleration voltage must be positive, got {voltage_kv} kV")
    energy = ELEMENTARY_CHARGE * voltage_kv * 1e3  # J
    momentum = math.sqrt(
        2.0 * ELECTRON_MASS * energy * (1.0 + energy / (2.0 * ELECTRON_MASS * LIGHT_SPEED**2))
    )
    return PLANCK / momentum * 1e10


def interaction_constant(voltage_kv: float) -> float:
    """σ = 2π m e λ / h² (relativistic mass), in rad / (V·Å) (Kirkland, *Advanced Computing
    in Electron Microscopy*, 2nd ed., eq. 5.6): phase = σ × projected potential."""
    energy = ELEMENTARY_CHARGE * voltage_kv * 1e3
    mass = ELECTRON_MASS + energy / LIGHT_SPEED**2
    lam = wavelength_angstrom(voltage_kv) * 1e-10
    return 2.0 * math.pi * mass * ELEMENTARY_CHARGE * lam / PLANCK**2 * 1e-10


@dataclass(frozen=True)
class Aberrations:
    """Everything the truth's CTF depends on (lengths in Å, Cs in mm, angle in degrees)."""

    defocus_u: float
    defocus_v: float
    angle: float
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    phase_shift: float = 0.0  # rad (phase plate)

    def __post_init__(self) -> None:
        if self.defocus_v > self.defocus_u:
            raise ValueError("defocus_u must be the larger underfocus (dU >= dV)")

    @classmethod
    def astigmatic(
        cls, mean: float, astigmatism: float, angle: float, **optics: float
    ) -> Aberrations:
        """From mean defocus, |dU − dV| and the azimuth of dU, angle folded into (−90, 90]."""
        folded = (angle + 90.0) % 180.0 - 90.0
        if folded == -90.0:
            folded = 90.0
        return cls(mean + astigmatism / 2, mean - astigmatism / 2, folded, **optics)


def frequencies(
    shape: tuple[int, int], pixel_size: float, real: bool = True
) -> tuple[FloatArray, FloatArray]:
    """``(kx, ky)`` (1/Å) of the ``rfft2`` (``real``) or ``fft2`` layout of ``shape``."""
    ny, nx = shape
    ky = np.fft.fftfreq(ny, d=pixel_size)[:, None]
    kx = (np.fft.rfftfreq(nx, d=pixel_size) if real else np.fft.fftfreq(nx, d=pixel_size))[None, :]
    return np.broadcast_to(kx, (ny, kx.shape[1])), np.broadcast_to(ky, (ny, kx.shape[1]))


def wave_aberration(kx: FloatArray, ky: FloatArray, ab: Aberrations) -> FloatArray:
    """``W(kx, ky)`` in radians, computed in the frame of the astigmatism axes."""
    lam = wavelength_angstrom(ab.voltage_kv)
    cos_a, sin_a = math.cos(math.radians(ab.angle)), math.sin(math.radians(ab.angle))
    along = kx * cos_a + ky * sin_a  # component along the dU direction
    across = -kx * sin_a + ky * cos_a
    k2 = along * along + across * across
    defocus_term = math.pi * lam * (ab.defocus_u * along * along + ab.defocus_v * across * across)
    cs_term = 0.5 * math.pi * ab.cs_mm * 1e7 * lam**3 * k2 * k2
    return np.asarray(defocus_term - cs_term + ab.phase_shift)


def phase_contrast_transfer(kx: FloatArray, ky: FloatArray, ab: Aberrations) -> FloatArray:
    """Signed transfer of a weak phase object into intensity contrast (without the 2)."""
    w = wave_aberration(kx, ky, ab)
    a = ab.amplitude_contrast
    return np.asarray(-(math.sqrt(1.0 - a * a) * np.sin(w) + a * np.cos(w)))


def ctf_zero_frequencies(ab: Aberrations, azimuth_deg: float, count: int) -> FloatArray:
    """The first ``count`` zeros (1/Å) of the CTF along an azimuth, from the closed form.

    Zeros satisfy ``W + atan(A/√(1−A²)) = nπ``; with ``D`` the defocus along the azimuth this
    is a quadratic in ``k²``: ``½πCsλ³k⁴ − πλDk² + (nπ − φ_A) = 0``.
    """
    lam = wavelength_angstrom(ab.voltage_kv)
    rel = math.radians(azimuth_deg - ab.angle)
    d = ab.defocus_u * math.cos(rel) ** 2 + ab.defocus_v * math.sin(rel) ** 2
    phi_a = math.atan2(ab.amplitude_contrast, math.sqrt(1 - ab.amplitude_contrast**2))
    cs = ab.cs_mm * 1e7
    out = []
    for n in range(1, count + 1):
        c = n * math.pi - phi_a - ab.phase_shift
        if cs == 0:
            out.append(math.sqrt(c / (math.pi * lam * d)))
            continue
        a2, b2 = 0.5 * math.pi * cs * lam**3, -math.pi * lam * d
        disc = b2 * b2 - 4 * a2 * c
        if disc < 0:
            break
        out.append(math.sqrt((-b2 - math.sqrt(disc)) / (2 * a2)))
    return np.asarray(out)
