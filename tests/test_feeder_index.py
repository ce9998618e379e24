"""The feeder index (``.emotf/feeder.json``) and the batch key index (``.emotf/batch_keys.jsonl``):
a restarted feeder lists only the folders that changed, yet finds exactly the new movies, and
its raw statistics equal a full scan; a lost, damaged or stale index only costs time."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from runs import scandir_calls

from emotf.fsutil import atomic_write_json
from emotf.session import batches, feeder_index
from emotf.session.batches import KEYS_INDEX, Manifest, assigned_keys, manifest_path, write_manifest
from emotf.session.feeder import FEEDER_INDEX, MovieScanner

GLOBS = [
    "Images-Disc*/GridSquare_*/Data/*_fractions.tiff",
    "Images-Disc*/GridSquare_*/Data/*_EER.eer",
]
OLD = time.time() - 1000  # "long ago": folders and movies untouched since


def data_dir(raw: Path, square: int) -> Path:
    return raw / "Images-Disc1" / f"GridSquare_{square}" / "Data"


def put(raw: Path, square: int, name: str, size: int, stamp: float = OLD) -> str:
    """A movie (with its EPU XML) whose file and folders were last changed at ``stamp``."""
    folder = data_dir(raw, square)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.xml").write_text("<x/>")
    path = folder / f"{name}_fractions.tiff"
    path.write_bytes(b"m" * size)
    for item in (path, folder / f"{name}.xml", folder, folder.parent, folder.parent.parent):
        os.utime(item, (stamp, stamp))
    return path.relative_to(raw).as_posix()


def truth(raw: Path) -> dict[str, int]:
    """Every movie matching the globs and its size, by a plain walk."""
    found = {}
    for pattern in GLOBS:
        for path in raw.glob(pattern):
            found[path.relative_to(raw).as_posix()] = path.stat().st_size
    return found


def scanner(raw: Path, out: Path, index: bool = True) -> MovieScanner:
    """The feeder as OtfSession builds it after a (re)start."""
    return MovieScanner(raw, GLOBS, settle_seconds=5, known=assigned_keys(out),
                        index=out / FEEDER_INDEX if index else None)  # fmt: skip


@pytest.fixture(autouse=True)
def no_save_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is written at most every SAVE_SECONDS; these tests kill the feeder sooner."""
    monkeypatch.setattr(feeder_index, "SAVE_SECONDS", 0.0)


def first_session(raw: Path, out: Path) -> dict[str, str]:
    """Three folders of movies handed out in a manifest, one movie still growing; the
    feeder is then killed (nothing closed). Returns the movies' keys by role."""
    keys = {f"m{s}{n}": put(raw, s, f"m{s}{n}", 10 + s * 3 + n) for s in (1, 2, 3) for n in (1, 2)}
    first = scanner(raw, out)
    handed = first.scan()
    assert sorted(m.key for m in handed) == sorted(keys.values())
    write_manifest(out, handed, 1)
    # a movie being written at kill time: its folder is old, the file itself recent
    growing = put(raw, 2, "growing", 5, stamp=OLD + 50)
    os.utime(raw / growing, None)
    assert first.scan() == []  # found, not complete yet
    assert first.total_seen() == 7
    return {**keys, "growing": growing}


def later_changes(raw: Path) -> dict[str, str]:
    """While the feeder is down: a new movie in an old folder, a new folder, the growing
    movie grows (its folder's mtime does not change)."""
    new_old = put(raw, 1, "new_in_old", 7, stamp=OLD + 100)
    new_sq = put(raw, 9, "new_square", 8, stamp=OLD + 100)
    with open(data_dir(raw, 2) / "growing_fractions.tiff", "ab") as handle:
        handle.write(b"more")
    return {"new_in_old": new_old, "new_square": new_sq}


def restart_finds_exactly_the_new_movies(raw: Path, out: Path) -> MovieScanner:
    keys = first_session(raw, out)
    new = later_changes(raw)
    again = scanner(raw, out)
    assert sorted(m.key for m in again.scan()) == sorted(new.values())  # growing: not yet
    done = again.scan(time.time() + 10)  # unchanged size for `settle`: complete
    assert [m.key for m in done] == [keys["growing"]] and done[0].size == 9
    assert again.scan(time.time() + 20) == []
    assert again.sizes == truth(raw)  # the raw statistics equal a full scan
    assert again.total_seen() == len(truth(raw)) == len(again.known)
    return again


def test_restart_lists_only_changed_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    keys = first_session(raw, out)
    new = later_changes(raw)
    calls = scandir_calls(monkeypatch)
    stats = stat_calls(monkeypatch)
    again = scanner(raw, out)
    assert sorted(m.key for m in again.scan()) == sorted(new.values())
    unchanged = {os.fspath(data_dir(raw, s)) for s in (2, 3)}
    assert not unchanged & set(calls), calls  # from the index: neither listed...
    assert {os.fspath(data_dir(raw, s)) for s in (1, 9)} <= set(calls)
    handed_out = {os.fspath(raw / keys[f"m{s}{n}"]) for s in (2, 3) for n in (1, 2)}
    assert not handed_out & set(stats)  # ...nor their handed-out movies stat()ed for a size
    assert again.sizes == truth(raw)  # yet the sizes are exact


