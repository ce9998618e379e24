"""Faults of the data and of Snakemake, through a real ``emotf run`` (no EMhub needed).

* Bad movies (corrupt header, truncated, empty, growing for 20 s, wrong extension, symlink
  loop, unreadable) each end failed with a reason or wait until complete; good movies are
  not affected and the raw folder is left exactly as it was.
* ``kill -9`` of Snakemake (its whole process group) in the middle of a batch: the
  incomplete outputs are redone and every movie ends done.

As root, ``emotf run`` is started without the DAC-override capabilities (``setpriv``) so
that file permissions apply to it as to a facility's service account.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mrcfile
import pytest
from workerproc import (
    LOG_DIAMETERS,
    NEEDS_RELION,
    PARAMS,
    as_user_prefix,
    manifest_keys,
    result_records,
    star_duplicates,
    tree_snapshot,
    wait_for,
)

from emotf.runner import live_snakemake
from emotf.sim import SimParams
from emotf.sim.session import SessionSimulator

pytestmark = [pytest.mark.slow, NEEDS_RELION]


def emotf_run(raw: Path, out: Path, *options: str, log: Path) -> subprocess.Popen[bytes]:
    config = out.parent / f"{out.name}.yaml"
    config.write_text(json.dumps({"cryolo": LOG_DIAMETERS}))
    argv = [sys.executable, "-m", "emotf", "-v", "run", str(raw), "--out", str(out),
            "--config", str(config), *options]  # fmt: skip
    with open(log, "ab") as handle:
        return subprocess.Popen(
            as_user_prefix() + argv, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def data_dir(raw: Path, square: int = 1000) -> Path:
    folder = raw / "Images-Disc1" / f"GridSquare_{square}" / "Data"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_bad_movies_fail_alone_with_reasons(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    sim = SessionSimulator(raw, SimParams(**{**PARAMS.__dict__, "seed": 31}))
    good = [sim.movie("good") for _ in range(2)]
    expected = {
        sim.movie("corrupt"): r"corrupt or truncated TIFF",
        sim.movie("truncated"): r"corrupt or truncated TIFF|frames but its EPU XML",
    }
    unreadable = sim.movie("good")
    os.chmod(raw / unreadable, 0)
    expected[unreadable] = r"cannot read movie: Permission denied"
    folder = data_dir(raw)
    (folder / "FoilHole_1_Data_2_0_20260101_090000_fractions.tiff").write_bytes(b"")
    expected[
        "Images-Disc1/GridSquare_1000/Data/FoilHole_1_Data_2_0_20260101_090000_fractions.tiff"
    ] = (  # noqa: E501
        r"empty movie file"
    )
    # a TIFF movie saved with an MRC name: the MRC reader rejects its header
    wrong = folder / "FoilHole_3_Data_4_0_20260101_090000_fractions.mrc"
    wrong.write_bytes((raw / good[0]).read_bytes())
    expected[wrong.relative_to(raw).as_posix()] = r"corrupt MRC header"
    loop = folder / "FoilHole_5_Data_6_0_20260101_090000_fractions.tiff"
    os.symlink(loop.name, loop)  # points to itself
    expected[loop.relative_to(raw).as_posix()] = r"symbolic links"
    # files that are not movies are ignored, not counted
    (folder / "FoilHole_7_Data_8_0_20260101_090000.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "notes.txt").write_text("operator notes")
    (folder / "FoilHole_9_fractions.tiff.part").write_bytes(b"II*\x00")

    growing: dict[str, float] = {}

    def write_growing() -> None:  # 20 chunks over 20 s, then complete
        growing["key"] = sim.movie("good", chunks=20, seconds=20.0)
        growing["complete"] = time.time()

    proc = emotf_run(raw, out, "--settle", "3", "--batch-size", "3", "--tail-seconds", "4",
                     "--idle-timeout", "20", "--poll", "1", log=tmp_path / "run.log")  # fmt: skip
    writer = threading.Thread(target=write_growing)
    writer.start()
    try:
        writer.join()
        before = tree_snapshot(raw)
        assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    records = result_records(out)
    n_expected = len(good) + 1 + len(expected)
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == n_expected  # the .jpg/.txt/.part files are ignored
    assert set(records) == set(keys)
    for key, pattern in expected.items():
        assert records[key]["state"] == "failed", (key, records[key])
        assert re.search(pattern, records[key]["reason"]), (key, records[key]["reason"])
    for key in [*good, growing["key"]]:
        assert records[key]["state"] == "done", (key, records[key])
    # the growing movie was batched only once complete, at its final size
    manifests = [json.loads(p.read_text()) for p in sorted((out / "batches").glob("b*.json"))]
    entry = next(m for b in manifests for m in b["movies"] if m["key"] == growing["key"])
    assert entry["size"] == (raw / growing["key"]).stat().st_size
    assert entry["stable"] >= growing["complete"]
    assert all(v == 0 for v in star_duplicates(out).values())
    assert tree_snapshot(raw) == before  # nothing in the raw folder was modified or deleted


def test_snakemake_killed_mid_batch_outputs_are_redone(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    sim = SessionSimulator(raw, SimParams(**{**PARAMS.__dict__, "seed": 32}))
    keys = [sim.movie("good") for _ in range(6)]
    before = tree_snapshot(raw)
    proc = emotf_run(raw, out, "--once", "--settle", "0", "--batch-size", "3", "--poll", "0.5",
                     log=tmp_path / "run.log")  # fmt: skip
    batch_dir = out / "MotionCorr" / "b000001"
    try:
        # mid-batch: motion correction of the first batch has started, not finished
        def mid_batch() -> bool:
            started = batch_dir.is_dir() and not (batch_dir / "motioncor.json").exists()
            return started and bool(live_snakemake(out))

        wait_for(mid_batch, 300, "motioncor of b000001 running", step=0.1)
        pids = live_snakemake(out)
        main = min(pids, key=lambda pid: _start_time(pid))
        killed_at = time.time()
        os.killpg(os.getpgid(main), signal.SIGKILL)
        assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    records = result_records(out)
    assert sorted(records) == sorted(keys) == sorted(manifest_keys(out))
    assert all(r["state"] == "done" for r in records.values()), records
    # the interrupted step was run again after the kill, and its outputs are whole
    assert (batch_dir / "motioncor.json").stat().st_mtime > killed_at
    for record in json.loads((batch_dir / "motioncor.json").read_text())["movies"].values():
        with mrcfile.open(out / record["micrograph"], permissive=False) as mrc:
            assert mrc.data.shape == (PARAMS.size, PARAMS.size)
    assert len(list((out / "logs" / "snakemake").glob("*.log"))) >= 2  # a second invocation
    assert not any((out / ".snakemake" / "incomplete").rglob("*"))
    assert all(v == 0 for v in star_duplicates(out).values())
    assert tree_snapshot(raw) == before


def _start_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return float("inf")
