"""Per-batch results merge every movie exactly once; progress counts come from the files."""

from __future__ import annotations

import shutil
from pathlib import Path

from runs import write_step

from emotf.fsutil import atomic_write_json
from emotf.session.batches import MovieEntry, write_manifest
from emotf.session.progress import ProgressReader
from emotf.steps import results
from emotf.steps.base import StepContext


def entry(key: str) -> MovieEntry:
    return MovieEntry(key=key, path=f"/raw/{key}", size=10, mtime=1.0, found=5.0, stable=6.0)


def step_file(out: Path, folder: str, name: str, step: str, movies: dict) -> Path:
    return write_step(out / folder / "b000001" / name, step, movies)


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
            {"a": {**ok, "defocus_u": 15000.0, "defocus_v": 14800.0}, "b": {**ok}},
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
        outputs={
            "json": tmp_path / "Results" / "b000001.json",
            "summary": tmp_path / "Summary" / "b000001.json",
        },
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


def finished_batch(out: Path, batch_number: int, movies: list[dict]) -> None:
    """A finished batch as ``batch_results`` leaves it: manifest, full results, summary."""
    write_manifest(out, [entry(m["key"]) for m in movies], batch_number)
    batch = f"b{batch_number:06d}"
    result = {"batch": batch, "finished": 9.0, "movies": movies}
    atomic_write_json(out / "Results" / f"{batch}.json", result)
    (out / "Summary").mkdir(exist_ok=True)
    (out / "Summary" / f"{batch}.json").write_text(results.summary_text(result))


def full_record(key: str, state: str = "done", **extra: object) -> dict:
    record = {
        "key": key,
        "state": state,
        "found": 5.0,
        "times": {"import": 6.0},
        "movie": f"Movies/{key}",
        "micrograph": f"MotionCorr/b000001/{key}.mrc",
        "shifts": [[0.0, 0.0], [1.5, 0.5]] * 20,
        "motion_total": 3.0,
        "defocus_u": 15000.0,
        "defocus_v": 14000.0,
        "ctf_resolution": 4.0,
        "particles": 12,
    }
    return {**record, **extra}


def test_worker_reads_the_summary_not_the_full_results(tmp_path: Path) -> None:
    movies = [
        full_record("a"),
        full_record("b", "failed", failed_step="ctffind", reason="no fit " + "x" * 900),
    ]
    finished_batch(tmp_path, 1, movies)
    summary = (tmp_path / "Summary" / "b000001.json").read_text()
    assert len(summary) < len((tmp_path / "Results" / "b000001.json").read_text()) / 3
    slim = {m["key"]: m for m in ProgressReader(tmp_path).summaries()}
    assert "shifts" not in slim["a"] and "micrograph" not in slim["a"]
    assert slim["a"]["defocus_u"] == 15000.0 and slim["a"]["particles"] == 12
    assert slim["b"]["reason"].startswith("no fit") and len(slim["b"]["reason"]) == 500

    # the worker's scan never opens the full results (nor the finished batch's manifest)
    (tmp_path / "Results" / "b000001.json").write_text("{not json")
    (tmp_path / "batches" / "b000001.json").write_text("{not json")
    reader = ProgressReader(tmp_path)
    counts = reader.counts()
    assert (counts.done, counts.failed, counts.particles) == (1, 1, 12)
    assert counts.movies_batched == 2 and counts.batches_done == 1
    assert counts.failures == {f"ctffind: {slim['b']['reason']}"[:200]: 1}
    assert reader.owners() == {"a": "b000001", "b": "b000001"}
    assert reader.results() == []  # the writers' full records: unreadable here


def test_old_folders_without_summaries_fall_back_to_full_results(tmp_path: Path) -> None:
    finished_batch(tmp_path, 1, [full_record("a"), full_record("b")])
    finished_batch(tmp_path, 2, [full_record("b", particles=30)])  # retry-failed re-queued b
    new = ProgressReader(tmp_path)
    expected = (new.counts(), new.summaries())
    shutil.rmtree(tmp_path / "Summary")
    old = ProgressReader(tmp_path)
    assert (old.counts(), old.summaries()) == expected
    assert old.counts().particles == 12 + 30 and old.counts().movies_batched == 2
    full = {r["key"]: r for r in old.results()}
    assert full["b"]["particles"] == 30 and "shifts" in full["a"]


def test_workflow_copies_from_before_summaries_still_run(tmp_path: Path) -> None:
    """A processing folder keeps its own workflow copy: its ``batch_results`` rule may
    declare no summary output. The step then writes only the full results, and the worker
    reads those."""
    write_manifest(tmp_path, [entry("a")], 1)
    ok = {"a": {"ok": True, "time": 3.0, "particles": 7}}
    paths = {
        step: step_file(tmp_path, folder, f"{name}.json", step, ok)
        for step, folder, name in (
            ("import", "Import", "import"),
            ("motioncor", "MotionCorr", "motioncor"),
            ("ctffind", "CtfFind", "ctffind"),
            ("picking", "AutoPick", "picking"),
        )
    }
    ctx = StepContext(
        batch="b000001",
        config={},
        inputs={"manifest": tmp_path / "batches" / "b000001.json", **paths},
        outputs={"json": tmp_path / "Results" / "b000001.json"},
    )
    results.run(ctx)
    assert not (tmp_path / "Summary").exists()
    counts = ProgressReader(tmp_path).counts()
    assert (counts.done, counts.particles, counts.batches_done) == (1, 7, 1)


def test_a_backlog_of_queued_batches_is_read_once(tmp_path: Path, monkeypatch) -> None:
    """Batches waiting to run (a restart after an outage: hundreds of them) are read once,
    not at every tick, and a step output that appears is counted at the next snapshot the
    same as a fresh reader counts it."""
    import emotf.session.progress as progress

    for n in (1, 2, 3):
        write_manifest(tmp_path, [entry(f"m{n}a"), entry(f"m{n}b")], n)
    reads: list[str] = []
    real = progress.read_json

    def counting(path: Path) -> object:
        reads.append(Path(path).parent.name)
        return real(path)

    monkeypatch.setattr(progress, "read_json", counting)
    reader = ProgressReader(tmp_path)
    first = reader.snapshot()
    assert first.running == ["b000001", "b000002", "b000003"]
    assert first.part.states == {"queued": 6} and first.counts.movies_batched == 6
    reads.clear()
    reader.snapshot()
    assert reads == [], "queued batches were read again though nothing changed"

    write_step(tmp_path / "Import" / "b000002" / "import.json", "import",
               {"m2a": {"ok": True, "time": 7.0, "movie": "Movies/m2a"}}, "b000002")  # fmt: skip
    later = reader.snapshot()
    assert reads.count("batches") == 1, "only the batch with a new output is read again"
    fresh = ProgressReader(tmp_path).snapshot()
    assert later.counts.as_dict() == fresh.counts.as_dict()
    assert later.counts.imported == 1 and later.part.states == {"queued": 5, "imported": 1}
    assert sorted(later.part.latency["import"]) == [2.0]  # 7.0 - found 5.0
    assert sorted(later.part.found) == sorted(fresh.part.found)
    rows = {r.key: r.state for r in reader.rows()}
    assert rows == {"m1a": "queued", "m1b": "queued", "m2a": "imported", "m2b": "queued",
                    "m3a": "queued", "m3b": "queued"}  # fmt: skip
