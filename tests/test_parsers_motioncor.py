"""MotionCor2 1.4–1.6 / MotionCor3 outputs: stdout, both log naming schemes, .aln, garbage.

Fixtures follow the programs' writers (see tests/fixtures/README.md): logs ``%8.2f``,
``.aln`` ``%+8.3f``, stdout ``%9.3f``; no version banner in any run's stdout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from emotf.parsers import motioncor as mc
from emotf.records import ParseError

MC = Path(__file__).parent / "fixtures" / "motioncor"
SHIFTS_8812 = [  # stdout, %9.3f
    (0.0, 0.0),
    (-0.913, 0.442),
    (-1.687, 0.805),
    (-2.302, 1.123),
    (-2.783, 1.374),
    (-3.152, 1.556),
    (-3.447, 1.712),
    (-3.700, 1.834),
]
LOG_8812 = [(round(x, 2), round(y, 2)) for x, y in SHIFTS_8812]  # the same run's -Full.log


def test_stdout_1_4_frame_lines_exact() -> None:
    text = (MC / "mc2_1.4.1_stdout.txt").read_text()
    result = mc.parse_stdout(text, n_frames=8)
    assert result.shifts == SHIFTS_8812  # taken unchanged: MotionCor == RELION convention
    assert result.local == []
    assert mc.detect_version(text) is None  # a run's stdout has no banner


def test_stdout_1_6_table_after_exact_full_frame_alignment_line() -> None:
    text = (MC / "mc2_1.6.3_stdout.txt").read_text()
    assert "Full-frame alignment has been started." in text  # printed before, no section
    assert "Full-frame alignment shift" not in text and "MotionCor2 version" not in text
    (result,) = mc.parse_stdout_all(text)  # one section: the table, not the patch rows after
    assert result.shifts == [
        (0.0, 0.0), (0.41, -1.12), (0.771, -2.053), (1.085, -2.832), (1.33, -3.458),
        (1.518, -3.971),
    ]  # fmt: skip
    assert mc.detect_version(text) is None


def test_started_line_alone_starts_no_section() -> None:
    text = "Full-frame alignment has been started.\nIteration  1  Error:     5.412\n"
    with pytest.raises(ParseError, match="no 'Full-frame alignment' shift table"):
        mc.parse_stdout(text)


def test_stdout_1_6_table_stops_at_blank_line() -> None:
    text = (MC / "mc2_1.6_stdout.txt").read_text()
    assert mc.parse_stdout(text, n_frames=4).shifts == [
        (0.0, 0.0), (-1.2, 0.88), (-2.1, 1.55), (-2.75, 2.01)
    ]  # fmt: skip


def test_stdout_motioncor3_batch_has_one_section_per_movie() -> None:
    text = (MC / "mc3_batch_stdout.txt").read_text()
    first, second = mc.parse_stdout_all(text)
    assert first.shifts[-1] == (0.535, 1.463) and len(first.shifts) == 4
    assert second.shifts[1] == (-0.118, 0.089)
    assert mc.parse_stdout(text).shifts == first.shifts
    assert mc.detect_version(text) is None
    assert mc.detect_version("MotionCor3 version 1.2.1\nBuilt on May 14 2025\n") == "1.2.1"


def test_stdout_without_shifts_or_wrong_count() -> None:
    crashed = (MC / "mc2_1.6.3_crashed_stdout.txt").read_text()
    with pytest.raises(ParseError, match="Full-frame alignment"):
        mc.parse_stdout(crashed, source="motioncor.log")
    with pytest.raises(ParseError, match="expected 10"):
        mc.parse_stdout((MC / "mc2_1.4.1_stdout.txt").read_text(), n_frames=10)
    with pytest.raises(ParseError, match="at least 2"):
        mc.parse_stdout("Full-frame alignment shift\n...... Frame (  1) shift: 0.0 0.0\n")


def test_logfile_prefix_scheme_1_5_with_patches() -> None:
    logs = MC / "logfile_1.5"
    stem = "FoilHole_8812_Data_8801_fractions"
    files = mc.motion_log_files(logs, stem)
    assert files["full"].name == f"{stem}0-Patch-Full.log"
    assert files["patch"].name == f"{stem}0-Patch-Patch.log"
    result = mc.find_motion_result(logs, stem, n_frames=8)
    assert result.shifts == LOG_8812
    assert len(result.local) == 6
    assert result.local[1] == (2, 409.60, 409.60, -0.10, 0.05)  # first 5 of 6 columns
    assert result.local[5] == (3, 1228.80, 409.60, -0.12, 0.13)


def test_logfile_prefix_scheme_global_only() -> None:
    result = mc.find_motion_result(MC / "logfile_1.5", "FoilHole_8813_Data_8801_fractions")
    assert result.shifts == [(0.0, 0.0), (0.15, -0.22), (0.28, -0.41), (0.36, -0.55)]
    assert result.local == []


def test_logdir_scheme_1_6_and_mc3() -> None:
    result = mc.find_motion_result(MC / "logdir_1.6", "movie-000003", n_frames=6)
    assert result.shifts[1] == (0.41, -1.12) and result.shifts[-1] == (1.52, -3.97)
    assert len(result.local) == 12  # 2 patches x 6 frames, per patch
    assert result.local[:2] == [(1, 576.0, 409.6, 0.0, 0.0), (2, 576.0, 409.6, 0.03, -0.08)]
    assert result.local[6:8] == [(1, 1728.0, 409.6, 0.0, 0.0), (2, 1728.0, 409.6, 0.03, -0.09)]
    glob_only = mc.find_motion_result(MC / "logdir_1.6", "movie-000004")
    assert glob_only.shifts == [(0.0, 0.0), (-0.05, 0.33), (-0.09, 0.61)]


def test_logdir_names_keeping_the_movie_extension(tmp_path: Path) -> None:
    shutil.copy(
        MC / "logdir_1.6" / "movie-000004-Full.log", tmp_path / "movie-000004.tiff-Full.log"
    )
    assert len(mc.find_motion_result(tmp_path, "movie-000004").shifts) == 3


def test_motioncor3_aln_zero_based_frames_and_local_blocks() -> None:
    result = mc.find_motion_result(MC / "mc3_aln", "movie-000005", n_frames=5)
    assert result.shifts == [
        (0.0, 0.0), (0.352, -0.618), (0.661, -1.154), (0.903, -1.582), (1.088, -1.921)
    ]  # fmt: skip
    assert len(result.local) == 10
    assert result.local[0] == (1, 1440.0, 1023.0, 0.0, 0.0)  # .aln frame 0 → frame 1
    assert result.local[4] == (5, 1440.0, 1023.0, 0.066, -0.149)
    assert result.local[9] == (5, 4320.0, 1023.0, -0.040, -0.111)


def test_motioncor3_aln_of_a_full_frame_run_has_no_local_block() -> None:
    result = mc.parse_aln(MC / "mc3_aln" / "movie-000010.aln", n_frames=3)
    assert result.shifts == [(0.0, 0.0), (0.25, -0.5), (0.4, -0.9)] and result.local == []


def test_aln_found_in_separate_dir_and_log_preferred(tmp_path: Path) -> None:
    result = mc.find_motion_result(tmp_path, "movie-000005", aln_dir=MC / "mc3_aln")
    assert len(result.shifts) == 5
    shutil.copy(MC / "logdir_1.6" / "movie-000004-Full.log", tmp_path / "movie-000005-Full.log")
    both = mc.find_motion_result(tmp_path, "movie-000005", aln_dir=MC / "mc3_aln")
    assert len(both.shifts) == 3 and len(both.local) == 10  # global from log, local from .aln


def test_stdout_fallback_and_nothing_found(tmp_path: Path) -> None:
    text = (MC / "mc2_1.6.3_stdout.txt").read_text()
    assert len(mc.find_motion_result(tmp_path, "movie-000003", stdout=text).shifts) == 6
    with pytest.raises(ParseError, match="no MotionCor log for movie-999999"):
        mc.find_motion_result(MC / "logdir_1.6", "movie-999999")


@pytest.mark.parametrize(
    ("stem", "why"),
    [
        ("movie-000006", "-9999"),
        ("movie-000007", "nan"),
        ("movie-000008", "not consecutive"),
        ("movie-000009", "not a row of numbers"),
    ],
)
def test_garbage_is_rejected_naming_the_file(stem: str, why: str) -> None:
    with pytest.raises(ParseError, match=rf"{stem}-Full\.log.*{why}"):
        mc.find_motion_result(MC / "bad", stem)


def test_wrong_frame_count_names_the_file() -> None:
    with pytest.raises(ParseError, match=r"movie-000003-Patch-Full\.log: 6 frames.*expected 40"):
        mc.find_motion_result(MC / "logdir_1.6", "movie-000003", n_frames=40)


def test_malformed_aln_and_patch_log(tmp_path: Path) -> None:
    aln = tmp_path / "x.aln"
    aln.write_text("# Setting\nstackSize 10 10 3\n")
    with pytest.raises(ParseError, match=r"x\.aln: no globalShift"):
        mc.parse_aln(aln)
    patch = tmp_path / "y-Patch-Patch.log"
    patch.write_text("# header\n 1 100.0 100.0 0.0\n")
    with pytest.raises(ParseError, match=r"y-Patch-Patch\.log: 4 columns"):
        mc.parse_patch_log(patch)
    with pytest.raises(ParseError, match="cannot read"):
        mc.parse_full_log(tmp_path / "missing-Full.log")


def test_accumulated_motion_from_parsed_log() -> None:
    result = mc.find_motion_result(MC / "logdir_1.6", "movie-000004")
    total, early, late = result.accumulated_motion(pixel_size=1.0, dose_per_frame=2.0)
    step1 = (0.05**2 + 0.33**2) ** 0.5
    step2 = ((0.09 - 0.05) ** 2 + (0.61 - 0.33) ** 2) ** 0.5
    assert total == pytest.approx(step1 + step2)
    # RELION: the step into frame f is early when f * dose <= 4: frame 2 (4 e/Å²) yes, 3 no
    assert early == pytest.approx(step1) and late == pytest.approx(step2)
