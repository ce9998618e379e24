"""MotionCor3 backend (recording stand-in): a real EER movie + .gain, a super-resolution movie.

MotionCor3 needs a GPU: it is replaced at the process boundary by tests/fakes/fake_motioncor.py,
which checks the options as MotionCor3 reads them and counts the movie's EER frames.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import starfile
import tifffile

from emotf.config import build_config
from emotf.movies import probe_movie
from emotf.sim.eer import eer_metadata, write_eer, write_eer_gain
from emotf.steps.base import StepContext, start_output
from emotf.steps.motioncor_gpu import run_motioncor

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from fake_tools import install  # noqa: E402


def test_eer_with_gain_gets_ineer_fmintfile_and_gain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))
    session = tmp_path / "session"
    movie = session / "Images-Disc1/GridSquare_1/Data/FoilHole_1_Data_2_3_4_EER.eer"
    rng = np.random.default_rng(0)
    frames = [np.unique(rng.integers(0, 256 * 256, 300)) for _ in range(60)]
    write_eer(movie, frames, 256, eer_metadata(60, 256, 0.24, 0.02))
    write_eer_gain(session / "gain.gain", np.ones((256, 256), np.float32))
    info = probe_movie(movie)
    assert (info.format, info.n_frames) == ("eer", 60)
    work = tmp_path / "otf"
    work.mkdir()
    monkeypatch.chdir(work)
    config = build_config({
        "session_dir": str(session),
        "motioncor": {"backend": "motioncor3", "eer_grouping": 12},
        "acquisition": {"gain": "gain.gain"},
    })  # fmt: skip
    ctx = StepContext(batch="b000001", config=config, inputs={}, outputs={}, threads=1,
                      gpus=["0"])  # fmt: skip
    row = {"movie": f"Movies/{movie.name}", "source": str(movie), "format": "eer",
           "n_frames": 60, "pixel_size": 0.72, "voltage": 300.0,
           "dose_per_frame": 0.02}  # fmt: skip
    out = start_output(ctx, "motioncor", "motioncor3")
    run_motioncor(ctx, out, {"m": row})
    assert out.movies["m"]["ok"], out.movies["m"]
    (call,) = [
        c for c in map(json.loads, calls.read_text().splitlines()) if c["tool"] == "MotionCor3"
    ]
    argv = call["argv"]
    assert argv[argv.index("-InEer") + 1].endswith("movies/") and "-InTiff" not in argv
    assert argv[argv.index("-InSuffix") + 1] == ".eer"
    assert Path(argv[argv.index("-FmIntFile") + 1]).read_text().split() == ["60", "12", "0.02"]
    assert argv[argv.index("-Gain") + 1] == str(session / "gain.gain")
    assert len(out.movies["m"]["shifts"]) == 5  # 60 raw frames in groups of 12
    general = starfile.read(out.movies["m"]["motion_star"], always_dict=True)["general"]
    assert general["rlnMicrographDoseRate"] == pytest.approx(0.24)  # per aligned frame


def test_super_resolution_movie_gets_ftbin_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))
    movie = tmp_path / "raw" / "FoilHole_1_Data_2_3_4_fractions.tiff"
    movie.parent.mkdir(parents=True)
    tifffile.imwrite(movie, np.zeros((6, 32, 32), np.uint8), photometric="minisblack")
    work = tmp_path / "otf"
    work.mkdir()
    monkeypatch.chdir(work)
    config = build_config({"session_dir": str(tmp_path), "motioncor": {"backend": "motioncor3"}})
    ctx = StepContext(batch="b000001", config=config, inputs={}, outputs={}, threads=1,
                      gpus=["0"])  # fmt: skip
    row = {"movie": f"Movies/{movie.name}", "source": str(movie), "format": "tiff",
           "n_frames": 6, "pixel_size": 0.53, "voltage": 300.0, "dose_per_frame": 1.0,
           "super_resolution_factor": 2}  # fmt: skip
    out = start_output(ctx, "motioncor", "motioncor3")
    run_motioncor(ctx, out, {"m": row})
    assert out.movies["m"]["ok"], out.movies["m"]
    (call,) = [
        c for c in map(json.loads, calls.read_text().splitlines()) if c["tool"] == "MotionCor3"
    ]
    argv = call["argv"]
    assert argv[argv.index("-PixSize") + 1] == "0.53" and argv[argv.index("-FtBin") + 1] == "2"
    assert out.movies["m"]["binning"] == 2.0  # micrograph pixel 1.06 Å downstream
    general = starfile.read(out.movies["m"]["motion_star"], always_dict=True)["general"]
    assert general["rlnMicrographBinning"] == pytest.approx(2.0)
