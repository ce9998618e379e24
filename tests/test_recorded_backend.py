"""The benchmark-only ``recorded`` backend replays a real run's results with real files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from emotf.config import ConfigError, build_config
from emotf.fsutil import atomic_write_json
from emotf.parsers.ctffind import read_ctffind_txt
from emotf.parsers.relion import read_coordinates_star, read_motion_star
from emotf.steps import ctf, motioncor, picking, recorded
from emotf.steps.base import StepContext, StepError, StepOutput

FIX = Path(__file__).resolve().parent / "fixtures"
MOTION_STAR = FIX / "relion" / "FoilHole_8812_Data_8801_fractions.star"
COORDS_STAR = FIX / "relion" / "FoilHole_8812_Data_8801_fractions_autopick.star"
CTF_TXT = FIX / "ctffind" / "FoilHole_8812_single.txt"
CTF_AVROT = FIX / "ctffind" / "FoilHole_8812_single_avrot.txt"


def make_recording(root: Path) -> Path:
    """A finished 'real run' folder: one done movie with every file its record names."""
    stem = "MotionCorr/b000001/Movies/GridSquare_3/Data/FoilHole_8812_Data_8801_fractions"
    ctf_stem = "CtfFind/b000001/Movies/GridSquare_3/Data/FoilHole_8812_Data_8801_fractions"
    coords = "AutoPick/b000001/" + stem.split("/", 2)[2] + "_autopick.star"
    files = {
        f"{stem}.mrc": b"micrograph",
        f"{stem}_noDW.mrc": b"micrograph nodw",
        f"{stem}.star": MOTION_STAR.read_bytes(),
        f"{ctf_stem}.txt": CTF_TXT.read_bytes(),
        f"{ctf_stem}_avrot.txt": CTF_AVROT.read_bytes(),
        f"{ctf_stem}.ctf": b"diagnostic",
        coords: COORDS_STAR.read_bytes(),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    record = {
        "key": "GridSquare_3/Data/FoilHole_8812_Data_8801_fractions.tiff",
        "state": "done",
        "micrograph": f"{stem}.mrc",
        "micrograph_nodw": f"{stem}_noDW.mrc",
        "motion_star": f"{stem}.star",
        "ctf_txt": f"{ctf_stem}.txt",
        "coordinates": coords,
    }
    failed = {"key": "x", "state": "failed", "failed_step": "import", "reason": "corrupt"}
    atomic_write_json(root / "Results" / "b000001.json", {"movies": [failed, record]})
    return root


def config(recording: Path | None) -> dict:
    values: dict = {
        "session_dir": "/raw",
        "motioncor": {"backend": "recorded"},
        "ctffind": {"backend": "recorded"},
        "cryolo": {"backend": "recorded"},
    }
    if recording is not None:
        values["recorded"] = {"folder": str(recording)}
    return build_config(values)


def import_output(keys: list[str]) -> StepOutput:
    out = StepOutput("b000007", "import", "emotf", 1.0)
    for key in keys:
        out.succeed(key, movie=f"Movies/{key}", pixel_size=0.83, voltage=300.0, dose_per_frame=1.25)
    return out


def test_schema_accepts_recorded_only_as_an_option() -> None:
    plain = build_config({"session_dir": "/raw"})
    assert "recorded" not in plain  # no default: real configurations stay unchanged
    assert config(Path("/rec"))["recorded"] == {"folder": "/rec"}
    with pytest.raises(ConfigError):
        build_config({"session_dir": "/raw", "recorded": {"unknown": 1}})


def test_three_steps_replay_files_and_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = make_recording(tmp_path / "recording")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    keys = [f"Images-Disc1/GridSquare_{i}/Data/FoilHole_{i}_fractions.tiff" for i in range(3)]
    import_output(keys).write(work / "import.json")
    cfg = config(rec)

    def ctx(outputs: dict[str, str]) -> StepContext:
        inputs = {"import_json": work / "import.json", "motioncor_json": work / "mc.json"}
        return StepContext("b000007", cfg, inputs, {k: work / v for k, v in outputs.items()})

    mc = motioncor.run(ctx({"json": "mc.json", "star": "mc.star"}))
    fit = ctf.run(ctx({"json": "ctf.json", "star": "ctf.star"}))
    picks = picking.run(ctx({"json": "pick.json", "star": "pick.star"}))
    assert set(mc.ok()) == set(fit.ok()) == set(picks.ok()) == set(keys)

    shifts, _ = read_motion_star(MOTION_STAR)
    expected_ctf = read_ctffind_txt(CTF_TXT)[0]
    n_picks = len(read_coordinates_star(COORDS_STAR))
    for key in keys:
        stem = Path("MotionCorr/b000007/Movies") / key
        stem = stem.with_suffix("")
        for suffix in (".mrc", "_noDW.mrc", ".star"):
            assert Path(f"{stem}{suffix}").is_file()
        assert mc.movies[key]["micrograph"] == f"{stem}.mrc"
        assert len(mc.movies[key]["shifts"]) == len(shifts.shifts)
        ctf_stem = ctf.out_stem("b000007", {"movie": f"Movies/{key}"})
        for suffix in (".txt", "_avrot.txt", ".ctf"):
            assert Path(f"{ctf_stem}{suffix}").is_file()
        assert fit.movies[key]["defocus_u"] == round(expected_ctf.defocus_u, 2)
        coords = picking.coordinates_path("b000007", f"{stem}.mrc")
        assert coords.is_file() and picks.movies[key]["particles"] == n_picks
    # images are hard links to the recording (no copy of the data), text files are real files
    mic = Path(mc.movies[keys[0]]["micrograph"])
    assert os.path.samefile(mic, rec / "MotionCorr/b000001/Movies/GridSquare_3/Data/"
                            "FoilHole_8812_Data_8801_fractions.mrc")  # fmt: skip
    for star in ("mc.star", "ctf.star", "pick.star"):
        assert (work / star).is_file()


def test_replay_is_stable_per_movie_and_cycles(tmp_path: Path) -> None:
    rec = make_recording(tmp_path / "recording")
    first = recorded.recording(config(rec))[1][0]
    atomic_write_json(rec / "Results" / "b000002.json", {"movies": [dict(first, key="zz")]})
    recorded._load.cache_clear()
    cfg = config(rec)
    keys = [f"movie{i}" for i in range(20)]
    picked = {k: recorded.recorded_movie(cfg, k)[1]["key"] for k in keys}
    assert picked == {k: recorded.recorded_movie(cfg, k)[1]["key"] for k in keys}
    assert set(picked.values()) == {first["key"], "zz"}  # both recordings are used


def test_missing_or_empty_recording_is_a_step_error(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="recorded.folder"):
        recorded.recording(config(None))
    (tmp_path / "Results").mkdir()
    with pytest.raises(StepError, match="no finished movie"):
        recorded.recording(config(tmp_path))
    shutil.rmtree(tmp_path / "Results")