def stat_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths given to os.stat or os.lstat from now on."""
    calls: list[str] = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def counting(path: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            calls.append(os.fspath(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, counting)
    return calls


def test_restart_finds_new_and_growing_movies_exactly_once(tmp_path: Path) -> None:
    restart_finds_exactly_the_new_movies(tmp_path / "raw", tmp_path / "out")


def _delete(path: Path) -> None:
    path.unlink()


def _garbage(path: Path) -> None:
    path.write_text("{not json")


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _other_globs(path: Path) -> None:
    data = json.loads(path.read_text())
    data["globs"] = ["*.tiff"]
    path.write_text(json.dumps(data))


def _bad_entry(path: Path) -> None:
    data = json.loads(path.read_text())
    item = next(i for i in data["listings"] if i[0].endswith("GridSquare_3/Data"))
    item[5:7] = [["../../../../etc/passwd"], [-1]]  # names with a "/" are never trusted
    path.write_text(json.dumps(data))


def test_a_movie_completed_after_the_last_index_write_has_its_final_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index was written while a movie was still growing (5 bytes); it then completed
    and was handed out, and the feeder was killed before it wrote the index again."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    keys = first_session(raw, out)
    path = raw / keys["growing"]
    with open(path, "ab") as handle:
        handle.write(b"more")
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))
    with monkeypatch.context() as patch:
        patch.setattr(feeder_index.FolderIndex, "save", lambda *_a, **_k: None)
        done = scanner(raw, out).scan()
    assert [m.key for m in done] == [keys["growing"]]
    write_manifest(out, done, 2)  # ... and killed
    again = scanner(raw, out)
    assert again.scan(time.time() + 20) == []
    assert again.sizes == truth(raw) and again.sizes[keys["growing"]] == 9


@pytest.mark.parametrize("damage", [_delete, _garbage, _truncate, _other_globs, _bad_entry])
def test_a_lost_or_damaged_index_costs_only_a_full_scan(
    tmp_path: Path, damage: Callable[[Path], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    keys = first_session(raw, out)
    new = later_changes(raw)
    damage(out / FEEDER_INDEX)
    calls = scandir_calls(monkeypatch)
    again = scanner(raw, out)
    assert sorted(m.key for m in again.scan()) == sorted(new.values())
    assert os.fspath(data_dir(raw, 3)) in calls  # a full scan
    assert [m.key for m in again.scan(time.time() + 10)] == [keys["growing"]]
    assert again.sizes == truth(raw)
    assert json.loads((out / FEEDER_INDEX).read_text())["listings"]  # written again


def test_a_listing_taken_right_after_a_change_is_not_trusted_after_a_restart(
    tmp_path: Path,
) -> None:
    """Coarse mtimes (NFS, SMB): a movie created just after a listing may leave the folder's
    mtime as it was. A listing taken within RELIST_SECONDS of the folder's change is listed
    again after a restart, however long the worker was down."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    put(raw, 1, "a", 3)
    folder = data_dir(raw, 1)
    changed = folder.stat().st_mtime_ns
    first = MovieScanner(raw, GLOBS, 0, set(), index=out / FEEDER_INDEX)
    assert len(first.scan(changed / 1e9 + 1)) == 1  # listed one second after the change
    later = put(raw, 1, "b", 4)
    os.utime(folder, ns=(changed, changed))  # the coarse mtime did not move
    again = MovieScanner(raw, GLOBS, 0, {"Images-Disc1/GridSquare_1/Data/a_fractions.tiff"},
                         index=out / FEEDER_INDEX)  # fmt: skip
    assert [m.key for m in again.scan()] == [later]


