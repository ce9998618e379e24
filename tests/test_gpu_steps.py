"""The MotionCor / CTFFIND / crYOLO step code against the stand-ins (tests/fakes/).

MotionCor3, CTFFIND and crYOLO need GPUs or licences, so the programs are replaced at the
process boundary by stand-ins that check their input as the real programs do and write what
they write (``tests/fakes/fake_*.py`` say from which source). The step code, the argv/stdin it
builds and the parsers that read the outputs are emotf's own, unmocked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import starfile
import tifffile

from emotf.config import build_config
from emotf.steps.base import StepContext, StepError, start_output
from emotf.steps.cryolo_exe import run_cryolo
from emotf.steps.ctffind_exe import run_ctffind
from emotf.steps.motioncor_gpu import run_motioncor

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from fake_tools import install  # noqa: E402


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins first on PATH, calls logged to the returned file, cwd = a processing folder."""
    install(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))
    work = tmp_path / "otf"
    work.mkdir()
    monkeypatch.chdir(work)
    return calls


def calls_of(log: Path, tool: str) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [c for c in map(json.loads, lines) if c["tool"] == tool]


def context(config: dict[str, Any], threads: int = 1) -> StepContext:
    values = {"session_dir": "/nonexistent", **config}
    return StepContext(batch="b000001", config=build_config(values), inputs={}, outputs={},
                       threads=threads, gpus=["0"])  # fmt: skip


