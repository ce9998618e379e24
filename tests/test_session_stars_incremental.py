"""Session STAR files kept up to date batch by batch equal a full rebuild of the same folder.

Folders are synthesised in the real formats: batch manifests (emotf.batches), full results
and summaries as ``batch_results`` writes them (emotf.steps.results) and per-batch particle
STAR files as ``relion_preprocess --extract`` writes them (``# version 30001`` header, space
separated, as in a RELION 4 run). The reference is :func:`write_session_stars_full`, run
on a copy of the folder; tables are compared after reading both with RELION's reader
stand-in ``read_star`` (floats within the reference's ``%.6f`` precision).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emotf.config import build_config, write_config
from emotf.fsutil import atomic_write_json
from emotf.outputs import main as outputs_main
from emotf.outputs import write_session_stars, write_session_stars_full
from emotf.parsers.relion import read_star
from emotf.session.batches import MovieEntry, write_manifest
from emotf.session.retry import retry_failed
from emotf.steps.results import summary_text
from emotf.views.journal import PAUSE

FILES = (
    "movies.star",
    "micrographs.star",
    "micrographs_ctf.star",
    "autopick.star",
    "particles.star",
    "micrographs_accepted.star",
)
STEPS = ("import", "motioncor", "ctffind", "picking", "extract")
CONFIG: dict[str, Any] = build_config(
    {
        "session_dir": "/raw",
        "acquisition": {"cs": 2.7, "amplitude_contrast": 0.07},
        "motioncor": {"bin_factor": 2},
        "curation": {"max_ctf_resolution": 6.0},
    }
)


def key_of(batch: int, i: int) -> str:
    return f"Images-Disc1/GridSquare_{batch}/Data/FoilHole_{i}_Data_1_{batch}_fractions.tiff"


def record(
    key: str, batch: int, i: int, fail: str | None = None, pixel: float = 0.83
) -> dict[str, Any]:
    """A full record as ``batch_results`` merges it; ``fail``: the step it failed at."""
    steps = dict.fromkeys(STEPS, True)
    if fail is not None:  # extraction needs CTF and picks: not run
        steps.update({fail: False})
        del steps["extract"]
    stem = f"b{batch:06d}/{Path(key).with_suffix('')}"
    rec: dict[str, Any] = {
        "key": key,
        "state": "failed" if fail else "done",
        "found": 1.7e9 + i,
        "times": dict.fromkeys(steps, 1.7e9 + i + 5),
        "steps": steps,
        "notes": {},
        "movie": f"Movies/{key}",
        "pixel_size": pixel,
        "voltage": 300.0,
        "micrograph": f"MotionCorr/{stem}.mrc",
        "motion_star": f"MotionCorr/{stem}.star",
        "accum_motion_total_px": 10.123456789 + i / 7,
        "accum_motion_early_px": 6.5,
        "accum_motion_late_px": 3.623456789 + i / 7,
        "ctf_image": f"CtfFind/{stem}.ctf:mrc",
        "defocus_u": 15000.0 + 37.25 * i,
        "defocus_v": 14500.0 + 37.25 * i,
        "astigmatism": 500.0,
        "defocus_angle": -12.5 + i,
        "ctf_score": 0.2547812345,
        "ctf_resolution": 4.0 + (i % 4) * 0.9,  # every 4th movie above the 6 Å limit
        "coordinates": f"AutoPick/{stem}_autopick.star",
        "particles": 3,
    }
    if fail:
        rec.update(failed_step=fail, reason=f"{fail} failed for {key}")
    return rec


def entry(key: str) -> MovieEntry:
    return MovieEntry(key=key, path=f"/raw/{key}", size=10, mtime=1.0, found=5.0, stable=6.0)


def particles_star(out: Path, batch: int, records: list[dict[str, Any]]) -> None:
    """``Extract/<batch>/particles.star`` as relion_preprocess writes it."""
    groups: list[float] = []
    rows = []
    for rec in records:
        if rec["steps"].get("extract") is not True:
            continue
        if rec["pixel_size"] not in groups:
            groups.append(rec["pixel_size"])
        for n in range(1, 4):
            rows.append(
                f"{100.0 * n:12.6f} {50.0 * n:12.6f} {n:06d}@Extract/b{batch:06d}/x.mrcs "
                f"{rec['micrograph']} {groups.index(rec['pixel_size']) + 1:12d} "
            )
    optics = [
        f"opticsGroup{g} {g:12d} {p:12.6f} {300.0:12.6f} {2.7:12.6f} {0.07:12.6f} "
        f"{p * 2 * 3:12.6f} {64:12d} {2:12d} "
        for g, p in enumerate(groups, 1)
    ]
    text = (
        "\n# version 30001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n"
        "_rlnOpticsGroup #2 \n_rlnMicrographOriginalPixelSize #3 \n_rlnVoltage #4 \n"
        "_rlnSphericalAberration #5 \n_rlnAmplitudeContrast #6 \n_rlnImagePixelSize #7 \n"
        "_rlnImageSize #8 \n_rlnImageDimensionality #9 \n" + "\n".join(optics) + "\n \n\n"
        "# version 30001\n\ndata_particles\n\nloop_ \n_rlnCoordinateX #1 \n"
        "_rlnCoordinateY #2 \n_rlnImageName #3 \n_rlnMicrographName #4 \n"
        "_rlnOpticsGroup #5 \n" + "\n".join(rows) + "\n \n"
    )
    path = out / "Extract" / f"b{batch:06d}" / "particles.star"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def finish(out: Path, batch: int, records: list[dict[str, Any]], manifest: bool = True) -> None:
    """A finished batch as the pipeline leaves it (manifest, particles, summary, results)."""
    if manifest:
        write_manifest(out, [entry(r["key"]) for r in records], batch)
    particles_star(out, batch, records)
    result = {"batch": f"b{batch:06d}", "finished": 1.7e9, "movies": records}
    (out / "Summary").mkdir(exist_ok=True)
    (out / "Summary" / f"b{batch:06d}.json").write_text(summary_text(result))
    atomic_write_json(out / "Results" / f"b{batch:06d}.json", result)


def batch_records(batch: int, n: int = 6, pixel: float = 0.83) -> list[dict[str, Any]]:
    """``n`` movies; the 3rd fails at CTF estimation, the 5th at picking."""
    fails = {2: "ctffind", 4: "picking"}
    return [record(key_of(batch, i), batch, i, fails.get(i), pixel) for i in range(n)]


def update(out: Path) -> dict[str, int]:
    return write_session_stars(out, CONFIG)


def reference(out: Path, tmp: Path) -> Path:
    """The full rebuild of a copy of ``out`` (without emotf's own records and outputs)."""
    ref = tmp / f"ref{time.monotonic_ns()}"
    shutil.copytree(out, ref, ignore=shutil.ignore_patterns(".emotf", "*.star"))
    for batch in (out / "Extract").glob("b*"):
        shutil.copytree(batch, ref / "Extract" / batch.name, dirs_exist_ok=True)
    write_session_stars_full(ref, CONFIG)
    return ref


def assert_tables_equal(a: pd.DataFrame, b: pd.DataFrame, where: str) -> None:
    assert list(a.columns) == list(b.columns), where
    assert len(a) == len(b), where
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            assert np.allclose(x.to_numpy(float), y.to_numpy(float), rtol=0, atol=1e-6), (
                f"{where} {column}"
            )
        else:
            assert x.astype(str).tolist() == y.astype(str).tolist(), f"{where} {column}"


def assert_same_as_rebuild(out: Path, tmp: Path, files: tuple[str, ...] = FILES) -> None:
    ref = reference(out, tmp)
    for name in files:
        mine, theirs = read_star(out / name), read_star(ref / name)
        assert list(mine) == list(theirs), name
        for block in mine:
            assert_tables_equal(mine[block], theirs[block], f"{name}:{block}")


def keys_in(path: Path) -> list[str]:
    table = read_star(path)["movies"]
    return [str(v).removeprefix("Movies/") for v in table["rlnMicrographMovieName"]]


def test_many_batches_are_appended_and_equal_a_full_rebuild(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inodes: dict[str, int] = {}
    for batch in range(1, 13):
        finish(out, batch, batch_records(batch))
        written = update(out)
        if batch == 2:
            inodes = {name: os.stat(out / name).st_ino for name in FILES}
        if batch in (1, 5, 12):
            assert_same_as_rebuild(out, tmp_path)
    assert written["movies.star"] == 12 * 6 and written["micrographs_ctf.star"] == 12 * 5
    assert written["micrographs_accepted.star"] == 12 * 3
    assert written["particles.star"] == 12 * 4 * 3
    # later batches were appended to the same files, not rewritten
    assert {name: os.stat(out / name).st_ino for name in FILES} == inodes
    # values read back are the records' own (no 6-decimal rounding)
    ctf = read_star(out / "micrographs_ctf.star")["micrographs"]
    assert ctf["rlnAccumMotionTotal"].iloc[1] == 10.123456789 + 1 / 7
    assert ctf["rlnCtfFigureOfMerit"].iloc[0] == 0.2547812345


def test_an_update_reads_the_new_batch_only(tmp_path: Path) -> None:
    """Old results damaged after their batch was added (same size and time) are not read."""
    out = tmp_path / "out"
    out.mkdir()
    for batch in (1, 2, 3):
        finish(out, batch, batch_records(batch))
    update(out)
    before = {name: (out / name).read_text() for name in FILES}
    for batch in (1, 2):
        path = out / "Results" / f"b{batch:06d}.json"
        info = path.stat()
        path.write_bytes(b"x" * info.st_size)
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    finish(out, 4, batch_records(4))
    update(out)
    for name in FILES:
        assert (out / name).read_text().startswith(before[name]), name
    assert len(keys_in(out / "movies.star")) == 4 * 6


def test_retry_failed_moves_the_rows_to_the_new_batch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for batch in (1, 2, 3):
        finish(out, batch, batch_records(batch))
        update(out)
    manifest = retry_failed(out)
    assert manifest is not None and manifest.batch == "b000004"
    retried = [m.key for m in manifest.movies]
    assert len(retried) == 6
    update(out)  # the re-queued movies left the files while their new batch runs
    assert_same_as_rebuild(out, tmp_path)
    assert not set(retried) & set(keys_in(out / "movies.star"))
    # the new batch succeeds for every re-queued movie
    finish(out, 4, [record(k, 4, 10 + n) for n, k in enumerate(retried)], manifest=False)
    finish(out, 5, batch_records(5))
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    movies = keys_in(out / "movies.star")
    assert len(movies) == len(set(movies)) == 3 * 4 + 6 + 6
    assert movies[-12:-6] == retried
    finish(out, 6, batch_records(6))
    update(out)  # appended after the re-assembly
    assert_same_as_rebuild(out, tmp_path)


def test_a_new_optics_group_is_numbered_as_a_full_rebuild_numbers_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    finish(out, 1, batch_records(1))
    update(out)
    finish(out, 2, batch_records(2, pixel=1.06))  # new group: the optics block grows
    update(out)
    finish(out, 3, batch_records(3) + [record(key_of(3, 9), 3, 9, pixel=0.415)])
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    optics = read_star(out / "micrographs_ctf.star")["optics"]
    assert optics["rlnMicrographOriginalPixelSize"].tolist() == [0.83, 1.06, 0.415]
    assert read_star(out / "particles.star")["optics"]["rlnOpticsGroup"].tolist() == [1, 2, 3]


def test_batches_finishing_out_of_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(out, [entry(r["key"]) for r in batch_records(2)], 2)
    finish(out, 1, batch_records(1))
    finish(out, 3, batch_records(3, pixel=1.06))
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    finish(out, 2, batch_records(2), manifest=False)
    update(out)
    assert_same_as_rebuild(out, tmp_path)


def write_folder_config(out: Path) -> None:
    write_config(out / "config.yaml", CONFIG)


def test_kill_9_in_the_middle_of_an_append_is_repaired(tmp_path: Path) -> None:
    """A real writer process (``python -m emotf.outputs``) is killed with SIGKILL after it
    wrote half of the new rows; the next update leaves the files equal to a full rebuild."""
    out = tmp_path / "out"
    out.mkdir()
    write_folder_config(out)
    for batch in (1, 2):
        finish(out, batch, batch_records(batch))
    update(out)
    size = (out / "movies.star").stat().st_size
    finish(out, 3, batch_records(3))
    marker = tmp_path / "paused"
    env = {**os.environ, PAUSE: str(marker)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotf.outputs", "--no-report", str(out)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "writer ended before the pause"
            assert time.monotonic() < deadline, "writer never reached the append"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    cut = (out / "movies.star").read_text()
    assert len(cut.encode()) > size and not cut.endswith("\n")  # a partial row was left
    finish(out, 4, batch_records(4))
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    assert len(keys_in(out / "movies.star")) == 4 * 6


def test_a_star_file_edited_by_the_user_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    finish(out, 1, batch_records(1))
    update(out)
    edited = (out / "micrographs.star").read_text().replace("opticsGroup1", "myGroup")
    (out / "micrographs.star").write_text(edited)
    finish(out, 2, batch_records(2))
    written = update(out)
    assert "micrographs.star" not in written
    assert (out / "micrographs.star").read_text() == edited
    assert_same_as_rebuild(out, tmp_path, tuple(f for f in FILES if f != "micrographs.star"))


@pytest.mark.parametrize("how", ["--rebuild", "--full"])
def test_staff_can_force_a_rebuild(tmp_path: Path, how: str) -> None:
    """``--rebuild`` makes every part again from the results (a damaged part is repaired);
    ``--full`` writes the reference rebuild itself."""
    out = tmp_path / "out"
    out.mkdir()
    write_folder_config(out)
    for batch in (1, 2, 3):
        finish(out, batch, batch_records(batch))
        update(out)
    part = out / ".emotf" / "star_parts" / "b000001.part"
    part.write_text(part.read_text().replace("\nMovies/", "\nMxvies/"))  # a damaged part
    assert "Mxvies/" in part.read_text()
    (out / "movies.star").unlink()
    assert outputs_main([how, "--no-report", str(out)]) == 0
    assert "Mxvies/" not in (out / "movies.star").read_text()
    assert_same_as_rebuild(out, tmp_path)
    if how == "--full":
        return
    finish(out, 4, batch_records(4))
    update(out)
    assert_same_as_rebuild(out, tmp_path)


def test_retrying_the_movie_that_opened_an_optics_group_renumbers_the_groups(
    tmp_path: Path,
) -> None:
    """Group 2 is first used by a failed movie of batch 1; once ``retry-failed`` moves it
    to batch 3, the group first used in batch 2 becomes group 2, as in a full rebuild."""
    out = tmp_path / "out"
    out.mkdir()
    odd = record(key_of(1, 9), 1, 9, fail="ctffind", pixel=1.06)
    finish(out, 1, [*batch_records(1)[:2], odd])
    finish(out, 2, [record(key_of(2, 9), 2, 9, pixel=0.415), *batch_records(2)[:2]])
    update(out)
    optics = read_star(out / "movies.star")["optics"]
    assert optics["rlnMicrographOriginalPixelSize"].tolist() == [0.83, 1.06, 0.415]
    manifest = retry_failed(out)
    assert manifest is not None and [m.key for m in manifest.movies] == [odd["key"]]
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    optics = read_star(out / "movies.star")["optics"]
    assert optics["rlnMicrographOriginalPixelSize"].tolist() == [0.83, 0.415]
    finish(out, 3, [record(odd["key"], 3, 9, pixel=1.06)], manifest=False)
    update(out)
    assert_same_as_rebuild(out, tmp_path)
    optics = read_star(out / "movies.star")["optics"]
    assert optics["rlnMicrographOriginalPixelSize"].tolist() == [0.83, 0.415, 1.06]


@pytest.mark.skipif(shutil.which("relion_star_handler") is None, reason="RELION not installed")
def test_relion_reads_the_appended_files(tmp_path: Path) -> None:
    """RELION's own reader selects over every appended row and keeps the optics block."""
    out = tmp_path / "out"
    out.mkdir()
    for batch in (1, 2, 3):
        finish(out, batch, batch_records(batch))
        update(out)
    picked = tmp_path / "picked.star"
    proc = subprocess.run(
        ["relion_star_handler", "--i", str(out / "micrographs_ctf.star"), "--o", str(picked)]
        + ["--select", "rlnDefocusU", "--minval", "15100", "--maxval", "99999"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    blocks = read_star(picked)
    # defocus_u = 15000 + 37.25 i: movies 3..5 of each batch, but movie 2 failed CTF
    assert len(blocks["micrographs"]) == 3 * 3
    assert blocks["optics"]["rlnMicrographPixelSize"].tolist() == [pytest.approx(1.66)]
