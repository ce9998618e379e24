"""Movie detection and batching: complete movies only, each exactly once, immutable batches."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from runs import scandir_calls

from emotf.session.batches import (
    ManifestError,
    list_batches,
    manifest_path,
    read_manifest,
    write_manifest,
)
from emotf.session.feeder import Batcher, MovieScanner

GLOBS = ["Images-Disc*/GridSquare_*/Data/*_fractions.tiff"]


def make_movie(root: Path, name: str, size: int = 100, age: float = 100.0) -> Path:
    path = root / "Images-Disc1" / "GridSquare_1" / "Data" / f"{name}_fractions.tiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_old_movies_are_complete_at_first_scan(tmp_path: Path) -> None:
    make_movie(tmp_path, "a")
    make_movie(tmp_path, "b")
    scanner = MovieScanner(tmp_path, GLOBS, settle_seconds=5, known=set())
    found = scanner.scan()
    assert [m.key.split("/")[-1] for m in found] == ["a_fractions.tiff", "b_fractions.tiff"]
    assert scanner.scan() == []  # reported once only
    assert scanner.total_seen() == 2


def test_growing_movie_waits_until_unchanged(tmp_path: Path) -> None:
    path = make_movie(tmp_path, "g", age=0)
    scanner = MovieScanner(tmp_path, GLOBS, settle_seconds=5, known=set())
    now = time.time()
    assert scanner.scan(now) == []
    with open(path, "ab") as handle:  # still being written
        handle.write(b"more")
    assert scanner.scan(now + 6) == []  # size changed since the last scan
    stamp = now + 1
    os.utime(path, (stamp, stamp))
    assert scanner.scan(now + 7) == []  # unchanged size, but changed mtime
    done = scanner.scan(now + 8)
    assert len(done) == 1 and done[0].size == 104
    assert scanner.total_seen() == 1


def test_known_movies_are_skipped(tmp_path: Path) -> None:
    a = make_movie(tmp_path, "a")
    make_movie(tmp_path, "b")
    key = a.relative_to(tmp_path).as_posix()
    scanner = MovieScanner(tmp_path, GLOBS, settle_seconds=1, known={key})
    assert [m.key for m in scanner.scan()] == [key.replace("a_", "b_")]


def test_batcher_cuts_full_batches_and_tail(tmp_path: Path) -> None:
    session = tmp_path / "raw"
    out = tmp_path / "out"
    for n in range(5):
        make_movie(session, f"m{n}")
    movies = MovieScanner(session, GLOBS, 1, set()).scan()
    batcher = Batcher(out, size=2, tail_seconds=30)
    batcher.add(movies)
    now = time.time()
    made = batcher.cut(now)
    assert [m.batch for m in made] == ["b000001", "b000002"]
    assert len(batcher.pending) == 1
    assert batcher.cut(now + 10) == []  # tail not old enough
    tail = batcher.cut(now + 31)
    assert [len(m.movies) for m in tail] == [1]
    assert list_batches(out) == ["b000001", "b000002", "b000003"]
    all_keys = [
        m.key for b in list_batches(out) for m in read_manifest(manifest_path(out, b)).movies
    ]
    assert sorted(all_keys) == sorted(m.key for m in movies)  # each movie exactly once
    # a restarted batcher continues numbering and knows what was handed out
    again = Batcher(out, size=2, tail_seconds=30)
    assert again.assigned_keys() == set(all_keys)
    assert again.cut(now, flush=True) == []


def test_manifests_are_immutable(tmp_path: Path) -> None:
    session = tmp_path / "raw"
    make_movie(session, "a")
    movies = MovieScanner(session, GLOBS, 1, set()).scan()
    write_manifest(tmp_path, movies, 1)
    with pytest.raises(ManifestError, match="immutable"):
        write_manifest(tmp_path, movies, 1)
    with pytest.raises(ManifestError, match="empty"):
        write_manifest(tmp_path, [], 2)
    bad = manifest_path(tmp_path, "b000003")
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="b000003"):
        read_manifest(bad)


def test_unchanged_folders_are_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 20,000 movies a scan must not re-list every folder: a folder is listed again only
    when its mtime changed or it changed recently (coarse NFS/SMB mtimes)."""
    data = tmp_path / "Images-Disc1" / "GridSquare_1" / "Data"
    data.mkdir(parents=True)
    (data / "a_fractions.tiff").write_bytes(b"x")
    scanner = MovieScanner(tmp_path, GLOBS, settle_seconds=0, known=set())
    listed = scandir_calls(monkeypatch)
    later = time.time() + 60  # the folder's last change is well in the past
    assert [m.key for m in scanner.scan(later)] == [
        "Images-Disc1/GridSquare_1/Data/a_fractions.tiff"
    ]
    before = listed.count(os.fspath(data))
    assert scanner.scan(later + 1) == []
    assert listed.count(os.fspath(data)) == before  # unchanged: listing reused
    (data / "b_fractions.tiff").write_bytes(b"x")  # a new movie changes the folder's mtime
    found = scanner.scan(time.time() + 120)
    assert [m.key for m in found] == ["Images-Disc1/GridSquare_1/Data/b_fractions.tiff"]
    # a coarse mtime (NFS, SMB) may not change when a movie appears: a folder whose mtime is
    # recent is always listed again
    cached = data.stat().st_mtime_ns
    (data / "c_fractions.tiff").write_bytes(b"x")
    os.utime(data, ns=(cached, cached))
    assert scanner.scan(time.time() + 300) == []  # old mtime, unchanged: listing reused
    assert [m.key for m in scanner.scan(time.time())] == [
        "Images-Disc1/GridSquare_1/Data/c_fractions.tiff"
    ]