def eer_movie(path: Path, frames: int) -> None:
    """An EER stand-in: a TIFF with one page per raw EER frame (what emotf.movies probes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.zeros((frames, 16, 16), dtype=np.uint8))


def mc_row(source: Path, fmt: str, n_frames: int, dose: float) -> dict[str, Any]:
    return {"movie": f"Movies/{source.name}", "source": str(source), "format": fmt,
            "n_frames": n_frames, "pixel_size": 0.72, "voltage": 300.0,
            "dose_per_frame": dose}  # fmt: skip


def test_eer_movies_get_fmint_file_and_grouped_frames(fakes: Path, tmp_path: Path) -> None:
    movie = tmp_path / "raw" / "FoilHole_1_EER.eer"
    eer_movie(movie, 320)
    ctx = context({"motioncor": {"backend": "motioncor3", "eer_grouping": 40}})
    out = start_output(ctx, "motioncor", "motioncor3")
    run_motioncor(ctx, out, {"m1": mc_row(movie, "eer", 320, 0.025)})
    assert out.movies["m1"]["ok"], out.movies["m1"]
    (call,) = calls_of(fakes, "MotionCor3")
    argv = call["argv"]
    assert argv[argv.index("-InEer") + 1].endswith("motioncor_work/movies/")
    fmint = Path(argv[argv.index("-FmIntFile") + 1])
    assert fmint.read_text().split() == ["320", "40", "0.025"]
    assert len(out.movies["m1"]["shifts"]) == 8  # 320 raw frames / 40 per group
    star = starfile.read(out.movies["m1"]["motion_star"], always_dict=True)
    assert star["general"]["rlnEERGrouping"] == 40
    assert star["general"]["rlnMicrographDoseRate"] == pytest.approx(1.0)  # per grouped frame
    assert Path(out.movies["m1"]["micrograph"]).name == "FoilHole_1_EER.mrc"  # RELION's names
    assert Path(out.movies["m1"]["micrograph_nodw"]).name == "FoilHole_1_EER_noDW.mrc"


def test_motioncor_patch_logs_are_read(fakes: Path, tmp_path: Path) -> None:
    movie = tmp_path / "raw" / "FoilHole_2_fractions.tiff"
    movie.parent.mkdir(parents=True)
    tifffile.imwrite(movie, np.zeros((6, 16, 16), dtype=np.uint8))
    for patches, files in (
        ([1, 1], {"-Full.log"}),
        ([3, 2], {"-Patch-Full.log", "-Patch-Patch.log", "-Patch-Frame.log"}),
    ):
        ctx = context({"motioncor": {"backend": "motioncor3", "patches": patches}})
        out = start_output(ctx, "motioncor", "motioncor3")
        run_motioncor(ctx, out, {"m": mc_row(movie, "tiff", 6, 1.0)})
        assert out.movies["m"]["ok"], out.movies["m"]
        logs = Path("MotionCorr/b000001/motioncor_work/log")
        assert {p.name.removeprefix("movie-000001") for p in logs.iterdir()} == files
        assert out.movies["m"]["shifts"][:2] == [[0.0, 0.0], [-0.5, 0.25]]
        star = starfile.read(out.movies["m"]["motion_star"], always_dict=True)
        assert ("local_shift" in star) == (patches != [1, 1])
        for p in logs.iterdir():
            p.unlink()


def ctf_ctx(config: dict[str, Any]) -> tuple[StepContext, dict[str, Any]]:
    mic = Path("mic.mrc").absolute()
    with mrcfile.new(mic, overwrite=True) as mrc:
        mrc.set_data(np.zeros((64, 64), dtype=np.float32))
    row = {"movie": "Movies/FoilHole_3_fractions.tiff", "micrograph_nodw": str(mic),
           "pixel_size": 1.0, "voltage": 300.0}  # fmt: skip
    return context(config, threads=2), row


@pytest.mark.parametrize("backend", ["ctffind4", "ctffind5"])
def test_ctffind_answers_follow_the_programs_questions(fakes: Path, backend: str) -> None:
    ctx, row = ctf_ctx({"ctffind": {"backend": backend}})
    out = start_output(ctx, "ctffind", backend)
    run_ctffind(ctx, out, {"m": row})
    assert out.movies["m"]["ok"], out.movies["m"]
    (call,) = calls_of(fakes, "ctffind5" if backend == "ctffind5" else "ctffind")
    assert call["exit"] == 0 and call["argv"] == ["-j", "2"]
    questions = [q for q, _ in call["asked"]]
    assert questions[-1] == "Do you want to set expert options?"
    assert ("Determine sample tilt?" in questions) == (backend == "ctffind5")
    assert out.movies["m"]["defocus_u"] == pytest.approx(8984.74)


def test_ctffind_configuration_checked_before_running(fakes: Path) -> None:
    ctx, row = ctf_ctx({"ctffind": {"backend": "ctffind4", "thickness": True}})
    with pytest.raises(StepError, match="CTFFIND5"):
        run_ctffind(ctx, start_output(ctx, "ctffind", "ctffind4"), {"m": row})
    ctx, row = ctf_ctx({"ctffind": {"backend": "ctffind5", "min_res": 60}})
    with pytest.raises(StepError, match="at most 50"):
        run_ctffind(ctx, start_output(ctx, "ctffind", "ctffind5"), {"m": row})
    assert not calls_of(fakes, "ctffind") and not calls_of(fakes, "ctffind5")


def cryolo_run(tmp_path: Path) -> tuple[Any, Path]:
    model = tmp_path / "gmodel.h5"
    model.write_bytes(b"weights")
    mic = Path("MotionCorr/b000001/Movies/FoilHole_4_fractions.mrc")
    mic.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(mic, overwrite=True) as mrc:
        mrc.set_data(np.zeros((64, 64), dtype=np.float32))
    ctx = context({"cryolo": {"backend": "cryolo", "model": str(model), "box_size": 40}})
    out = start_output(ctx, "cryolo", "cryolo")
    run_cryolo(ctx, out, {"m": {"micrograph": mic.as_posix()}})
    return out, Path("AutoPick/b000001/cryolo_work/out")


def test_cryolo_outputs_read(fakes: Path, tmp_path: Path) -> None:
    out, folder = cryolo_run(tmp_path)
    assert out.movies["m"] == {**out.movies["m"], "ok": True, "particles": 2}
    assert {p.name for p in folder.iterdir()} >= {"CBOX", "STAR", "EMAN", "DISTR"}


def test_cryolo_zero_pick_crash_is_zero_particles(
    fakes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CRYOLO_BOXES", "")  # nothing found: crYOLO's IndexError
    out, _ = cryolo_run(tmp_path)
    (call,) = calls_of(fakes, "cryolo_predict.py")
    assert call["exit"] == 1
    assert out.movies["m"]["ok"] and out.movies["m"]["particles"] == 0, out.movies["m"]
