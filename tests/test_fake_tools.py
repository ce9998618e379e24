"""The stand-ins refuse what the real programs refuse, and emotf's answers pass them.

``tests/fakes/`` replaces MotionCor3, CTFFIND4/5 and crYOLO (GPU/licensed programs). A
stand-in that accepts anything proves nothing, so these tests check that each one rejects
the input its real program rejects, and that every answer sequence emotf builds
(:func:`emotf.tools.ctffind.stdin_answers`) is accepted question by question.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from emotf.parsers.cryolo import read_cbox, read_cryolo_star, read_eman_box
from emotf.parsers.motioncor import parse_aln, parse_full_log
from emotf.tools import ctffind as cf
from emotf.tools import motioncor as mc

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import fake_ctffind  # noqa: E402
from fake_tools import install  # noqa: E402


@pytest.fixture
def mic(tmp_path: Path) -> Path:
    path = tmp_path / "mic.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((64, 64), dtype=np.float32))
    return path


def run(bin_dir: Path, name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FAKE_TOOLS_LOG": ""}
    return subprocess.run([str(bin_dir / name), *argv], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip


@pytest.mark.parametrize(
    "version, phase, tilt, thickness, restrain",
    [c for c in itertools.product((4, 5), (False, True), (False, True), (False, True),
                                  (False, True)) if c[0] == 5 or not (c[2] or c[3])],
)  # fmt: skip
def test_every_answer_sequence_matches_the_questions(
    mic: Path, version: int, phase: bool, tilt: bool, thickness: bool, restrain: bool
) -> None:
    p = cf.CtffindParams(pixel_size=1.0, voltage=300, restrain_astigmatism=restrain,
                         phase_shift=(0.0, 3.0, 0.1) if phase else None,
                         tilt=tilt and not phase, thickness=thickness)  # fmt: skip
    answers = cf.stdin_answers(mic, mic.with_suffix(".ctf"), p, version)
    asked: list[tuple[str, str]] = []
    code = fake_ctffind.main(version, [], cf.stdin_text(answers), asked)
    assert code == 0, asked
    assert len(asked) == len(answers)
    questions = dict(asked)
    assert questions["Pixel size"] == "1" and questions["Find additional phase shift?"][0] == (
        "y" if phase else "n"
    )
    if version == 5:
        assert ("Determine sample tilt?" in questions) == (not phase)  # CTFFIND5's condition
        assert questions["Determine samnple thickness?"][0] == ("y" if thickness else "n")


def answers(mic: Path, version: int = 5) -> list[str]:
    return cf.stdin_answers(mic, mic.with_suffix(".ctf"), cf.CtffindParams(1.0, 300), version)


def test_ctffind_refuses_what_ctffind_refuses(mic: Path, tmp_path: Path) -> None:
    good = answers(mic)
    cases = {
        "word for a number": [*good[:2], "one", *good[3:]],
        "missing input": [str(tmp_path / "nope.mrc"), *good[1:]],
        "min res above 50": [*good[:7], "60", *good[8:]],
        "blank answer": [*good[:5], "", *good[6:]],
        "one answer short": good[:-1],
        "one answer too many": [*good, "no"],
        "CTFFIND4 answers to CTFFIND5": answers(mic, 4),
    }
    for what, lines in cases.items():
        asked: list[tuple[str, str]] = []
        assert fake_ctffind.main(5, [], "\n".join(lines) + "\n", asked) != 0, what
    assert fake_ctffind.main(5, ["--omp-num-threads", "2"], "\n".join(good) + "\n") != 0
    assert fake_ctffind.main(5, ["-j", "2"], "\n".join(good) + "\n") == 0
    assert mic.with_suffix(".txt").is_file() and Path(f"{mic.with_suffix('')}_avrot.txt").is_file()


def test_motioncor3_refuses_and_names_logs_like_motioncor3(tmp_path: Path) -> None:
    install(tmp_path / "bin")
    movies, out, logs = tmp_path / "movies", tmp_path / "out", tmp_path / "log"
    for folder in (movies, out, logs):
        folder.mkdir()
    tifffile.imwrite(movies / "movie-000001.tiff", np.zeros((5, 16, 16), dtype=np.uint8))
    p = mc.MotionCorParams(pixel_size=1.0, voltage=300, dose_per_frame=1.0, patches=(5, 5))
    argv = mc.batch_argv("x", "motioncor3", "tiff", movies, ".tiff", out, logs, p)[1:]
    assert run(tmp_path / "bin", "MotionCor3", argv).returncode == 0
    assert sorted(f.name for f in logs.iterdir()) == [
        "movie-000001-Patch-Frame.log", "movie-000001-Patch-Full.log",
        "movie-000001-Patch-Patch.log"]  # fmt: skip
    assert sorted(f.name for f in out.iterdir()) == ["movie-000001.mrc", "movie-000001_DW.mrc"]
    aln = tmp_path / "aln"
    aln.mkdir()
    assert run(tmp_path / "bin", "MotionCor3", [*argv, "-OutAln", f"{aln}/"]).returncode == 0
    from_aln = parse_aln(aln / "movie-000001.aln", 5)  # emotf's parser reads what it wrote
    assert from_aln.shifts == parse_full_log(logs / "movie-000001-Patch-Full.log", 5).shifts
    one = movies / "movie-000001.tiff"  # MotionCor2 <= 1.5 style, with -LogFile:
    single = mc.single_argv("x", "tiff", one, out / "a.mrc", logs / "a", p)[1:]
    refused = {
        "-LogFile is not a MotionCor3 option": single,
        "unknown option": [*argv, "-NoSuchOption", "1"],
        "no input": argv[2:],
        "no movie with the suffix": [*argv[:4], ".mrc", *argv[5:]],
        "missing folder": [argv[0], str(tmp_path / "none") + "/", *argv[2:]],
    }
    for what, bad in refused.items():
        assert run(tmp_path / "bin", "MotionCor3", bad).returncode != 0, what


def test_cryolo_refuses_bad_options_and_inputs(tmp_path: Path) -> None:
    install(tmp_path / "bin")
    mics, config, model = tmp_path / "mics", tmp_path / "config.json", tmp_path / "m.h5"
    mics.mkdir()
    with mrcfile.new(mics / "mic-000001.mrc") as mrc:
        mrc.set_data(np.zeros((64, 64), dtype=np.float32))
    config.write_text(json.dumps({"model": {"architecture": "PhosaurusNet", "anchors": [40, 40]}}))
    model.write_bytes(b"w")
    base = ["-c", str(config), "-w", str(model), "-i", f"{mics}/", "-o", str(tmp_path / "o")]
    assert run(tmp_path / "bin", "cryolo_predict.py", [*base, "-t", "0.3"]).returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["CBOX", "DISTR", "EMAN", "STAR"]
    folder = tmp_path / "o"  # emotf's parsers read each file: the CBOX keeps all three boxes
    assert len(read_cbox(folder / "CBOX" / "mic-000001.cbox")) == 3
    star, eman = (
        read_cryolo_star(folder / "STAR" / "mic-000001.star"),
        read_eman_box(folder / "EMAN" / "mic-000001.box"),
    )
    assert [(p.x, p.y) for p in star] == [(p.x, p.y) for p in eman] == [(30.0, 40.0), (80.0, 40.0)]
    refused = {
        "unknown option": [*base, "--no-such"],
        "missing weights": [*base[:3], str(tmp_path / "none.h5"), *base[4:]],
        "no micrograph": [*base[:5], str(tmp_path), *base[6:]],
        "no -o": base[:-2],
        "not a crYOLO config": ["-c", str(model), *base[2:]],
    }
    for what, bad in refused.items():
        assert run(tmp_path / "bin", "cryolo_predict.py", bad).returncode != 0, what
