"""RELION 3.1 per-micrograph motion STAR and autopick coordinate STAR: read and write."""

from __future__ import annotations

from pathlib import Path

import pytest
import starfile

from emotf.parsers import motioncor, relion
from emotf.records import MotionResult, ParseError, Pick, relion_accum_motion_px

FIX = Path(__file__).parent / "fixtures"
REL = FIX / "relion"


def test_read_relion_31_motion_star() -> None:
    result, general = relion.read_motion_star(REL / "FoilHole_8812_Data_8801_fractions.star")
    assert result.shifts == [
        (0.0, 0.0), (-0.9132, 0.4417), (-1.6874, 0.8051), (-2.3019, 1.1226),
        (-2.7833, 1.3744), (-3.152, 1.5563),
    ]  # fmt: skip
    assert result.local == []  # local_motion_model / hot_pixels blocks are ignored
    assert general["rlnImageSizeX"] == 5760 and general["rlnImageSizeZ"] == 6
    assert general["rlnMicrographOriginalPixelSize"] == 0.83
    assert general["rlnMicrographDoseRate"] == 1.25
    assert general["rlnMicrographMovieName"].endswith("FoilHole_8812_Data_8801_fractions.tiff")


def test_sentinel_and_missing_blocks(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"bad_sentinel_motion\.star: invalid values"):
        relion.read_motion_star(REL / "bad_sentinel_motion.star")
    empty = tmp_path / "empty.star"
    empty.write_text("")
    with pytest.raises(ParseError, match=r"empty\.star: no data_global_shift"):
        relion.read_motion_star(empty)


def test_write_motion_star_from_motioncor_logs(tmp_path: Path) -> None:
    result = motioncor.find_motion_result(FIX / "motioncor" / "logdir_1.6", "movie-000003")
    general = {
        "rlnImageSizeX": 5760,
        "rlnImageSizeY": 4092,
        "rlnMicrographMovieName": "Movies/FoilHole_8812_Data_8801_fractions.tiff",
        "rlnMicrographOriginalPixelSize": 0.83,
        "rlnMicrographDoseRate": 1.25,
        "rlnVoltage": 300.0,
    }
    out = tmp_path / "MotionCorr" / "mic.star"
    relion.write_motion_star(out, result, general)
    blocks = starfile.read(out, always_dict=True)
    assert list(blocks) == ["general", "global_shift", "local_shift"]
    assert blocks["general"]["rlnImageSizeZ"] == 6  # filled from the shifts
    assert blocks["general"]["rlnMotionModelVersion"] == 0
    assert blocks["general"]["rlnMicrographStartFrame"] == 1
    assert list(blocks["global_shift"]["rlnMicrographFrameNumber"]) == [1, 2, 3, 4, 5, 6]
    assert list(blocks["local_shift"].columns) == relion.LOCAL_COLUMNS
    again, general2 = relion.read_motion_star(out)
    assert again.shifts == result.shifts and again.local == result.local
    assert general2["rlnMicrographOriginalPixelSize"] == 0.83
    text = out.read_text()
    assert "data_general" in text and "_rlnMicrographShiftX" in text


def test_autopick_star_columns_in_any_order() -> None:
    picks = relion.read_coordinates_star(REL / "FoilHole_8812_Data_8801_fractions_autopick.star")
    assert picks == [
        Pick(1292.0, 476.0, 2.913007), Pick(420.0, 2278.0, 1.504262), Pick(2899.0, 1592.0, 0.88119)
    ]  # fmt: skip


def test_empty_autopick_loop_and_empty_file(tmp_path: Path) -> None:
    assert (
        relion.read_coordinates_star(REL / "FoilHole_8900_Data_8801_fractions_autopick.star") == []
    )
    empty = tmp_path / "e.star"
    empty.write_text("\n")
    assert relion.read_coordinates_star(empty) == []


def test_coordinates_writer_round_trip(tmp_path: Path) -> None:
    picks = [Pick(1292.0, 476.0, 0.8731), Pick(420.5, 2278.0, 0.612)]
    out = tmp_path / "coords" / "mic_autopick.star"
    relion.write_coordinates_star(out, picks)
    assert relion.read_coordinates_star(out) == picks
    table = starfile.read(out)
    assert list(table.columns) == [
        "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit", "rlnClassNumber",
        "rlnAnglePsi",
    ]  # fmt: skip
    relion.write_coordinates_star(out, [])
    assert relion.read_coordinates_star(out) == []


