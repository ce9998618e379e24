"""Amplitude spectrum of a micrograph and its background, as CTFFIND4 prepares them.

1. Fourier-crop to the working pixel size ``max(pixel, 0.3 · max_res)``; clip outliers (hot
   pixels, contamination) to ±5 robust σ and remove gradients slower than 200 Å (ice
   thickness, carbon and contamination shadows), which lie far below the fitted band.
2. Average the power spectra of overlapping tiles (50 %), take the square root (amplitude).
   The box shrinks (never below 256) until at least 4 tiles fit, and tiles whose variance is
   an outlier (a carbon edge, a contamination blob) are left out of the average. Four large
   tiles beat nine small ones on 1k micrographs: at 3.5 µm defocus a Thon ring near 5 Å is
   only ~1.5 px wide in a 430 Å box, so frequency sampling, not averaging, limits the fit.
3. Remove the smooth background by a box filter, in ``s = k²``, exactly one Thon-ring period
   wide (``1/(λ·Δf)``): a box over a full period of sin² removes the oscillation exactly.
   Normalise by the running RMS over the same window so every ring weighs the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FloatArray = NDArray[np.float64]


class CtfError(ValueError):
    """The micrograph cannot be analysed (wrong shape, too small, NaN, flat)."""


@dataclass
class Spectrum:
    amplitude: FloatArray  # box × box, centred (fftshift), mean-free tiles
    pixel_size: float  # working pixel size (Å)
    k2: FloatArray  # squared spatial frequency (1/Å²) per pixel
    theta: FloatArray  # azimuth (rad), ky along axis 0
    n_tiles: int


def fourier_crop(image: FloatArray, pixel_size: float, target: float) -> tuple[FloatArray, float]:
    """Resample ``image`` to pixel size ``target`` (only ever coarser) by Fourier cropping."""
    ny, nx = image.shape
    if target <= pixel_size * 1.0001:
        return image, pixel_size
    my = int(round(ny * pixel_size / target / 2)) * 2
    mx = int(round(nx * pixel_size / target / 2)) * 2
    spectrum = np.fft.rfft2(image)
    half = my // 2
    cropped = np.concatenate([spectrum[:half, : mx // 2 + 1], spectrum[ny - half :, : mx // 2 + 1]])
    out = np.fft.irfft2(cropped, s=(my, mx)) * (my * mx) / (ny * nx)
    return out, pixel_size * nx / mx


def check_image(image: np.ndarray, box: int) -> FloatArray:
    if image.ndim != 2:
        raise CtfError(f"micrograph must be 2D, got shape {image.shape}")
    data = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise CtfError("micrograph contains NaN or infinite values")
    if min(data.shape) < 128:
        raise CtfError(f"micrograph {data.shape} too small for CTF estimation")
    if float(data.std()) <= 1e-12 * max(1.0, abs(float(data.mean()))):
        raise CtfError("micrograph is flat (no contrast)")
    return data


def flatten(image: FloatArray, pixel_size: float) -> FloatArray:
    """Clip outliers to ±5 robust σ and subtract gradients slower than ~200 Å."""
    med = float(np.median(image))
    mad = 1.4826 * float(np.median(np.abs(image - med))) or float(image.std()) or 1.0
    clipped = np.clip(image, med - 5 * mad, med + 5 * mad)
    sigma = 200.0 / pixel_size / (2 * math.pi)  # Gaussian whose cut-off is ~1/200 Å
    return np.asarray(clipped - ndimage.gaussian_filter(clipped, sigma, mode="reflect"))


def tile_box(shape: tuple[int, int], box: int, min_tiles: int = 4) -> int:
    """The largest even box <= ``box`` (and >= 256 when the image allows) giving ``min_tiles``."""
    size = min(shape)
    box = min(box, (size // 2) * 2)
    while box > 256:
        per_axis = (size - box) // (box // 2) + 1
        if per_axis * per_axis >= min_tiles:
            break
        box = max(256, (box * 3 // 4) // 2 * 2)
    return box


def periodogram(image: FloatArray, box: int) -> tuple[FloatArray, int]:
    """Centred amplitude spectrum: sqrt of the mean power of 50 %-overlapping tiles whose
    variance is not an outlier; also how many tiles were used."""
    ny, nx = image.shape
    box = min(box, (min(ny, nx) // 2) * 2)
    step = box // 2
    powers, variances = [], []
    for y in range(0, ny - box + 1, step):
        for x in range(0, nx - box + 1, step):
            tile = image[y : y + box, x : x + box]
            tile = tile - tile.mean()
            f = np.fft.fft2(tile)
            powers.append(f.real**2 + f.imag**2)
            variances.append(float(tile.var()))
    var = np.asarray(variances)
    med = float(np.median(var))
    keep = (var <= 2.5 * med) & (var >= 0.4 * med) if len(var) >= 4 else np.ones(len(var), bool)
    full = np.fft.fftshift(np.sqrt(np.asarray(powers)[keep].mean(axis=0)))
    return full, int(keep.sum())


def spectrum_of(image: np.ndarray, pixel_size: float, box: int, max_res: float) -> Spectrum:
    data = check_image(image, box)
    data, working = fourier_crop(data, pixel_size, max(pixel_size, 0.3 * max_res))
    data = flatten(data, working)
    amplitude, n_tiles = periodogram(data, tile_box(data.shape, box))
    size = amplitude.shape[0]
    freq = np.fft.fftshift(np.fft.fftfreq(size, d=working))
    ky, kx = np.meshgrid(freq, freq, indexing="ij")
    return Spectrum(amplitude, working, kx * kx + ky * ky, np.arctan2(ky, kx), n_tiles)


def radial_profile(values: FloatArray, s: FloatArray, edges: FloatArray) -> FloatArray:
    """Mean of ``values`` in bins of ``s`` (NaN for empty bins)."""
    index = np.digitize(s.ravel(), edges) - 1
    valid = (index >= 0) & (index < len(edges) - 1)
    sums = np.bincount(index[valid], values.ravel()[valid], minlength=len(edges) - 1)
    counts = np.bincount(index[valid], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def box_smooth(profile: FloatArray, width_bins: int) -> FloatArray:
    """Running mean over ``width_bins`` (edges use the available part of the window)."""
    width = max(1, int(width_bins))
    valid = np.isfinite(profile)
    filled = np.where(valid, profile, 0.0)
    kernel = np.ones(width)
    num = np.convolve(filled, kernel, mode="same")
    den = np.convolve(valid.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def normalised_spectrum(spec: Spectrum, period_s: float, n_bins: int = 2048) -> FloatArray:
    """Background-subtracted, RMS-normalised spectrum for a Thon-ring period ``period_s``."""
    s = spec.k2
    edges = np.linspace(0.0, float(s.max()) * 1.0001, n_bins + 1)
    bin_width = edges[1] - edges[0]
    width = max(3, int(round(period_s / bin_width)))
    profile = radial_profile(spec.amplitude, s, edges)
    background = box_smooth(profile, width)
    index = np.clip(np.digitize(s, edges) - 1, 0, n_bins - 1)
    residual = spec.amplitude - background[index]
    rms = np.sqrt(box_smooth(radial_profile(residual**2, s, edges), width))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = residual / rms[index]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def ring_period(wavelength: float, defocus: float) -> float:
    """Thon-ring period in ``s = k²`` (1/Å²) for a defocus (Å), ignoring Cs."""
    return 1.0 / (wavelength * max(defocus, 1000.0))


def band_mask(spec: Spectrum, min_res: float, max_res: float) -> NDArray[np.bool_]:
    size = spec.amplitude.shape[0]
    centre = size // 2
    mask = (spec.k2 >= 1.0 / min_res**2) & (spec.k2 <= 1.0 / max_res**2)
    mask[centre - 1 : centre + 2, :] = False  # tile-edge artefacts form a cross on the axes
    mask[:, centre - 1 : centre + 2] = False
    mask[:centre, :] = False  # Friedel symmetry: half the plane carries all information
    return mask


def k_max(spec: Spectrum) -> float:
    return 1.0 / (2.0 * spec.pixel_size) * math.sqrt(1.0)