def test_symlinked_movies_are_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A symlink in the raw folder to a file outside it (or a symlinked folder) is never
    batched: its data must not reach the report or EMhub."""
    raw, outside = tmp_path / "raw", tmp_path / "outside"
    make_movie(raw, "real")
    secret = make_movie(outside, "secret", size=7)
    data = raw / "Images-Disc1" / "GridSquare_1" / "Data"
    (data / "link_fractions.tiff").symlink_to(secret)
    (raw / "Images-Disc2").symlink_to(outside / "Images-Disc1")  # a symlinked folder
    scanner = MovieScanner(raw, GLOBS, settle_seconds=1, known=set())
    with caplog.at_level("WARNING", logger="emotf.session.feeder"):
        found = scanner.scan()
        assert scanner.scan() == []
    assert [m.key for m in found] == ["Images-Disc1/GridSquare_1/Data/real_fractions.tiff"]
    link_key = "Images-Disc1/GridSquare_1/Data/link_fractions.tiff"
    folder_key = "Images-Disc2/GridSquare_1/Data/secret_fractions.tiff"
    assert sorted(scanner.refused) == [link_key, folder_key]
    assert "symbolic link" in scanner.refused[link_key]
    assert "outside the raw folder" in scanner.refused[folder_key]
    assert set(scanner.sizes) == {found[0].key}  # no size of outside data goes to EMhub
    assert scanner.total_seen() == 1 == len(scanner.known)  # a --once run still finishes
    warnings = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(warnings) == 2  # once per movie, not at every scan


def test_a_session_never_batches_or_counts_a_symlinked_movie(tmp_path: Path) -> None:
    """Through OtfSession (no Snakemake run): the symlinked movie is in no manifest, not in
    the movie count or the raw statistics sent to EMhub, and a --once session still ends."""
    from emotf.project import prepare_folder
    from emotf.session.otf import OtfOptions, OtfSession

    raw, outside, out = tmp_path / "raw", tmp_path / "outside", tmp_path / "out"
    make_movie(raw, "real")
    secret = make_movie(outside, "secret", size=7)
    (raw / "Images-Disc1" / "GridSquare_1" / "Data" / "link_fractions.tiff").symlink_to(secret)
    config = prepare_folder(out, raw, {"movie_globs": GLOBS, "batches": {
        "size": 4, "settle_seconds": 1, "tail_seconds": 1}})  # fmt: skip
    session = OtfSession(out, config, OtfOptions(once=True))
    session.feed(time.time())
    keys = [m.key for b in list_batches(out) for m in read_manifest(manifest_path(out, b)).movies]
    assert keys == ["Images-Disc1/GridSquare_1/Data/real_fractions.tiff"]
    assert session.status().movies_found == 1
    assert session.raw_stats()["movies"] == 1 and session.raw_stats()["size"] == 100
    assert list(session.scanner.refused) == ["Images-Disc1/GridSquare_1/Data/link_fractions.tiff"]
