"""The realistic specimen: contrast from physics, ice, carbon, contamination, damage, local motion.

Numbers and their sources (all lengths in Å):

* Particle contrast. Protein volume 1.23 Å³/Da (mass density 1.35 g/cm³, Fischer, Polikarpov &
  Craievich 2004, Protein Sci. 13:2825). Vitreous ice mean inner potential ≈ 3.5 V (Wanner et
  al. 2006, Ultramicroscopy 106:341, electron holography); protein potential taken
  proportional to mass density (1.35 vs 0.93 g/cm³) gives ≈ 5.1 V, i.e. a contrast of
  ``PROTEIN_ICE_CONTRAST_V`` = 1.6 V. Phase = σ(V) × ΔV × projected thickness, σ from
  ``optics.interaction_constant``. A 200 kDa particle then has a mean phase of 0.054 rad over
  its footprint at 300 kV.
* Ice. Zero-loss (energy-filtered) transmission ``exp(−t/Λ)`` with the inelastic mean free
  path of vitreous ice Λ ≈ 3950 Å at 300 kV (Yesibolati et al. 2020, Phys. Rev. Lett.
  124:065502), scaled by β² to 200 kV. Thickness per grid square drawn from
  ``ice_thickness_range`` with a linear gradient of up to ±20 % across the image. The
  amorphous-ice phase noise grows with √t.
* Carbon. Hole edge of a holey support film: carbon 120 Å thick (typical Quantifoil/C-flat
  film), amorphous-carbon mean inner potential ≈ 10 V (Wanner et al. 2006), inelastic mean free
  path ≈ 1800 Å at 300 kV (Egerton, *EELS in the Electron Microscope*, 3rd ed., ch. 5 order of
  magnitude). No particles on carbon.
* Contamination. Crystalline-ice/ethane blobs 100–300 Å in radius, up to 1500 Å high.
* Radiation damage. Per frame, amplitudes at frequency ``k`` decay by ``exp(−N/(2 Nₑ(k)))``
  with the critical exposure ``Nₑ(k) = 0.245 k^−1.665 + 2.81`` e/Å² at 300 kV and 0.8× that at
  200 kV (Grant & Grigorieff 2015, eLife 4:e06980), ``N`` the exposure at the middle of the
  frame.
* Local motion. A smooth second-order polynomial field per frame (no net stretch) that grows
  like the early beam-induced motion (exponential; the polynomial model class of MotionCor2,
  Zheng et al. 2017), zero mean over the image so the global truth stays the mean
  displacement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .optics import frequencies, interaction_constant

FloatArray = NDArray[np.float64]

PROTEIN_VOLUME_PER_DA = 1.23  # Å³
PROTEIN_ICE_CONTRAST_V = 1.6
ICE_MIP_V = 3.5
ICE_IMFP_300KV = 3950.0  # Å
CARBON_THICKNESS = 120.0
CARBON_MIP_V = 10.0
CARBON_IMFP_300KV = 1800.0
ICE_PHASE_NOISE = 0.08  # rad per Å-pixel at 300 Å of ice (calibrated: CTFFIND-like scores)


def beta2(voltage_kv: float) -> float:
    gamma = 1.0 + voltage_kv / 510.99895
    return 1.0 - 1.0 / (gamma * gamma)


def imfp(at_300kv: float, voltage_kv: float) -> float:
    """Inelastic mean free path scaled from 300 kV by β² (Egerton's high-energy limit)."""
    return at_300kv * beta2(voltage_kv) / beta2(300.0)


def particle_diameter(mw_kda: float) -> float:
    """Diameter (Å) of a sphere of protein of ``mw_kda``."""
    volume = PROTEIN_VOLUME_PER_DA * mw_kda * 1e3
    return 2.0 * (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)


def particle_mean_phase(mw_kda: float, voltage_kv: float) -> float:
    """Mean phase (rad) over the footprint of a globular particle (mean chord 4r/3)."""
    radius = 0.5 * particle_diameter(mw_kda)
    return interaction_constant(voltage_kv) * PROTEIN_ICE_CONTRAST_V * 4.0 * radius / 3.0


def critical_exposure(k: FloatArray, voltage_kv: float) -> FloatArray:
    """Grant & Grigorieff (2015) critical exposure (e/Å²) at frequency ``k`` (1/Å)."""
    kk = np.maximum(k, 1e-4)
    ne = 0.245 * kk**-1.665 + 2.81
    return np.asarray(ne if voltage_kv >= 250 else 0.8 * ne)


def damage_filter(
    shape: tuple[int, int], pixel_size: float, exposure: float, voltage_kv: float
) -> FloatArray:
    kx, ky = frequencies(shape, pixel_size)
    k = np.sqrt(kx * kx + ky * ky)
    return np.asarray(np.exp(-exposure / (2.0 * critical_exposure(k, voltage_kv))))


@dataclass
class Specimen:
    """One micrograph's field of view (numpy orientation) and what the truth records."""

    phase: FloatArray  # rad: particles, ice noise, carbon, contamination
    transmission: FloatArray  # zero-loss fraction, mean < 1
    occupied: NDArray[np.bool_]  # where particles may not sit (carbon, contamination)
    truth: dict[str, Any] = field(default_factory=dict)


def _ice_thickness(
    shape: tuple[int, int], square_thickness: float, rng: np.random.Generator
) -> tuple[FloatArray, float]:
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    slope = rng.uniform(0.0, 0.2)
    direction = rng.uniform(0, 2 * math.pi)
    plane = ((xx / nx - 0.5) * math.cos(direction) + (yy / ny - 0.5) * math.sin(direction)) * 2
    return square_thickness * (1.0 + slope * plane), slope


def _carbon(
    shape: tuple[int, int], pixel_size: float, rng: np.random.Generator
) -> tuple[FloatArray, dict[str, Any]]:
    """Soft mask (1 on carbon) outside a circular hole whose edge crosses the image."""
    ny, nx = shape
    radius = 6000.0 / pixel_size  # 1.2 µm hole
    normal = rng.uniform(0, 2 * math.pi)
    offset = rng.uniform(0.15, 0.4) * min(nx, ny)  # edge this far from the centre
    cx = nx / 2 - (radius - offset) * math.cos(normal)
    cy = ny / 2 - (radius - offset) * math.sin(normal)
    yy, xx = np.mgrid[0:ny, 0:nx]
    dist = np.hypot(xx - cx, yy - cy) - radius
    mask = 1.0 / (1.0 + np.exp(-dist / 2.0))
    return mask, {
        "hole_centre": [round(cx, 1), round(cy, 1)],
        "hole_radius": radius,
        "fraction": round(float(mask.mean()), 4),
    }


def _contamination(
    shape: tuple[int, int], pixel_size: float, count: int, rng: np.random.Generator
) -> tuple[FloatArray, list[list[float]]]:
    """Height map (Å) of hemispherical blobs and their [x, y, radius px]."""
    ny, nx = shape
    height = np.zeros(shape)
    blobs = []
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(count):
        r = rng.uniform(100.0, 300.0) / pixel_size
        x, y = rng.uniform(0, nx), rng.uniform(0, ny)
        top = rng.uniform(500.0, 1500.0)
        d2 = ((xx - x) ** 2 + (yy - y) ** 2) / (r * r)
        height += top * np.sqrt(np.clip(1.0 - d2, 0.0, None))
        blobs.append([round(x, 1), round(y, 1), round(r, 1)])
    return height, blobs


def make_specimen(
    shape: tuple[int, int],
    pixel_size: float,
    voltage_kv: float,
    square_thickness: float,
    with_carbon: bool,
    n_contamination: int,
    rng: np.random.Generator,
) -> Specimen:
    """Background of one field: ice (gradient, noise), optional carbon and contamination."""
    sigma = interaction_constant(voltage_kv)
    thickness, slope = _ice_thickness(shape, square_thickness, rng)
    noise = ICE_PHASE_NOISE / pixel_size * np.sqrt(thickness / 300.0)
    phase = rng.normal(0.0, 1.0, shape) * noise + sigma * ICE_MIP_V * (thickness - thickness.mean())
    attenuation = thickness / imfp(ICE_IMFP_300KV, voltage_kv)
    occupied = np.zeros(shape, dtype=bool)
    truth: dict[str, Any] = {
        "ice_thickness": round(float(thickness.mean()), 1),
        "ice_gradient": round(slope, 3),
    }
    if with_carbon:
        mask, info = _carbon(shape, pixel_size, rng)
        texture = rng.normal(0.0, 2.0 * ICE_PHASE_NOISE / pixel_size, shape)
        phase += mask * (sigma * CARBON_MIP_V * CARBON_THICKNESS + texture)
        attenuation += mask * CARBON_THICKNESS / imfp(CARBON_IMFP_300KV, voltage_kv)
        occupied |= mask > 0.05
        truth["carbon"] = info
    height, blobs = _contamination(shape, pixel_size, n_contamination, rng)
    if blobs:
        phase += np.minimum(sigma * ICE_MIP_V * height, 1.5)
        attenuation += height / imfp(ICE_IMFP_300KV, voltage_kv)
        occupied |= ndimage.binary_dilation(height > 0, iterations=int(20 / pixel_size) + 1)
    truth["contamination"] = blobs
    return Specimen(phase, np.exp(-attenuation), occupied, truth)


@dataclass(frozen=True)
class LocalMotion:
    """``u(x, y, t) = scale[t] · Σ c_j P_j(X, Y)`` per axis, X, Y ∈ [−1, 1], zero image mean.

    The basis has no linear terms: a field linear in X, Y is a uniform stretch or shear, i.e.
    a change of magnification and apparent astigmatism (0.3 % for 1.5 px over 512 px, ~90 Å
    at 1.5 µm), which would make the CTF truth ill-defined. XY, X² and Y² have zero mean
    gradient over the image: the field bends the specimen (doming) without a net stretch."""

    coeffs: FloatArray  # (2, 3): x and y components of XY, X²−⅓, Y²−⅓
    scale: FloatArray  # (n_frames,)

    @staticmethod
    def draw(n_frames: int, amplitude: float, rng: np.random.Generator) -> LocalMotion:
        t = np.arange(n_frames, dtype=float)
        scale = 1.0 - np.exp(-t / max(1.0, n_frames / 6.0))
        coeffs = rng.normal(0.0, 1.0, (2, 3))
        coeffs *= amplitude / max(1e-9, float(np.abs(coeffs).sum(axis=1).max()))
        return LocalMotion(coeffs, scale)

    def field(self, shape: tuple[int, int], frame: int) -> tuple[FloatArray, FloatArray]:
        ny, nx = shape
        y, x = np.meshgrid(np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
        basis = np.stack([x * y, x * x - 1 / 3, y * y - 1 / 3])
        ux = np.tensordot(self.coeffs[0], basis, axes=1)
        uy = np.tensordot(self.coeffs[1], basis, axes=1)
        scale = self.scale[frame]
        return (ux - ux.mean()) * scale, (uy - uy.mean()) * scale

    def to_truth(self) -> dict[str, Any]:
        return {
            "coeffs": self.coeffs.round(4).tolist(),
            "scale": self.scale.round(4).tolist(),
            "basis": ["XY", "X2-1/3", "Y2-1/3"],
        }


def warp(image: FloatArray, ux: FloatArray, uy: FloatArray) -> FloatArray:
    """``image`` with its content displaced by ``(ux, uy)`` px (cubic spline)."""
    ny, nx = image.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    return np.asarray(ndimage.map_coordinates(image, [yy - uy, xx - ux], order=3, mode="reflect"))