def test_the_index_is_never_written_into_the_raw_folder(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    first_session(raw, out)
    before = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*"))
    later_changes(raw)
    again = scanner(raw, out)
    for delay in (0, 10, 20):
        again.scan(time.time() + delay)
    after = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*"))
    assert set(after) - set(before) == {
        "Images-Disc1/GridSquare_1/Data/new_in_old.xml",
        "Images-Disc1/GridSquare_1/Data/new_in_old_fractions.tiff",
        "Images-Disc1/GridSquare_9",
        "Images-Disc1/GridSquare_9/Data",
        "Images-Disc1/GridSquare_9/Data/new_square.xml",
        "Images-Disc1/GridSquare_9/Data/new_square_fractions.tiff",
    }  # only what later_changes wrote
    assert (out / FEEDER_INDEX).is_file() and (out / KEYS_INDEX).is_file()


def test_symlinks_are_still_refused_after_a_restart(tmp_path: Path) -> None:
    raw, out, outside = tmp_path / "raw", tmp_path / "out", tmp_path / "outside"
    first_session(raw, out)
    secret = outside / "secret_fractions.tiff"
    outside.mkdir()
    secret.write_bytes(b"s" * 3)
    (data_dir(raw, 3) / "link_fractions.tiff").symlink_to(secret)
    os.utime(data_dir(raw, 3), (OLD + 200, OLD + 200))  # the second start: from the index
    for _restart in range(2):
        again = scanner(raw, out)
        again.scan(time.time() + 10)
        assert list(again.refused) == ["Images-Disc1/GridSquare_3/Data/link_fractions.tiff"]
        assert "Images-Disc1/GridSquare_3/Data/link_fractions.tiff" not in again.sizes


# -- the batch key index ---------------------------------------------------------------------
def _manifests(tmp_path: Path) -> tuple[Path, list[str]]:
    raw, out = tmp_path / "raw", tmp_path / "out"
    keys = [put(raw, 1, f"k{n}", 1) for n in range(6)]
    movies = MovieScanner(raw, GLOBS, 0, set()).scan()
    write_manifest(out, movies[:3], 1)
    write_manifest(out, movies[3:5], 2)
    return out, keys


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = batches.read_manifest

    def counting(path: Path) -> Manifest:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(batches, "read_manifest", counting)
    return calls


def test_assigned_keys_come_from_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, keys = _manifests(tmp_path)
    reads = _reads(monkeypatch)
    assert assigned_keys(out) == set(keys[:5])
    assert reads == []  # no manifest read


def test_a_manifest_written_just_before_a_kill_still_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is on disk but its index line is not (kill -9 in between), and the last
    line was cut short: those manifests are read, and indexed for the next start."""
    out, keys = _manifests(tmp_path)
    index = out / KEYS_INDEX
    text = index.read_text()
    index.write_text(text[: len(text) - 25])  # the second line cut short
    late = replace(batches.read_manifest(manifest_path(out, "b000001")).movies[0], key=keys[5])
    extra = Manifest("b000003", time.time(), (late,))
    atomic_write_json(manifest_path(out, "b000003"), extra.to_dict())  # no index line
    reads = _reads(monkeypatch)
    assert assigned_keys(out) == set(keys)
    assert sorted(p.name for p in reads) == ["b000002.json", "b000003.json"]
    reads.clear()
    assert assigned_keys(out) == set(keys) and reads == []  # indexed now


def test_a_stale_or_broken_key_index_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, keys = _manifests(tmp_path)
    index = out / KEYS_INDEX
    line = json.loads(index.read_text().splitlines()[0])
    line["keys"] = ["not/a/movie"]
    line["stamp"][0] += 1  # another file than the manifest now on disk
    with open(index, "a") as handle:
        handle.write(json.dumps(line) + "\n" + "garbage\n" * 40)
    assert assigned_keys(out) == set(keys[:5])
    assert len(index.read_text().splitlines()) == 2  # mostly stale: rewritten compactly
    reads = _reads(monkeypatch)
    assert assigned_keys(out) == set(keys[:5]) and reads == []
    index.write_text("\x00" * 10)
    assert assigned_keys(out) == set(keys[:5])


def test_an_opened_session_counts_every_movie_after_a_restart(tmp_path: Path) -> None:
    """Through OtfSession (no Snakemake run): the second session over the folder uses both
    indexes, batches nothing again and reports the raw statistics of a full scan."""
    from emotf.project import prepare_folder
    from emotf.session.otf import OtfOptions, OtfSession

    raw, out = tmp_path / "raw", tmp_path / "out"
    for n in range(5):
        put(raw, 1 + n % 2, f"s{n}", 10 + n)
    config = prepare_folder(out, raw, {"movie_globs": GLOBS, "batches": {
        "size": 2, "settle_seconds": 1, "tail_seconds": 1}})  # fmt: skip
    first = OtfSession(out, config, OtfOptions(once=True))
    first.feed(time.time())
    assert (out / FEEDER_INDEX).is_file()
    again = OtfSession(out, config, OtfOptions(once=True))
    again.feed(time.time())
    assert again.batcher.pending == [] and len(batches.list_batches(out)) == 3
    sizes = truth(raw)
    assert again.raw_stats()["movies"] == 5 and again.raw_stats()["size"] == sum(sizes.values())
    assert again.scanner.total_seen() == 5 == len(again.scanner.known)


def test_recursive_globs_still_work(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    put(raw, 1, "deep", 2)
    (raw / "top_fractions.tiff").write_bytes(b"t")
    for _restart in range(2):
        found = MovieScanner(raw, ["**/*_fractions.tiff"], 0, set(), index=out / FEEDER_INDEX)
        assert [m.key for m in found.scan()] == [
            "Images-Disc1/GridSquare_1/Data/deep_fractions.tiff",
            "top_fractions.tiff",
        ]
