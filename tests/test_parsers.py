"""Version-tolerant parsers, proven on fixture files in the tools' exact output formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from emotf.parsers import cryolo, ctffind, motioncor, relion
from emotf.records import MotionResult, ParseError, Pick

FIX = Path(__file__).parent / "fixtures"
MC = FIX / "motioncor"
SHIFTS_4 = [(0.0, 0.0), (-1.204, 0.881), (-2.103, 1.552), (-2.754, 2.012)]


def close(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float = 1e-3) -> bool:
    return np.allclose(np.array(a), np.array(b), atol=tol)


def test_motioncor2_stdout_old_and_new_formats() -> None:
    old = motioncor.parse_stdout((MC / "mc2_1.5_stdout.txt").read_text())
    new = motioncor.parse_stdout((MC / "mc2_1.6_stdout.txt").read_text())
    assert close(old.shifts, SHIFTS_4)
    assert close(new.shifts, SHIFTS_4, tol=0.01)
    with pytest.raises(ParseError, match="Full-frame"):
        motioncor.parse_stdout("MotionCor2 crashed: CUDA error")


def test_motioncor_logfile_prefix_and_logdir_naming() -> None:
    old = motioncor.find_motion_result(MC, "FoilHole_1_")  # <=1.5: <prefix>0-Patch-Full.log
    assert close(old.shifts, SHIFTS_4, tol=0.005)  # logs print %8.2f
    assert old.local[1] == (2, 512.0, 512.0, -1.15, 0.9) and len(old.local) == 4
    new = motioncor.find_motion_result(MC, "movie-000001")  # >=1.6: <stem>-Full.log
    assert close(new.shifts, [(0, 0), (-0.51, 1.0), (-0.9, 1.8)])
    with pytest.raises(ParseError, match="no MotionCor log"):
        motioncor.find_motion_result(MC, "movie-999999")


def test_motioncor3_aln_global_and_local() -> None:
    result = motioncor.find_motion_result(MC, "movie-000002")
    assert close(result.shifts, [(0, 0), (-0.512, 1.003), (-0.9, 1.8)])
    assert result.local[1] == (2, 1024.0, 2048.0, -0.4, 0.95)
    assert len(result.local) == 6  # 2 patches x 3 frames


def test_motioncor_sentinel_values_are_rejected() -> None:
    with pytest.raises(ParseError, match="bad-Full.log"):
        motioncor.parse_full_log(MC / "bad-Full.log")


def test_ctffind4_and_5_by_column_count() -> None:
    (v4,) = ctffind.read_ctffind_txt(FIX / "ctffind" / "ctffind4.txt")
    assert (v4.defocus_u, v4.defocus_v, v4.angle) == (10588.083984, 9956.6875, -44.710212)
    assert v4.score == pytest.approx(0.494779) and v4.resolution == pytest.approx(4.102857)
    assert v4.thickness is None
    (v5,) = ctffind.read_ctffind_txt(FIX / "ctffind" / "ctffind5.txt")
    assert v5.thickness == pytest.approx(1619.773438) and v5.tilt_angle == pytest.approx(12.251187)
    two = ctffind.read_ctffind_txt(FIX / "ctffind" / "ctffind4_two.txt")
    assert len(two) == 2 and math.isinf(two[1].resolution)
    assert two[1].to_dict()["resolution"] == 999.0


def test_ctffind_avrot_and_ice_ring_density() -> None:
    avrot = ctffind.read_avrot(FIX / "ctffind" / "ctffind4_two_avrot.txt")
    assert avrot.shape == (2, 6, 40)
    freq, rot = avrot[0, 0], avrot[0, 1]
    band = (freq >= 0.25) & (freq <= 0.28)
    assert band.sum() == 4  # bins at 0.2538, 0.2615, 0.2692, 0.2769 1/Å
    assert ctffind.ice_ring_density(avrot[0]) == pytest.approx(np.abs(rot[band]).sum())


def test_ctffind_stdout_summary() -> None:
    result = ctffind.parse_ctffind_stdout((FIX / "ctffind" / "ctffind4_stdout.txt").read_text())
    assert (result.defocus_u, result.defocus_v, result.angle) == (10588.08, 9956.69, -44.71)
    assert result.score == 0.49478 and result.resolution == 4.1


def test_ctffind_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\n1.0 2.0 3.0\n")
    with pytest.raises(ParseError, match="3 columns"):
        ctffind.read_ctffind_txt(bad)
    bad.write_text("# only headers\n")
    with pytest.raises(ParseError, match="no result rows"):
        ctffind.read_ctffind_txt(bad)
    bad.write_text("1 2 3\n" * 5)
    with pytest.raises(ParseError, match="6 per micrograph"):
        ctffind.read_avrot(bad)


def test_cryolo_cbox_threshold_and_centres() -> None:
    picks = cryolo.read_cbox(FIX / "cryolo" / "FoilHole_1.cbox", threshold=0.3)
    assert picks == [Pick(180.0, 280.0, 0.91), Pick(1080.0, 1580.5, 0.45)]
    assert len(cryolo.read_cbox(FIX / "cryolo" / "FoilHole_1.cbox", threshold=0.0)) == 3
    assert cryolo.read_cbox(FIX / "cryolo" / "empty.cbox") == []


def test_cryolo_star_eman_agree_and_distr() -> None:
    star = relion.read_coordinates_star(FIX / "cryolo" / "FoilHole_1.star")
    eman = cryolo.read_eman_box(FIX / "cryolo" / "FoilHole_1.box")
    assert [(p.x, p.y) for p in star] == [(180.0, 280.0), (1080.0, 1580.5)]
    assert [(p.x, p.y) for p in eman] == [(180.0, 280.0), (1080.0, 1580.0)]
    summary = cryolo.read_distr_summary(
        FIX / "cryolo" / "size_distribution_summary_20250108-155012.txt"
    )
    assert summary == {"MEAN": 152.3, "SD": 6.1, "Q25": 148.0, "Q50": 152.0, "Q75": 156.5}


def test_find_cryolo_picks_prefers_cbox(tmp_path: Path) -> None:
    for sub, name in (("CBOX", "FoilHole_1.cbox"), ("STAR", "FoilHole_1.star")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_text((FIX / "cryolo" / name).read_text())
    assert len(cryolo.find_cryolo_picks(tmp_path, "FoilHole_1", 0.0)) == 3  # CBOX: all boxes
    (tmp_path / "CBOX" / "FoilHole_1.cbox").unlink()
    assert len(cryolo.find_cryolo_picks(tmp_path, "FoilHole_1", 0.0)) == 2
    with pytest.raises(ParseError, match="no picks"):
        cryolo.find_cryolo_picks(tmp_path, "other", 0.3)


def test_relion_motion_star_round_trip(tmp_path: Path) -> None:
    result, general = relion.read_motion_star(FIX / "relion" / "FoilHole_1_fractions.star")
    assert close(result.shifts, SHIFTS_4)
    assert general["rlnMicrographOriginalPixelSize"] == pytest.approx(0.83)
    copy = tmp_path / "copy.star"
    local = [(1, 10.0, 20.0, 0.0, 0.0), (2, 10.0, 20.0, -0.5, 0.25)]
    relion.write_motion_star(copy, MotionResult(result.shifts, local), general)
    again, general2 = relion.read_motion_star(copy)
    assert close(again.shifts, SHIFTS_4) and again.local == local
    assert general2["rlnMicrographMovieName"] == "Movies/FoilHole_1_fractions.tiff"


def test_relion_autopick_star_and_writer(tmp_path: Path) -> None:
    picks = relion.read_coordinates_star(FIX / "relion" / "FoilHole_1_autopick.star")
    assert picks == [Pick(512.0, 730.0, 2.5123), Pick(1840.0, 210.0, 1.8074)]
    out = tmp_path / "c.star"
    relion.write_coordinates_star(out, picks)
    assert relion.read_coordinates_star(out) == picks
    empty = tmp_path / "e.star"
    relion.write_coordinates_star(empty, [])
    assert relion.read_coordinates_star(empty) == []


def test_accumulated_motion_relion_convention() -> None:
    result = MotionResult([(0.0, 0.0), (3.0, 4.0), (3.0, 4.0), (6.0, 8.0)])
    total, early, late = result.accumulated_motion(pixel_size=2.0, dose_per_frame=2.0)
    assert total == pytest.approx(20.0)  # (5 + 0 + 5) px * 2 Å
    assert early == pytest.approx(10.0)  # frames up to 4 e/Å²
    assert late == pytest.approx(10.0)
