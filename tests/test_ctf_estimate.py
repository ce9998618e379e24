"""The numpy CTF estimator against known synthetic micrographs, and its CTFFIND files."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from emotf.ctf import CtfError, CtfSearch, estimate_ctf, run_on_file
from emotf.ctf.model import Optics
from emotf.evaluate import angle_difference
from emotf.parsers.ctffind import read_avrot, read_ctffind_txt
from emotf.sim.optics import Aberrations
from emotf.sim.physics import clean_image_ft

OPTICS = Optics(300.0, 2.7, 0.07)
CASES = [  # (mean defocus Å, astigmatism Å, angle °, size px)
    (8000, 0, 0, 1024),
    (12000, 400, 30, 1024),
    (16000, 1200, -60, 1024),
    (20000, 700, 75, 1024),
    (25000, 300, -20, 2048),
    (14000, 900, 10, 2048),
]


def micrograph(mean: float, astig: float, angle: float, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = Aberrations.astigmatic(mean, astig, angle, voltage_kv=300.0, cs_mm=2.7)
    phase = rng.normal(0.0, 0.07, (size, size))
    image = np.fft.irfft2(clean_image_ft(phase, 1.0, truth, 80.0), s=(size, size))
    return rng.poisson(np.clip(image, 0, None) * 25.0).astype(np.float32)


@pytest.mark.parametrize("mean, astig, angle, size", CASES)
def test_defocus_astigmatism_and_angle(mean: float, astig: float, angle: float, size: int) -> None:
    image = micrograph(mean, astig, angle, size, seed=int(mean + astig))
    result = estimate_ctf(image, 1.0, OPTICS).result
    assert abs(result.defocus_u - (mean + astig / 2)) <= 200
    assert abs(result.defocus_v - (mean - astig / 2)) <= 200
    if astig >= 300:
        assert angle_difference(result.angle, angle) <= 10
    assert 0 < result.score < 1
    assert 2.5 < result.resolution < 10


def test_bad_input_raises() -> None:
    with pytest.raises(CtfError, match="flat"):
        estimate_ctf(np.ones((512, 512)), 1.0, OPTICS)
    with pytest.raises(CtfError, match="NaN"):
        estimate_ctf(np.full((512, 512), np.nan), 1.0, OPTICS)
    with pytest.raises(CtfError, match="2D"):
        estimate_ctf(np.ones((4, 512, 512)), 1.0, OPTICS)
    with pytest.raises(CtfError, match="too small"):
        estimate_ctf(np.random.default_rng(0).random((64, 64)), 1.0, OPTICS)


def test_ctffind_format_files_round_trip(tmp_path: Path) -> None:
    mic = tmp_path / "mic.mrc"
    with mrcfile.new(mic) as mrc:
        mrc.set_data(micrograph(15000, 600, 40, 1024, seed=3))
    result = run_on_file(mic, tmp_path / "out" / "mic", 1.0, OPTICS, CtfSearch())
    (parsed,) = read_ctffind_txt(tmp_path / "out" / "mic.txt")
    assert parsed.defocus_u == pytest.approx(result.defocus_u, abs=1e-3)
    assert parsed.angle == pytest.approx(result.angle, abs=1e-3)
    rows = [ln for ln in (tmp_path / "out" / "mic.txt").read_text().splitlines()]
    assert sum(ln.startswith("#") for ln in rows) == 5 and len(rows[-1].split()) == 7
    avrot = read_avrot(tmp_path / "out" / "mic_avrot.txt")
    assert avrot.shape[:2] == (1, 6) and np.all(np.diff(avrot[0, 0]) > 0)
    with mrcfile.open(tmp_path / "out" / "mic.ctf") as diag:
        assert diag.data.ndim == 3


def test_uncertainty_grows_with_noise() -> None:
    rng = np.random.default_rng(3)
    truth = Aberrations.astigmatic(15000, 600, 30, voltage_kv=300.0, cs_mm=2.7)
    phase = rng.normal(0.0, 0.07, (1024, 1024))
    clean = np.clip(np.fft.irfft2(clean_image_ft(phase, 1.0, truth, 80.0), s=phase.shape), 0, None)
    good = estimate_ctf(rng.poisson(clean * 25.0).astype(float), 1.0, OPTICS)
    poor = estimate_ctf(rng.poisson(clean * 2.0).astype(float), 1.0, OPTICS)
    assert good.uncertainty is not None and poor.uncertainty is not None
    assert good.uncertainty < 150 and poor.uncertainty > good.uncertainty
