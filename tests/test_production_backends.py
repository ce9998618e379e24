"""The MotionCor3 / CTFFIND5 / crYOLO code paths, run end to end through Snakemake.

These programs need GPUs or licences, so they are replaced at the process boundary by
``tests/fakes/fake_tools.py``, which records the exact argv/stdin emotf passes, refuses what the
real programs refuse (unknown options, CTFFIND answers out of step with its questions) and
writes the files the real programs write for the options given. Everything on emotf's side
is real.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import starfile

from emotf.cli import run_session
from emotf.session.otf import OtfOptions
from emotf.session.progress import ProgressReader
from emotf.sim import SimParams, simulate_session

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
from fake_tools import install as install_fakes  # noqa: E402


@pytest.mark.slow
def test_gpu_backends_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))
    monkeypatch.setenv("EMOTF_GPUS", "0,1")  # two fake local GPUs (no NVML here)
    monkeypatch.setenv("EMOTF_GPU_LOCK_DIR", str(tmp_path / "locks"))
    session = tmp_path / "session"
    simulate_session(session, SimParams(size=256, n_frames=8, seed=2), n_movies=3)
    model = tmp_path / "gmodel_phosnet.h5"
    model.write_bytes(b"weights")
    config = {
        "batches": {"size": 3, "settle_seconds": 0},
        "acquisition": {"gain": "gain.mrc", "gain_flip": 1},
        "motioncor": {"backend": "motioncor3", "patches": [5, 5]},
        "ctffind": {"backend": "ctffind5", "thickness": True},
        "cryolo": {"backend": "cryolo", "model": str(model), "threshold": 0.3},
    }
    out = tmp_path / "otf"
    status = run_session(session, out, config, OtfOptions(once=True, poll_interval=1), quiet=True)
    assert status.counts["done"] == 3, status.failures
    records = {r["key"]: r for r in ProgressReader(out).results()}
    for r in records.values():
        assert r["shifts"][:2] == [[0.0, 0.0], [-0.5, 0.25]]
        # 8 frames: 7 steps of |(-0.5, 0.25)| px at 1 Å/px
        assert r["motion_total"] == pytest.approx(7 * 0.5590, abs=1e-3)
        assert r["defocus_u"] == pytest.approx(8984.74, abs=0.01)
        assert r["thickness"] == pytest.approx(1619.77, abs=0.01)
        assert r["particles"] == 2  # confidence 0.9 and 0.5 pass 0.3; 0.1 does not
    log = [json.loads(line) for line in calls.read_text().splitlines()]
    mc = [c for c in log if c["tool"] == "MotionCor3"]
    assert len(mc) == 1  # one program start for the whole batch
    argv = mc[0]["argv"]
    for flag, value in (
        ("-Serial", "1"),
        ("-Gpu", "0"),
        ("-FmDose", "1.5"),
        ("-FlipGain", "1"),
        ("-InSuffix", ".tiff"),
        ("-PixSize", "1"),
        ("-kV", "300"),
    ):
        assert argv[argv.index(flag) + 1] == value, flag
    assert argv[argv.index("-Patch") + 1 : argv.index("-Patch") + 3] == ["5", "5"]
    assert argv[argv.index("-Gain") + 1] == str(session / "gain.mrc")
    assert mc[0]["exit"] == 0
    # -Patch 5 5: MotionCor3 writes -Patch-Full.log / -Patch-Patch.log, and emotf read both
    star = starfile.read(out / records[next(iter(records))]["motion_star"], always_dict=True)
    assert len(star["local_shift"]) == 25 * 8  # 5 x 5 patches x 8 frames
    assert mc[0]["cuda"] in {"0", "1"}  # a distinct local device, shown to the tool as GPU 0
    ctf = [c for c in log if c["tool"] == "ctffind5"]
    assert len(ctf) == 3
    asked = dict(ctf[0]["asked"])  # the stand-in's questions, in CTFFIND 5.0.2's order
    assert all(c["exit"] == 0 for c in ctf), [c["stdin"] for c in ctf if c["exit"]]
    assert asked["Pixel size"] == "1" and asked["Acceleration voltage"] == "300"
    assert asked["Determine samnple thickness?"] == "yes" and asked["Use 2D refinement?"] == "yes"
    assert asked["Do you want to set expert options?"] == "no"
    assert ctf[0]["cuda"] is None  # CPU program: no GPU allocated
    cy = [c for c in log if c["tool"] == "cryolo_predict.py"]
    assert len(cy) == 1
    cargv = cy[0]["argv"]
    assert cargv[cargv.index("-w") + 1] == str(model) and cargv[cargv.index("-g") + 1] == "0"
    assert cargv[cargv.index("-t") + 1] == "0.3"
    table = starfile.read(out / "micrographs_ctf.star", always_dict=True)["micrographs"]
    assert len(table) == 3 and (table["rlnDefocusU"] > 8984).all()
    assert Path(out / records[next(iter(records))]["motion_star"]).is_file()


@pytest.mark.slow
def test_concurrent_gpu_jobs_get_distinct_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fakes(tmp_path / "bin")
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_LOG", str(calls))
    # each MotionCor3 run waits (at most 60 s) until both have started: only runs that
    # overlap in time see each other (peers == 2); sequential runs would each see 1
    monkeypatch.setenv("FAKE_TOOLS_MEET", f"{tmp_path / 'meet'}:2")
    monkeypatch.setenv("EMOTF_GPUS", "0,1")  # two fake GPUs, no NVML: the lock allocator
    monkeypatch.setenv("EMOTF_GPU_LOCK_DIR", str(tmp_path / "locks"))
    session = tmp_path / "session"
    simulate_session(session, SimParams(size=256, n_frames=8, gain=False, seed=3), n_movies=2)
    config = {
        "batches": {"size": 1, "settle_seconds": 0},
        "motioncor": {"backend": "motioncor3"},
        "ctffind": {"backend": "ctffind5"},
    }
    options = OtfOptions(once=True, poll_interval=1, snakemake_args=["--cores", "4"])
    status = run_session(session, tmp_path / "otf", config, options, quiet=True)
    assert status.counts["done"] == 2, status.failures
    runs = [json.loads(line) for line in calls.read_text().splitlines()]
    mc = [c for c in runs if c["tool"] == "MotionCor3"]
    assert len(mc) == 2
    assert [c["peers"] for c in mc] == [2, 2]  # the two batches' jobs ran at the same time
    assert {mc[0]["cuda"], mc[1]["cuda"]} == {"0", "1"}  # ... on different GPUs
