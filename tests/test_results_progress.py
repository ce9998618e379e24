"""Per-batch results merge every movie exactly once; progress counts come from the files."""

from __future__ import annotations

from pathlib import Path

from emotf.batches import MovieEntry, write_manifest
from emotf.fsutil import atomic_write_json
from emotf.progress import ProgressReader
from emotf.steps import results
from emotf.steps.base import StepContext


def entry(key: str) -> MovieEntry:
    return MovieEntry(key=key, path=f"/raw/{key}", size=10, mtime=1.0, found=5.0, stable=6.0)


def step_file(out: Path, folder: str, name: str, step: str, movies: dict) -> Path:
    path = out / folder / "b000001" / name
    atomic_write_json(
        path,
        {
            "batch": "b000001",
            "step": step,
            "backend": "x",
            "started": 1.0,
            "finished": 2.0,
            "movies": movies,
        },
    )
    return path


def test_merge_and_counts(tmp_path: Path) -> None:
    write_manifest(tmp_path, [entry("a"), entry("b"), entry("c"), entry("d")], 1)
    ok = {"ok": True, "time": 3.0}
    paths = {
        "import": step_file(
            tmp_path,
            "Import",
            "import.json",
            "import",
            {
                "a": {**ok, "movie": "Movies/a"},
                "b": {**ok, "movie": "Movies/b"},
                "c": {**ok, "movie": "Movies/c"},
                "d": {"ok": False, "time": 3.0, "reason": "empty"},
            },
        ),
        "motioncor": step_file(
            tmp_path,
            "MotionCorr",
            "motioncor.json",
            "motioncor",
            {
                "a": {**ok, "motion_total": 12.0, "shifts": [[0, 0]]},
                "b": {**ok},
                "c": {"ok": False, "time": 3.0, "reason": "bad frames"},
            },
        ),
        "ctffind": step_file(
            tmp_path,
            "CtfFind",
            "ctffind.json",
            "ctffind",
            {"a": {**ok, "defocus_u": 15000.0}, "b": {**ok}},
        ),
        "picking": step_file(
            tmp_path, "AutoPick", "picking.json", "picking", {"a": {**ok, "particles": 40}}
        ),
    }
    reader = ProgressReader(tmp_path)
    partial = reader.counts()  # before Results exist: counted from the step files
    assert (partial.imported, partial.motioncor, partial.ctffind, partial.picked) == (3, 2, 2, 1)
    assert partial.done == 0 and partial.batches_done == 0

    ctx = StepContext(
        batch="b000001",
        config={},
        inputs={"manifest": tmp_path / "batches" / "b000001.json", **paths},
        outputs={"json": tmp_path / "Results" / "b000001.json"},
    )
    merged = results.run(ctx)
    states = {
        m["key"]: (m["state"], m.get("failed_step"), m.get("reason")) for m in merged["movies"]
    }
    assert states == {
        "a": ("done", None, None),
        "b": ("failed", "picking", "no picking result"),
        "c": ("failed", "motioncor", "bad frames"),
        "d": ("failed", "import", "empty"),
    }
    a = next(m for m in merged["movies"] if m["key"] == "a")
    assert a["motion_total"] == 12.0 and a["defocus_u"] == 15000.0 and a["particles"] == 40
    assert a["shifts"] == [[0, 0]] and set(a["times"]) == {
        "import",
        "motioncor",
        "ctffind",
        "picking",
    }

    counts = reader.counts()
    assert counts.movies_batched == 4
    assert counts.done + counts.failed == 4
    assert (counts.imported, counts.motioncor, counts.ctffind, counts.picked) == (3, 2, 2, 1)
    assert counts.particles == 40 and counts.batches_done == 1
    assert counts.failures == {
        "import: empty": 1,
        "motioncor: bad frames": 1,
        "picking: no picking result": 1,
    }
