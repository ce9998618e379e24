"""Faults of the data and of Snakemake, through a real ``emotf run`` (no EMhub needed).

* Bad movies (corrupt header, truncated, empty, growing for 20 s, wrong extension,
  unreadable) each end failed with a reason or wait until complete, a symlinked movie is
  refused unbatched; good movies are not affected and the raw folder is left exactly as it
  was before the run started (plus the growing movie the test itself wrote).
* ``kill -9`` of Snakemake (its whole process group) in the middle of a batch: the
  incomplete outputs are redone and every movie ends done.

As root, ``emotf run`` is started without the DAC-override capabilities (``setpriv``) so
that file permissions apply to it as to a facility's service account.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mrcfile
import psutil
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

from emotf.epu import movie_xml_path
from emotf.session.runner import live_snakemake
from emotf.sim import SimParams
from emotf.sim.epu_writer import write_growing
from emotf.sim.session import SessionSimulator

pytestmark = [pytest.mark.slow, NEEDS_RELION]
Snapshot = dict[str, tuple[int, int, int, str]]


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


def assert_raw_unchanged(raw: Path, before: Snapshot, added: dict[str, str]) -> None:
    """``raw`` is exactly ``before`` (taken before anything started) plus the files the test
    itself wrote while the run went on (``added``: path -> sha256 of what it wrote). Only the
    folders that received those files may have a new mtime/size; nothing else changed."""
    after = tree_snapshot(raw)
    parents = {p.as_posix() for rel in added for p in Path(rel).parents if p != Path(".")}
    assert set(after) - set(before) == set(added) | (parents - set(before))
    assert set(before) <= set(after), sorted(set(before) - set(after))  # nothing deleted
    for rel, entry in before.items():
        if rel in parents:
            assert after[rel][0] == entry[0], rel  # a folder we added to: same mode
        else:
            assert after[rel] == entry, rel
    assert {rel: after[rel][3] for rel in added} == added


def assert_no_star_duplicates(out: Path) -> None:
    duplicates = star_duplicates(out)
    assert duplicates, "no session STAR file with micrograph/movie rows was written"
    assert all(v == 0 for v in duplicates.values()), duplicates


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
    os.symlink(loop.name, loop)  # points to itself: refused by the feeder, never batched
    # files that are not movies are ignored, not counted
    (folder / "FoilHole_7_Data_8_0_20260101_090000.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "notes.txt").write_text("operator notes")
    (folder / "FoilHole_9_fractions.tiff.part").write_bytes(b"II*\x00")

    # the growing movie (and its XML) is made in a staging folder first, so that everything
    # the raw folder will hold is known before emotf starts
    stage = SessionSimulator(tmp_path / "stage", SimParams(**{**PARAMS.__dict__, "seed": 33}))
    stage.count = sim.count + 1000  # names that do not collide with the raw session's
    grow_key = stage.movie("good")
    grow_xml = movie_xml_path(Path(grow_key)).as_posix()
    grow_data = (stage.root / grow_key).read_bytes()
    added = {rel: hashlib.sha256((stage.root / rel).read_bytes()).hexdigest()
             for rel in (grow_key, grow_xml)}  # fmt: skip
    before = tree_snapshot(raw)  # before anything starts
    growing: dict[str, float] = {}

    def write_growing_movie() -> None:  # its XML, then the movie in 20 chunks over 20 s
        (raw / grow_xml).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stage.root / grow_xml, raw / grow_xml)
        write_growing(raw / grow_key, grow_data, chunks=20, seconds=20.0)
        growing["complete"] = time.time()

    # idle timeout (no movie seen or completed for this long) well above the 20 s during
    # which the growing movie is seen but not complete, so the run cannot stop before it
    proc = emotf_run(raw, out, "--settle", "3", "--batch-size", "3", "--tail-seconds", "4",
                     "--idle-timeout", "40", "--poll", "1", log=tmp_path / "run.log")  # fmt: skip
    writer = threading.Thread(target=write_growing_movie)
    writer.start()
    try:
        writer.join()
        assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    records = result_records(out)
    n_expected = len(good) + 1 + len(expected)
    keys = manifest_keys(out)
    assert len(keys) == len(set(keys)) == n_expected  # the .jpg/.txt/.part files are ignored
    assert loop.relative_to(raw).as_posix() not in keys  # a symlinked movie is never batched
    log = (tmp_path / "run.log").read_text()
    assert f"movie {loop} refused, not processed: is a symbolic link" in log
    assert set(records) == set(keys)
    for key, pattern in expected.items():
        assert records[key]["state"] == "failed", (key, records[key])
        assert re.search(pattern, records[key]["reason"]), (key, records[key]["reason"])
    for key in [*good, grow_key]:
        assert records[key]["state"] == "done", (key, records[key])
    # the growing movie was batched only once complete, at its final size
    manifests = [json.loads(p.read_text()) for p in sorted((out / "batches").glob("b*.json"))]
    entry = next(m for b in manifests for m in b["movies"] if m["key"] == grow_key)
    assert entry["size"] == len(grow_data)
    assert entry["stable"] >= growing["complete"]
    assert_no_star_duplicates(out)
    assert_raw_unchanged(raw, before, added)  # nothing in the raw folder modified or deleted


def test_snakemake_killed_mid_batch_outputs_are_redone(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    sim = SessionSimulator(raw, SimParams(**{**PARAMS.__dict__, "seed": 32}))
    keys = [sim.movie("good") for _ in range(6)]
    before = tree_snapshot(raw)
    proc = emotf_run(raw, out, "--once", "--settle", "0", "--batch-size", "3", "--poll", "0.5",
                     log=tmp_path / "run.log")  # fmt: skip
    batch_dir = out / "MotionCorr" / "b000001"
    try:
        # mid-batch: motion correction of the first batch has started, not finished, and
        # the Snakemake run that has b000001 as its target is found by its command line
        run: dict[str, int] = {}

        def mid_batch() -> bool:
            started = batch_dir.is_dir() and not (batch_dir / "motioncor.json").exists()
            pid = snakemake_run_of(out, "Results/b000001.json")
            if pid is not None:
                run["pid"] = pid
            return started and pid is not None

        wait_for(mid_batch, 300, "motioncor of b000001 running", step=0.1)
        killed_at = time.time()
        os.killpg(os.getpgid(run["pid"]), signal.SIGKILL)
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
    assert_no_star_duplicates(out)
    assert_raw_unchanged(raw, before, {})


def snakemake_run_of(out: Path, target: str) -> int | None:
    """The top Snakemake process (its parent is no Snakemake) of the run that has ``target``
    on its command line, or None."""
    pids = set(live_snakemake(out))
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if target in proc.cmdline() and proc.ppid() not in pids:
                return pid
        except psutil.Error:
            continue
    return None
