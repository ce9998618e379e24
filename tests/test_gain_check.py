"""Gain sanity (issue 15 item 3) and failure reasons that name the cause (item 4).

Movies come from the realistic simulator (K3 and Falcon 4i structured gains with defects and
hot pixels); the RELION test runs the real relion_run_motioncorr (Debian package)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from emotf.sim import SimParams, simulate_session
from emotf.steps.base import error_tail
from emotf.steps.gain_check import check_after, check_before, relion_gain

FAST = {"n_frames": 10, "dose_per_frame": 3.0, "local_motion": 0.0, "realism": "realistic"}


def _session(root: Path, **kw: object) -> tuple[Path, Path]:
    params = SimParams(**{"size": 1024, **FAST, **kw})  # type: ignore[arg-type]
    simulate_session(root, params, 1)
    key = next(iter(json.loads((root / "ground_truth.json").read_text())["movies"]))
    return root / key, root / "gain.mrc"


@pytest.fixture(scope="module")
def k3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _session(tmp_path_factory.mktemp("k3"), detector="K3", format="tiff", seed=21)


@pytest.fixture(scope="module")
def falcon(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _session(tmp_path_factory.mktemp("fa"), detector="Falcon4i", format="mrc", seed=22)


def _save(path: Path, data: np.ndarray) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
    return path


def test_a_correct_gain_is_not_flagged(k3: tuple[Path, Path], falcon: tuple[Path, Path]) -> None:
    movie, gain = k3
    verdict = check_before(movie, gain, rot=0, flip=1, needs_gain=True)  # TIFF: RELION flips
    assert not verdict.suspect and verdict.evidence == ""
    assert verdict.residual is not None and verdict.residual < 6
    movie, gain = falcon
    assert not check_before(movie, gain, rot=0, flip=0, needs_gain=True).suspect


def test_a_missing_gain_is_flagged(k3: tuple[Path, Path]) -> None:
    verdict = check_before(k3[0], None, rot=0, flip=0, needs_gain=True)
    assert verdict.suspect and "no gain reference" in verdict.evidence
    assert verdict.fields()["gain_suspect"] is True


def test_a_gain_normalised_movie_without_gain_is_not_flagged(tmp_path: Path) -> None:
    movie, _gain = _session(tmp_path / "n", detector="K3", format="tiff", gain=False, seed=23)
    assert not check_before(movie, None, rot=0, flip=0, needs_gain=True).suspect


def test_a_flipped_gain_is_flagged_and_the_right_flip_named(k3: tuple[Path, Path]) -> None:
    verdict = check_before(k3[0], k3[1], rot=0, flip=0, needs_gain=True)
    assert verdict.suspect and "gain orientation" in verdict.evidence
    assert verdict.best == "gain_rot 0, gain_flip 1"


def test_a_rotated_gain_is_flagged(k3: tuple[Path, Path], tmp_path: Path) -> None:
    gain = mrcfile.read(k3[1])
    turned = _save(tmp_path / "turned.mrc", np.rot90(gain, 1))  # square: RELION would accept it
    verdict = check_before(k3[0], turned, rot=0, flip=1, needs_gain=True)
    assert verdict.suspect and verdict.best is not None and "gain_rot 1" in verdict.best
    # the configured rotation fixes it
    assert not check_before(k3[0], turned, rot=1, flip=1, needs_gain=True).suspect


def test_a_gain_of_another_detector_is_flagged(
    k3: tuple[Path, Path], falcon: tuple[Path, Path]
) -> None:
    verdict = check_before(k3[0], falcon[1], rot=0, flip=1, needs_gain=True)
    assert verdict.suspect and "does not fit this detector" in verdict.evidence


def test_a_gain_of_the_wrong_shape_names_the_orientation_that_fits(tmp_path: Path) -> None:
    movie, gain = _session(tmp_path / "r", detector="K3", format="tiff", size=512, size_y=384)
    turned = _save(tmp_path / "turned.mrc", np.rot90(mrcfile.read(gain), 1))
    verdict = check_before(movie, turned, rot=0, flip=1, needs_gain=True)
    assert verdict.suspect and verdict.residual is None
    assert "does not match the movie 512x384" in verdict.evidence
    assert "would fit" in verdict.evidence
    assert movie.name not in verdict.evidence


def test_relion_orientation_model() -> None:
    gain = np.arange(12.0).reshape(3, 4)
    assert relion_gain(gain, 0, 1).tolist() == gain[::-1].tolist()
    assert relion_gain(gain, 1, 0).tolist() == np.rot90(gain, -1).tolist()
    assert relion_gain(np.rot90(gain, 1), 1, 0).tolist() == gain.tolist()


def test_a_pinned_motion_trace_adds_evidence(k3: tuple[Path, Path]) -> None:
    verdict = check_before(k3[0], None, rot=0, flip=0, needs_gain=True)
    still = check_after(verdict, [[0.0, 0.0], [0.05, 0.0], [0.1, -0.05], [0.1, 0.0]])
    assert still.suspect and "pinned" in still.evidence
    fine = check_before(k3[0], k3[1], rot=0, flip=1, needs_gain=True)
    moving = check_after(fine, [[0.0, 0.0], [1.0, 0.5], [2.0, 1.0], [2.5, 1.5]])
    assert not moving.suspect


@pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="RELION not installed")
def test_relion_failure_reason_is_its_stderr_cause_without_file_names(tmp_path: Path) -> None:
    movie, gain = _session(tmp_path / "s", detector="K3", format="mrc", size=256, size_y=192)
    turned = _save(tmp_path / "turned.mrc", np.rot90(mrcfile.read(gain), 1))
    reasons = []
    for n, name in enumerate(("first_movie_Fractions.mrc", "second_movie_Fractions.mrc")):
        local = tmp_path / name
        shutil.copy(movie, local)
        star = tmp_path / f"movies{n}.star"
        star.write_text(
            "data_optics\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
            "_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n_rlnSphericalAberration #5\n"
            "_rlnAmplitudeContrast #6\nopticsGroup1 1 1.0 300 2.7 0.07\n\n"
            f"data_movies\nloop_\n_rlnMicrographMovieName #1\n_rlnOpticsGroup #2\n{name} 1\n"
        )
        proc = subprocess.run(
            ["relion_run_motioncorr", "--i", star.name, "--o", f"out{n}/", "--use_own",
             "--j", "1", "--angpix", "1", "--voltage", "300", "--dose_per_frame", "3",
             "--gainref", str(turned), "--gain_rot", "0", "--gain_flip", "0"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        reasons.append(error_tail(proc))
    assert "size of the gain reference do not match" in reasons[0], reasons[0]
    assert "first_movie" not in reasons[0] and "~~(" not in reasons[0]
    assert reasons[0] == reasons[1]  # one cause, one reason: grouped as "failed x2"
