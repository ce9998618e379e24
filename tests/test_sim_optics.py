"""The simulator's optics stand on their own: published constants, closed-form CTF zeros, the
azimuth and sign conventions, and no code shared with the estimator it scores (issue 17,
"circular CTF truth")."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import emotf.sim
from emotf.ctf.model import Defocus, Optics, ctf, electron_wavelength, rfrequency_grid
from emotf.sim.optics import (
    Aberrations,
    ctf_zero_frequencies,
    frequencies,
    interaction_constant,
    phase_contrast_transfer,
    wavelength_angstrom,
)
from emotf.sim.physics import clean_image_ft


def test_no_estimator_code_in_the_simulator() -> None:
    for path in Path(emotf.sim.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not name.startswith(("..ctf", "emotf.ctf")), (path, name)


@pytest.mark.parametrize("kv, picometres", [(200, 2.508), (300, 1.969)])
def test_relativistic_wavelength_matches_published_values(kv: float, picometres: float) -> None:
    # relativistic wavelengths 2.508 pm (200 kV) and 1.969 pm (300 kV); Williams & Carter,
    # Transmission Electron Microscopy, Table 1.1 lists them rounded (2.51 pm, 1.97 pm)
    assert wavelength_angstrom(kv) * 100 == pytest.approx(picometres, abs=0.0006)


@pytest.mark.parametrize("kv, sigma", [(200, 0.00072884), (300, 0.00065262)])
def test_interaction_constant_matches_kirkland(kv: float, sigma: float) -> None:
    # Kirkland, Advanced Computing in Electron Microscopy (2010), Table 5.1 (rad / (V·Å))
    assert interaction_constant(kv) == pytest.approx(sigma, rel=2e-4)


def test_ctf_zeros_closed_form_by_hand() -> None:
    # 300 kV, Cs 2.7 mm, 1 µm underfocus, no amplitude contrast: the first zero solves
    # ½·Cs·λ³·k⁴ − λ·Δf·k² + 1 = 0 with λΔf = 196.87 Å², Csλ³ = 206.0 Å⁴ → k = 0.07136/Å
    # (14.01 Å); the second and third (n = 2, 3) fall at 9.90 Å and 8.07 Å.
    ab = Aberrations(10000, 10000, 0.0, voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.0)
    assert 1 / ctf_zero_frequencies(ab, 0.0, 3) == pytest.approx([14.01, 9.90, 8.07], abs=0.01)
    # Cs = 0 reduces to k_n = sqrt(n / (λΔf)): 2 µm at 200 kV → 1/sqrt(1/501.6) = 22.40 Å
    flat = Aberrations(20000, 20000, 0.0, voltage_kv=200, cs_mm=0.0, amplitude_contrast=0.0)
    assert 1 / ctf_zero_frequencies(flat, 0.0, 1)[0] == pytest.approx(22.40, abs=0.01)


def _numeric_zeros(ab: Aberrations, azimuth: float, k_max: float = 0.2) -> np.ndarray:
    k = np.linspace(1e-4, k_max, 400001)
    kx, ky = k * math.cos(math.radians(azimuth)), k * math.sin(math.radians(azimuth))
    values = phase_contrast_transfer(kx, ky, ab)
    return k[1:][np.sign(values[1:]) != np.sign(values[:-1])]


@pytest.mark.parametrize("angle", [0.0, 30.0, -60.0, 85.0])
def test_the_simulated_ctf_has_its_zeros_where_the_closed_form_puts_them(angle: float) -> None:
    ab = Aberrations(16000, 14000, angle, voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.07)
    for azimuth in (angle, angle + 90.0, angle + 45.0):
        numeric = _numeric_zeros(ab, azimuth)[:4]
        assert numeric == pytest.approx(ctf_zero_frequencies(ab, azimuth, 4), abs=2e-6)
    # along the astigmatism azimuth the rings are those of dU, across it those of dV
    along = Aberrations(16000, 16000, 0.0, amplitude_contrast=0.07)
    across = Aberrations(14000, 14000, 0.0, amplitude_contrast=0.07)
    assert _numeric_zeros(ab, angle)[:3] == pytest.approx(_numeric_zeros(along, 0)[:3], abs=2e-6)
    assert _numeric_zeros(ab, angle + 90)[:3] == pytest.approx(
        _numeric_zeros(across, 0)[:3], abs=2e-6
    )


def test_a_particle_is_dark_in_underfocus() -> None:
    size = 256
    yy, xx = np.mgrid[0:size, 0:size]
    phase = 0.1 * np.exp(-((xx - 128) ** 2 + (yy - 128) ** 2) / (2 * 12.0**2))
    ab = Aberrations(15000, 15000, 0.0)
    image = np.fft.irfft2(clean_image_ft(phase, 1.0, ab, 0.0), s=(size, size))
    assert image[128, 128] < 0.99 and abs(image.mean() - 1.0) < 1e-9


def test_the_estimators_model_agrees_with_the_independent_one() -> None:
    # two implementations written apart; a convention slip in either breaks this
    shape, pixel = (128, 160), 1.3
    for u, v, angle, kv in [(15000, 14000, 30.0, 300), (9000, 8200, -70.0, 200)]:
        ab = Aberrations(u, v, angle, voltage_kv=kv, cs_mm=2.7, amplitude_contrast=0.1)
        kx, ky = frequencies(shape, pixel)
        k2, theta = rfrequency_grid(shape, pixel)
        theirs = ctf(k2, theta, Defocus(u, v, angle), Optics(kv, 2.7, 0.1))
        assert np.allclose(phase_contrast_transfer(kx, ky, ab), theirs, atol=2e-3)
        assert electron_wavelength(kv) == pytest.approx(wavelength_angstrom(kv), rel=1e-5)