def test_damaged_star_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.star"
    bad.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10.0 abc\n")
    with pytest.raises(ParseError, match=r"bad\.star"):
        relion.read_coordinates_star(bad)


def test_motion_result_written_then_accumulated(tmp_path: Path) -> None:
    out = tmp_path / "m.star"
    relion.write_motion_star(out, MotionResult([(0.0, 0.0), (3.0, 4.0)]), {"rlnVoltage": 300.0})
    result, _ = relion.read_motion_star(out)
    assert result.accumulated_motion(1.0, 1.0)[0] == pytest.approx(5.0)


RUN = FIX / "relion" / "run_motioncorr_own"


def test_accum_motion_is_relion_pixel_sums_by_hand() -> None:
    """Real ``relion_run_motioncorr --use_own`` output (--angpix 0.8, --dose_per_frame 1.5,
    --preexposure 1): its rlnAccumMotion* equal pixel sums (not × 0.8 Å) with step f early
    when 1 + 1.5 f ≤ 4, i.e. only the step into frame 2."""
    result, general = relion.read_motion_star(RUN / "Movies" / "mov1_fractions.star")
    dose, pre = general["rlnMicrographDoseRate"], general["rlnMicrographPreExposure"]
    assert (dose, pre, general["rlnMicrographOriginalPixelSize"]) == (1.5, 1.0, 0.8)
    s = result.shifts
    steps = [
        ((s[f][0] - s[f - 1][0]) ** 2 + (s[f][1] - s[f - 1][1]) ** 2) ** 0.5 for f in range(1, 8)
    ]
    assert steps[0] == pytest.approx((0.54676**2 + 0.95617**2) ** 0.5)  # frame 1 -> 2
    total, early, late = relion_accum_motion_px(s, dose, pre)
    assert early == pytest.approx(steps[0]) and late == pytest.approx(sum(steps[1:]))
    table = relion.read_star(RUN / "corrected_micrographs.star")["micrographs"]
    row = table.iloc[0]
    assert total == pytest.approx(row["rlnAccumMotionTotal"], abs=2e-6)
    assert early == pytest.approx(row["rlnAccumMotionEarly"], abs=2e-6)
    assert late == pytest.approx(row["rlnAccumMotionLate"], abs=2e-6)
    assert result.accumulated_motion_px(dose, pre) == (total, early, late)
    angstrom = result.accumulated_motion(0.8, dose, pre)  # our statistics: Å
    assert angstrom == pytest.approx((total * 0.8, early * 0.8, late * 0.8))


def test_accum_motion_boundary_frame_is_early() -> None:
    shifts = [(0.0, 0.0), (1.0, 0.0), (1.0, 2.0), (1.0, 5.0)]
    assert relion_accum_motion_px(shifts, 2.0) == (6.0, 1.0, 5.0)  # 2·2 = 4 ≤ 4: early
    assert relion_accum_motion_px(shifts, 1.0) == (6.0, 6.0, 0.0)  # 4·1 = 4: all early
    assert relion_accum_motion_px(shifts, 1.0, pre_exposure=2.5) == (6.0, 0.0, 6.0)


@pytest.mark.parametrize(
    "path",
    [
        REL / "FoilHole_8812_Data_8801_fractions_autopick.star",
        REL / "FoilHole_8900_Data_8801_fractions_autopick.star",
        REL / "FoilHole_1_autopick.star",
        REL / "FoilHole_2_manualpick.star",
        FIX / "cryolo" / "FoilHole_1.star",
    ],
    ids=lambda p: p.name,
)
def test_report_pick_centres_match_the_parser(path: Path) -> None:
    """The report draws picks with a pandas-free reader: the same centres as the parser."""
    from emotf.views.report import pick_centres

    expected = [(p.x, p.y) for p in relion.read_coordinates_star(path)]
    assert pick_centres(path) == expected
