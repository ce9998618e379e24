"""The read model's per-batch parts and session index give exactly what a full walk over
every movie's record gives: statistics, histograms, ledger figures, curation, notes and
counts, after retry-failed re-queues movies, after a restart (index), and with a damaged
index (a kill -9 mid-append, a lost or foreign file)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from emotf.curation import curate
from emotf.fsutil import atomic_write_json
from emotf.pipeline import builtin_pipeline
from emotf.session.batches import MovieEntry, write_manifest
from emotf.session.ledger import figures, ledger
from emotf.session.progress import ProgressReader
from emotf.session.session_index import INDEX
from emotf.steps import results
from emotf.views.stats import session_stats

LIMITS = {"max_ctf_resolution": 6.0, "max_motion_total": 30.0, "min_particles": 5}
STEPS = builtin_pipeline().names


def record(rng: random.Random, key: str, found: float) -> dict[str, Any]:
    """A summary-like record with values spread as a session's are; some movies fail at a
    step (the later ones then did not run), some optional steps leave a note."""
    fail_at = rng.choice([None] * 8 + list(STEPS[1:]))
    steps = {}
    for name in STEPS:
        if name == fail_at:
            steps[name] = False
            break
        steps[name] = True
    times = {s: found + 5.0 * (i + 1) + rng.random() for i, s in enumerate(steps) if steps[s]}
    rec: dict[str, Any] = {
        "key": key,
        "state": "failed" if fail_at else "done",
        "found": found,
        "steps": steps,
        "times": times,
        "movie": f"Movies/{key}",
        "micrograph": f"MotionCorr/{key}.mrc",
        "motion_total": round(rng.uniform(2, 40), 3),
        "motion_early": round(rng.uniform(0, 10), 3),
        "motion_late": round(rng.uniform(0, 10), 3),
        "defocus_u": rng.uniform(5000, 30000),
        "ctf_resolution": round(rng.uniform(2.5, 9), 2),
        "particles": rng.randint(0, 80),
    }
    rec["defocus_v"] = rec["defocus_u"] - rng.uniform(0, 600)
    rec["defocus"] = 0.5 * (rec["defocus_u"] + rec["defocus_v"])
    if fail_at:
        rec["failed_step"], rec["reason"] = fail_at, f"{fail_at} failed on {key}: no signal"
    if rng.random() < 0.1:
        rec["notes"] = {"extract": "no particles picked"}
    return rec


def write_batch(out: Path, number: int, movies: list[dict[str, Any]], rerun: bool = False) -> None:
    entries = [MovieEntry(m["key"], f"/raw/{m['key']}", 10, 1.0, m["found"], 1.0) for m in movies]
    if not rerun:
        write_manifest(out, entries, number)
    batch = f"b{number:06d}"
    result = {"batch": batch, "finished": 9.0, "movies": movies}
    atomic_write_json(out / "Results" / f"{batch}.json", result)
    (out / "Summary").mkdir(exist_ok=True)
    (out / "Summary" / f"{batch}.json").write_text(results.summary_text(result))


def session(out: Path, batches: int, size: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out.mkdir(exist_ok=True)
    (out / "config.yaml").write_text(json.dumps({"curation": LIMITS}))
    movies = []
    for b in range(batches):
        batch = [
            record(
                rng,
                f"GridSquare_{(b * size + i) // 7}/Data/m{b * size + i:05d}.tiff",
                100.0 * b + i,
            )  # fmt: skip
            for i in range(size)
        ]
        write_batch(out, b + 1, batch)
        movies += batch
    return movies


def retry(out: Path, number: int, failed: list[dict[str, Any]], seed: int) -> None:
    """What ``emotf retry-failed`` leads to: the failed movies in a new batch, finished."""
    rng = random.Random(seed)
    again = []
    for old in failed:
        new = record(rng, old["key"], old["found"])
        again.append(new)
    write_batch(out, number, again)


def full_view(out: Path) -> dict[str, Any]:
    """Everything the read model reports, computed the old way: from every record."""
    records = ProgressReader(out).summaries()
    rows = ledger(out)
    accepted, rejected = curate(records, LIMITS)
    return {
        "stats": session_stats(records, builtin_pipeline()),
        "figures": figures(rows, STEPS),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "notes": sum(1 for r in records if r.get("notes")),
        "done": sum(r["state"] == "done" for r in records),
        "particles": sum(r["particles"] for r in records if r["steps"].get("picking")),
    }


def snapshot_view(reader: ProgressReader) -> dict[str, Any]:
    snap = reader.snapshot()
    return {
        "stats": session_stats(snap.part, snap.pipeline),
        "figures": figures(snap.part, snap.pipeline.names),
        "accepted": snap.part.accepted,
        "rejected": snap.part.rejected,
        "notes": sum(snap.part.notes.values()),
        "done": snap.counts.done,
        "particles": snap.counts.particles,
    }


def test_parts_equal_a_walk_over_every_record(tmp_path: Path) -> None:
    movies = session(tmp_path, 12, 25)
    reader = ProgressReader(tmp_path)
    view = snapshot_view(reader)
    assert view == full_view(tmp_path)
    assert view["done"] == sum(m["state"] == "done" for m in movies) > 0
    assert view["stats"]["histograms"]["defocus_A"]["counts"]  # not empty
    # a warm scan of the same reader, and a new batch seen by it
    assert snapshot_view(reader) == view
    write_batch(tmp_path, 13, [record(random.Random(9), "late/m1.tiff", 5000.0)])
    assert snapshot_view(reader) == full_view(tmp_path) != view


def test_retry_failed_replaces_the_old_rows(tmp_path: Path) -> None:
    movies = session(tmp_path, 6, 20)
    reader = ProgressReader(tmp_path)
    before = snapshot_view(reader)
    failed = [m for m in movies if m["state"] == "failed"]
    assert failed
    retry(tmp_path, 7, failed, seed=11)
    after = snapshot_view(reader)
    assert after == full_view(tmp_path)
    assert reader.counts().movies_batched == len(movies)  # each movie counted once
    assert after["done"] > before["done"]


def test_restart_reads_the_index_not_the_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session(tmp_path, 10, 20)
    expected = snapshot_view(ProgressReader(tmp_path))  # fills the index
    assert (tmp_path / INDEX).is_file()
    import emotf.session.progress as progress

    reads: list[str] = []
    real = progress.read_json
    monkeypatch.setattr(progress, "read_json", lambda p: reads.append(str(p)) or real(p))
    restarted = ProgressReader(tmp_path)
    assert snapshot_view(restarted) == expected
    assert not [r for r in reads if "/Summary/" in r or "/Results/" in r]


def test_a_damaged_index_only_costs_time(tmp_path: Path) -> None:
    session(tmp_path, 8, 15)
    expected = snapshot_view(ProgressReader(tmp_path))
    index = tmp_path / INDEX
    text = index.read_bytes()
    index.write_bytes(text[: len(text) - 300])  # a kill -9 mid-append leaves a cut line
    assert snapshot_view(ProgressReader(tmp_path)) == expected
    index.write_text('{"v": 1, "batch": "b000001", "basis": 7}\nnot json\n')
    assert snapshot_view(ProgressReader(tmp_path)) == expected
    index.unlink()
    assert snapshot_view(ProgressReader(tmp_path)) == expected


def test_a_changed_summary_or_limits_is_read_again(tmp_path: Path) -> None:
    movies = session(tmp_path, 4, 10)
    snapshot_view(ProgressReader(tmp_path))
    changed = [dict(m, particles=m["particles"] + 1000) for m in movies[:10]]
    write_batch(tmp_path, 1, changed, rerun=True)  # the batch's results rewritten (a rerun)
    assert snapshot_view(ProgressReader(tmp_path)) == full_view(tmp_path)
    strict = {**LIMITS, "max_ctf_resolution": 3.0}
    (tmp_path / "config.yaml").write_text(json.dumps({"curation": strict}))
    reader = ProgressReader(tmp_path)
    accepted, _ = curate(reader.summaries(), strict)
    assert reader.snapshot().part.accepted == len(accepted)
