"""A processing folder made by the previous release (commit c9ecd3b, before steps were
declared) resumes after the upgrade with exact counts.

The old release is taken from this repository's own history (``git archive``) and really
runs the first part of the session; the current code then finishes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from runs import emotf_run, emotf_status

from emotf.demo import demo_config
from emotf.session.progress import ProgressReader
from emotf.sim import SimParams, simulate_session

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = "c9ecd3b"  # the last release with the undeclared layout ("legacy-1")


def has_history() -> bool:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("relion_run_motioncorr") is None, reason="RELION missing"),
    pytest.mark.skipif(not has_history(), reason=f"no git history with {PREVIOUS} (shallow clone)"),
]


def old_release(dest: Path) -> Path:
    archive = dest / "old.tar"
    subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            "-o",
            str(archive),
            PREVIOUS,
            "emotf",
            "workflows",
            "profiles",
        ],
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "old", filter="data")
    return dest / "old"


def run(code: Path | None, session: Path, out: Path, config: Path) -> str:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)  # the old package, for the worker and for its rules
    proc = emotf_run(session, out, "--config", str(config), env=env, cwd=config.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_folder_of_the_previous_release_resumes_with_exact_counts(tmp_path: Path) -> None:
    session, out = tmp_path / "session", tmp_path / "session_OTF"
    params = SimParams(size=512, n_frames=12, format="tiff", gain=False, seed=31)
    truth = simulate_session(session, params, n_movies=6)
    later = sorted(session.rglob("*_fractions.tiff"))[4:]  # written "after the upgrade"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for movie in later:
        for part in (movie, movie.with_name(movie.name.replace("_fractions.tiff", ".xml"))):
            shutil.move(part, hidden / part.name)
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(demo_config(truth.particle_diameter)))
    old_out = run(old_release(tmp_path), session, out, config)
    assert "done 4" in old_out.splitlines()[-1]
    assert not (out / "Extract").exists()  # the old release had no extraction
    before = {p.name: p.stat().st_mtime_ns for p in (out / "Results").glob("b*.json")}
    assert len(before) >= 1
    for name in os.listdir(hidden):
        target = next(session.rglob("Data")) / name
        shutil.move(hidden / name, target)
    new_out = run(None, session, out, config)
    last = new_out.splitlines()[-1]
    assert "imported 6" in last and "picked 6" in last and "done 6" in last, new_out
    assert "extracted" not in last  # the folder keeps its own pipeline
    after = {p.name: p.stat().st_mtime_ns for p in (out / "Results").glob("b*.json")}
    assert {k: after[k] for k in before} == before and len(after) > len(before)  # untouched
    counts = ProgressReader(out).counts()
    assert (counts.done, counts.failed, counts.movies_batched) == (6, 0, 6)
    assert counts.steps == {"imported": 6, "motioncor": 6, "ctffind": 6, "picked": 6}
    assert counts.totals["particles"] == sum(
        m["particles"]
        for p in (out / "Results").glob("b*.json")
        for m in json.loads(p.read_text())["movies"]
    )
    import starfile

    table = starfile.read(out / "micrographs_ctf.star")["micrographs"]
    assert len(table) == 6 and table["rlnMicrographName"].is_unique
    status = emotf_status(out)
    assert f"6 movies in {len(after)} batches, {len(after)} finished" in status
