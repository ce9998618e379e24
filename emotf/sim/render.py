"""Frames of a realistic movie: optics, damage, motion, detector and counting.

Per frame ``i`` (exposure ``N_i`` at the middle of the frame):
``I_i = T(x − d_i) · (1 + c_i(x − d_i))`` with ``c_i`` the weak-phase contrast
``2·CTF·exp(−B k²/4)·M(k)·(φ̂_ice + D_i(k)·φ̂_protein)``: ``D_i`` the dose-damage filter (on
the protein only), ``M`` the detector signal filter, ``T`` the zero-loss transmission and
``d_i`` the global drift plus the local field. Counts are Poisson with mean
``DQE(0) · dose · pixel² · I_i · sensitivity``, plus a constant rate on hot pixels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .detector import Detector, GainModel
from .optics import Aberrations, frequencies, phase_contrast_transfer
from .realism import LocalMotion, critical_exposure, warp

FloatArray = NDArray[np.float64]


def _ramp(shape: tuple[int, int], shift: tuple[float, float]) -> NDArray[np.complex128]:
    ny, nx = shape
    ry = np.exp(-2j * math.pi * np.fft.fftfreq(ny) * shift[1])[:, None]
    rx = np.exp(-2j * math.pi * np.fft.rfftfreq(nx) * shift[0])[None, :]
    return np.asarray(ry * rx)


def render_frames(
    phase: FloatArray,
    protein: FloatArray,
    transmission: FloatArray,
    pixel_size: float,
    aberrations: Aberrations,
    bfactor: float,
    drift: FloatArray,
    local: LocalMotion | None,
    dose_per_frame: float,
    detector: Detector,
    gain: GainModel | None,
    rng: np.random.Generator,
) -> NDArray[np.uint8]:
    shape = phase.shape
    kx, ky = frequencies(shape, pixel_size)
    k2 = kx * kx + ky * ky
    mtf = detector.mtf(shape)
    transfer = 2.0 * phase_contrast_transfer(kx, ky, aberrations) * np.exp(-0.25 * bfactor * k2)
    transfer *= mtf
    contrast = np.fft.rfft2(phase - phase.mean()) * transfer
    damaged = np.fft.rfft2(protein - protein.mean()) * transfer
    trans = np.fft.rfft2(transmission) * mtf
    inv_ne = 1.0 / (2.0 * critical_exposure(np.sqrt(k2), aberrations.voltage_kv))
    counts = detector.dqe0 * dose_per_frame * pixel_size**2
    frames = np.empty((len(drift), *shape), dtype=np.uint8)
    for i, shift in enumerate(drift):
        exposure = dose_per_frame * (i + 0.5)
        ramp = _ramp(shape, (float(shift[0]), float(shift[1])))
        c = np.fft.irfft2((contrast + damaged * np.exp(-exposure * inv_ne)) * ramp, s=shape)
        t = np.fft.irfft2(trans * ramp, s=shape)
        intensity = t * (1.0 + c)
        if local is not None:
            intensity = warp(intensity, *local.field(shape, i))
        lam = counts * np.clip(intensity, 0.0, None)
        if gain is not None:
            lam *= gain.sensitivity
            lam[gain.hot] += gain.detector.hot_rate
        frames[i] = np.minimum(rng.poisson(lam), 255)
    return frames
