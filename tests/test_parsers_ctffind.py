"""CTFFIND 4.1.14 / 5.0.2 text outputs, avrot spectra, stdout summary, MotionCor3 _Ctf.txt."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emotf.parsers import ctffind as cf
from emotf.records import ParseError

CTF = Path(__file__).parent / "fixtures" / "ctffind"


def test_ctffind4_single_micrograph_with_avrot() -> None:
    (result,) = cf.read_ctffind(CTF / "FoilHole_8812_single.txt")
    assert (result.defocus_u, result.defocus_v, result.angle) == (10588.083984, 9956.6875,
                                                                  -44.710212)  # fmt: skip
    assert (result.phase_shift, result.score, result.resolution) == (0.0, 0.494779, 3.862512)
    assert result.tilt_axis is None and result.tilt_angle is None and result.thickness is None
    # band 0.25–0.28 1/Å: bins 0.2550, 0.2625, 0.2700, 0.2775 → |.03125|+|-.0125|+|.0475|+|.02|
    assert result.ice_ring_density == pytest.approx(0.11125)
    assert cf.ctffind_version(CTF / "FoilHole_8812_single.txt") == "4.1.14"


def test_ctffind4_two_micrographs_in_one_file() -> None:
    first, second = cf.read_ctffind(CTF / "pair_stack.txt")
    assert first.defocus_u == 10588.083984 and second.defocus_u == 21004.5
    assert second.angle == 12.5 and second.resolution == 6.1248
    assert first.ice_ring_density == pytest.approx(0.11125)
    assert second.ice_ring_density == pytest.approx(0.101 + 0.098 + 0.1205 + 0.090)
    avrot = cf.read_avrot(CTF / "pair_stack_avrot.txt")
    assert avrot.shape == (2, 6, 48)
    assert avrot[1, 0, 34] == pytest.approx(0.255) and avrot[1, 1, 36] == -0.1205


def test_ice_ring_density_band_edges() -> None:
    freq = np.array([0.2499, 0.25, 0.265, 0.28, 0.2801])
    rows = np.vstack([freq, np.array([100.0, -1.0, 2.0, -4.0, 100.0]), np.zeros((4, 5))])
    assert cf.ice_ring_density(rows) == 7.0  # inclusive at 0.25 and 0.28
    with pytest.raises(ValueError):
        cf.ice_ring_density(np.zeros(5))


def test_ctffind5_ten_columns() -> None:
    (result,) = cf.read_ctffind_txt(CTF / "FoilHole_9100_ctffind5.txt")
    assert (result.defocus_u, result.defocus_v) == (8984.742188, 8709.236328)
    assert result.angle == 45.948771 and result.resolution == 3.72
    assert (result.tilt_axis, result.tilt_angle, result.thickness) == (221.912292, 12.251187,
                                                                      1619.773438)  # fmt: skip
    assert cf.ctffind_version(CTF / "FoilHole_9100_ctffind5.txt") == "5.0.2"
    assert result.ice_ring_density is None  # no avrot next to it


def test_inf_resolution() -> None:
    (result,) = cf.read_ctffind_txt(CTF / "FoilHole_9001_inf.txt")
    assert math.isinf(result.resolution) and result.score == 0.041876
    assert result.to_dict()["resolution"] == 999.0


def test_nan_resolution_and_bad_defocus(tmp_path: Path) -> None:
    txt = tmp_path / "nanres.txt"
    txt.write_text("# c\n1.0 9000.0 8800.0 10.0 0.0 0.2 nan\n")
    assert math.isinf(cf.read_ctffind_txt(txt)[0].resolution)
    with pytest.raises(ParseError, match=r"bad_nan_defocus\.txt: non-finite"):
        cf.read_ctffind_txt(CTF / "bad_nan_defocus.txt")


def test_malformed_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "eight.txt"
    bad.write_text("# header\n1 2 3 4 5 6 7 8\n")
    with pytest.raises(ParseError, match=r"eight\.txt: 8 columns"):
        cf.read_ctffind_txt(bad)
    bad.write_text("# only headers\n")
    with pytest.raises(ParseError, match=r"eight\.txt: no result rows"):
        cf.read_ctffind_txt(bad)
    bad.write_text("1.0 9000.0 8800.0 10.0 0.0 0.2 ERROR\n")
    with pytest.raises(ParseError, match=r"eight\.txt:1: not a row of numbers"):
        cf.read_ctffind_txt(bad)
    avrot = tmp_path / "x_avrot.txt"
    avrot.write_text("1 2 3\n" * 5)
    with pytest.raises(ParseError, match=r"x_avrot\.txt: 5 data rows"):
        cf.read_avrot(avrot)
    with pytest.raises(ParseError, match="cannot read"):
        cf.read_ctffind_txt(tmp_path / "missing.txt")


def test_avrot_count_must_match_txt(tmp_path: Path) -> None:
    txt = tmp_path / "mic.txt"
    txt.write_text((CTF / "pair_stack.txt").read_text())
    (tmp_path / "mic_avrot.txt").write_text((CTF / "FoilHole_8812_single_avrot.txt").read_text())
    with pytest.raises(ParseError, match="1 micrographs but 2"):
        cf.read_ctffind(txt)


def test_stdout_summary() -> None:
    text = (CTF / "ctffind_4.1.14_stdout.txt").read_text()
    result, pixel = cf.parse_ctffind_summary(text)
    assert (result.defocus_u, result.defocus_v, result.angle) == (10588.08, 9956.69, -44.71)
    assert result.score == 0.49478 and result.resolution == 3.9 and pixel == 1.4
    assert cf.parse_ctffind_stdout(text) == result
    inf = text.replace("good fit up to  : 3.9", "good fit up to  : inf")
    assert math.isinf(cf.parse_ctffind_stdout(inf).resolution)
    failed = (CTF / "ctffind_5.0.2_stdout_noresults.txt").read_text()
    with pytest.raises(ParseError, match="ctffind.log: no 'Estimated defocus values'"):
        cf.parse_ctffind_stdout(failed, source="ctffind.log")


def test_motioncor3_ctf_txt() -> None:
    (result,) = cf.read_mc3_ctf_txt(CTF / "movie-000005_Ctf.txt")
    assert (result.defocus_u, result.defocus_v, result.angle) == (15230.51, 14788.2, 63.42)
    assert result.score == 0.21 and result.resolution == 10.0
