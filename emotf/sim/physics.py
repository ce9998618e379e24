"""Image formation for synthetic movies (weak-phase-object approximation).

* Particles: one pseudo-atomic "protein" (a 3.8 Å random walk confined to an ellipsoid),
  copies at random 3D orientations placed without overlap, atoms splatted bilinearly; the
  projected phase is scaled so its mean over a particle's footprint is ``particle_phase``.
* Ice: white Gaussian phase noise (gives Thon rings over the whole field, as real ice does).
* Image: ``I(k) = δ(k) + 2·CTF(k)·E(k)·Φ(k)`` with ``E = exp(-B k²/4)`` and the simulator's
  own CTF (``emotf.sim.optics``, independent of the estimator; protein dark in underfocus).
* Movie: frame ``i`` shows the image displaced by ``drift[i]`` (Fourier shift), with Poisson
  counts of mean ``dose_per_frame · pixel² · I · sensitivity``.

Orientation: numpy arrays, x = column (axis 1), y = row (axis 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .optics import Aberrations, frequencies, phase_contrast_transfer

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Protein:
    """Atom coordinates (Å) centred on the origin."""

    atoms: FloatArray
    diameter: float


def make_protein(diameter: float, rng: np.random.Generator, n_atoms: int = 3000) -> Protein:
    radius = 0.5 * diameter
    axes = radius * np.array([0.8, 0.64, 0.52])
    atoms = np.zeros((n_atoms, 3))
    pos = np.zeros(3)
    for i in range(n_atoms):
        for _ in range(20):
            step = rng.normal(size=3)
            trial = pos + 3.8 * step / np.linalg.norm(step)
            if np.sum((trial / axes) ** 2) <= 1.0:
                pos = trial
                break
        atoms[i] = pos
    atoms -= atoms.mean(axis=0)
    return Protein(atoms=atoms, diameter=diameter)


def random_rotation(rng: np.random.Generator) -> FloatArray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def place_particles(
    shape: tuple[int, int], diameter_px: float, count: int, rng: np.random.Generator
) -> FloatArray:
    """Centres (x, y) in px, at least 1.1 diameters apart and a radius from the edges."""
    ny, nx = shape
    margin = 0.75 * diameter_px
    centres: list[tuple[float, float]] = []
    if min(nx, ny) <= 2 * margin:
        return np.zeros((0, 2))  # image smaller than a particle: ice only
    for _ in range(count * 200):
        if len(centres) == count:
            break
        x, y = rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin)
        if all((x - cx) ** 2 + (y - cy) ** 2 >= (1.1 * diameter_px) ** 2 for cx, cy in centres):
            centres.append((x, y))
    return np.array(centres, dtype=float).reshape(-1, 2)


def particle_phase(
    shape: tuple[int, int],
    protein: Protein,
    centres: FloatArray,
    pixel_size: float,
    mean_phase: float,
    rng: np.random.Generator,
) -> FloatArray:
    """Projected phase of every particle copy (radians)."""
    ny, nx = shape
    image = np.zeros(shape)
    for cx, cy in centres:
        xyz = protein.atoms @ random_rotation(rng).T / pixel_size
        px, py = xyz[:, 0] + cx, xyz[:, 1] + cy
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        fx, fy = px - x0, py - y0
        for dx, dy, w in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = np.clip(x0 + dx, 0, nx - 1), np.clip(y0 + dy, 0, ny - 1)
            np.add.at(image, (yi, xi), w)
    if len(centres):
        footprint = math.pi * (0.5 * protein.diameter / pixel_size) ** 2 * len(centres)
        image *= mean_phase * footprint / image.sum()
    return image


def drift_trajectory(n_frames: int, rng: np.random.Generator, total: float = 15.0) -> FloatArray:
    """Per-frame displacement (dx, dy) in px: fast exponential start plus linear stage drift."""
    t = np.arange(n_frames, dtype=float)
    fast_dir = rng.normal(size=2)
    slow_dir = rng.normal(size=2)
    fast = np.outer(1.0 - np.exp(-t / 2.5), fast_dir / np.linalg.norm(fast_dir))
    slow = np.outer(t / max(1, n_frames - 1), slow_dir / np.linalg.norm(slow_dir))
    path = 0.6 * total * fast + 0.4 * total * slow
    return path - path[0]


def clean_image_ft(
    phase: FloatArray, pixel_size: float, aberrations: Aberrations, bfactor: float
) -> NDArray[np.complex128]:
    """rfft2 of the noise-free intensity (mean 1) for the phase object ``phase``."""
    kx, ky = frequencies(phase.shape, pixel_size)
    k2 = kx * kx + ky * ky
    transfer = 2.0 * phase_contrast_transfer(kx, ky, aberrations) * np.exp(-0.25 * bfactor * k2)
    spectrum = np.fft.rfft2(phase - phase.mean()) * transfer
    spectrum[0, 0] = phase.size  # δ(k): mean intensity 1
    return spectrum


def shifted_frame(
    spectrum: NDArray[np.complex128], shape: tuple[int, int], shift: tuple[float, float]
) -> FloatArray:
    """Intensity displaced by ``shift`` = (dx, dy) px (separable Fourier phase ramp)."""
    ny, nx = shape
    ramp_y = np.exp(-2j * math.pi * np.fft.fftfreq(ny) * shift[1])[:, None]
    ramp_x = np.exp(-2j * math.pi * np.fft.rfftfreq(nx) * shift[0])[None, :]
    return np.fft.irfft2(spectrum * ramp_y * ramp_x, s=shape)


def count_frames(
    spectrum: NDArray[np.complex128],
    shape: tuple[int, int],
    drift: FloatArray,
    counts_per_pixel: float,
    sensitivity: FloatArray | None,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    """Poisson-counted frames (uint8), one per drift position."""
    frames = np.empty((len(drift), *shape), dtype=np.uint8)
    for i, shift in enumerate(drift):
        intensity = np.clip(shifted_frame(spectrum, shape, (shift[0], shift[1])), 0.0, None)
        lam = counts_per_pixel * intensity
        if sensitivity is not None:
            lam *= sensitivity
        frames[i] = np.minimum(rng.poisson(lam), 255)
    return frames
