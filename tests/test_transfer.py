"""The transfer engine (emotf.emhub.transfer) on real files: verified moves, kill -9 at each
step, a file still growing, a full or read-only destination, names taken by other content.

The kills are real ``kill -9`` of a child process that runs the engine; to stop the child at
an exact step (mid-copy, after the copy got its name, after the ledger line), the child
replaces that step with a version that does the first part of it and then blocks. The full
destination is a real 1 MB tmpfs when ``mount`` works (root, as in CI); otherwise ENOSPC is
simulated at the write boundary (``shutil.copyfile`` raising it), and the test says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emotf.emhub import transfer as tr
from emotf.emhub.transfer import Transfer, TransferError, TransferLedger

MOVIE = "Images-Disc1/GridSquare_1/Data/FoilHole_{}_fractions.tiff"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_source(root: Path, sizes: list[int]) -> dict[str, str]:
    """Movies (and one XML each) with random content; returns rel path -> sha256."""
    truth: dict[str, str] = {}
    for i, size in enumerate(sizes):
        for rel, data in ((MOVIE.format(i), os.urandom(size)), (MOVIE.format(i)[:-15] + ".xml",
                                                                 os.urandom(100))):  # fmt: skip
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            truth[rel] = hashlib.sha256(data).hexdigest()
    return truth


def passes(engine: Transfer, n: int = 2) -> list[tr.Copied]:
    """Run the engine ``n`` times (a file must be seen unchanged twice to be complete)."""
    done: list[tr.Copied] = []
    for _ in range(n):
        done += engine.run_once(now=time.time() + 3600)
    return done


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def new_engine(tmp: Path, move: bool = True, settle: float = 0.0) -> Transfer:
    ledger = TransferLedger(tmp / ".dest.transfer.jsonl")
    return Transfer(tmp / "frames", tmp / "dest", ledger, move=move, settle=settle)


def files_below(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_move_verifies_records_then_removes(tmp_path: Path) -> None:
    truth = make_source(tmp_path / "frames", [20_000, 30_000, 40_000])
    copied = passes(new_engine(tmp_path))
    assert files_below(tmp_path / "dest") == truth  # same names, same content, nothing else
    movies = sorted(rel for rel in truth if rel.endswith(".tiff"))
    left = files_below(tmp_path / "frames")  # movies moved, EPU's metadata copied
    assert left == {rel: digest for rel, digest in truth.items() if rel not in movies}
    lines = ledger_lines(tmp_path / ".dest.transfer.jsonl")
    assert sorted(x["rel"] for x in lines if x["kind"] == "copied") == sorted(truth)
    assert {x["rel"]: x["sha256"] for x in lines if x["kind"] == "copied"} == truth
    assert sorted(x["rel"] for x in lines if x["kind"] == "removed") == movies
    assert tr.movies_in(copied) == 3
    assert passes(new_engine(tmp_path)) == []  # a restart copies nothing again


def test_copy_mode_removes_nothing_and_copies_once(tmp_path: Path) -> None:
    truth = make_source(tmp_path / "frames", [1000, 2000])
    assert len(passes(new_engine(tmp_path, move=False))) == 4
    assert files_below(tmp_path / "frames") == truth == files_below(tmp_path / "dest")
    assert passes(new_engine(tmp_path, move=False)) == []  # a restart copies nothing again


CHILD = r"""
import os, shutil, sys, time
from pathlib import Path
from emotf.emhub import transfer as tr
tmp, step = Path(sys.argv[1]), sys.argv[2]
real_copy, real_append, real_remove = shutil.copyfile, tr.TransferLedger.append, \
    tr.Transfer._remove_source
def block():
    (tmp / "blocked").write_text(step)
    time.sleep(3600)
def half_copy(src, dst):
    data = Path(src).read_bytes()
    with open(dst, "wb") as out:
        out.write(data[: len(data) // 2]); out.flush(); os.fsync(out.fileno())
    block()
def append(self, record):
    if step == "linked" and record["kind"] == "copied":
        block()
    real_append(self, record)
    if step == "recorded" and record["kind"] == "copied":
        block()
if step == "mid-copy":
    shutil.copyfile = half_copy
tr.TransferLedger.append = append
ledger = tr.TransferLedger(tmp / ".dest.transfer.jsonl")
engine = tr.Transfer(tmp / "frames", tmp / "dest", ledger, move=True, settle=0)
for _ in range(2):
    engine.run_once(now=time.time() + 3600)
"""


@pytest.mark.parametrize("step", ["mid-copy", "linked", "recorded"])
def test_kill_9_at_each_step_then_restart(tmp_path: Path, step: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    truth = make_source(tmp_path / "frames", [200_000, 300_000])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), step])
    deadline = time.time() + 60
    while not (tmp_path / "blocked").exists():
        assert child.poll() is None and time.time() < deadline, "child never reached the step"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    partial = list((tmp_path / "dest").rglob(f"*{tr.TMP_SUFFIX}"))
    assert bool(partial) == (step == "mid-copy")  # the kill really left a half copy
    copies: list[str] = []
    real = tr.shutil.copyfile

    def counting(src: str, dst: str) -> object:
        copies.append(str(Path(src).relative_to(tmp_path / "frames")))
        return real(src, dst)

    monkeypatch.setattr(tr.shutil, "copyfile", counting)
    passes(new_engine(tmp_path))
    assert files_below(tmp_path / "dest") == truth  # nothing lost, no variant, no temp file
    assert not [p for p in (tmp_path / "frames").rglob("*.tiff")]  # every movie moved
    lines = ledger_lines(tmp_path / ".dest.transfer.jsonl")
    recorded = [x["rel"] for x in lines if x["kind"] == "copied"]
    assert sorted(recorded) == sorted(truth)  # one record per file
    first = sorted(truth)[0]  # the file the child was on when killed
    assert (first in copies) == (step == "mid-copy")  # a finished copy is never redone
    assert len(copies) == len(set(copies))


def test_a_growing_file_moves_once_complete(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    path = frames / MOVIE.format(7)
    path.parent.mkdir(parents=True)
    chunks = [os.urandom(50_000) for _ in range(6)]
    writing = threading.Event()

    def write() -> None:
        with open(path, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                writing.set()
                time.sleep(0.5)

    writer = threading.Thread(target=write)
    writer.start()
    writing.wait(10)
    engine = new_engine(tmp_path, settle=1.0)
    copied: list[tr.Copied] = []
    while writer.is_alive() or path.exists():
        copied += engine.run_once()
        time.sleep(0.2)
    writer.join()
    whole = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert [c.sha256 for c in copied] == [whole]
    assert files_below(tmp_path / "dest") == {MOVIE.format(7): whole}


def test_a_name_taken_by_other_content_is_kept_apart(tmp_path: Path) -> None:
    truth = make_source(tmp_path / "frames", [5000])
    rel = MOVIE.format(0)
    other = tmp_path / "dest" / rel
    other.parent.mkdir(parents=True)
    other.write_bytes(b"older movie with the same name")
    before = sha(other)
    passes(new_engine(tmp_path))
    assert sha(other) == before  # never overwritten
    variant = other.with_name(tr.variant_name(other.name, truth[rel]))
    assert variant.name.endswith("_fractions.tiff") and sha(variant) == truth[rel]
    # EPU writes the same name again with new content: kept apart too, the first stays
    (tmp_path / "frames" / rel).write_bytes(b"rewritten")
    passes(new_engine(tmp_path))
    rewritten = hashlib.sha256(b"rewritten").hexdigest()
    second = other.with_name(tr.variant_name(other.name, rewritten))
    assert sha(other) == before and sha(variant) == truth[rel] and sha(second) == rewritten
    assert len(list(other.parent.glob("*_fractions.tiff"))) == 3


@pytest.fixture
def small_dest(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """A 1 MB destination: a real tmpfs when mount works here, else a plain folder (the
    test then simulates ENOSPC)."""
    dest = tmp_path / "dest"
    dest.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(dest)], capture_output=True
    ).returncode == 0  # fmt: skip
    try:
        yield dest, mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(dest)], check=True)


def test_destination_full_stops_with_a_clear_error_and_removes_nothing_unverified(
    tmp_path: Path, small_dest: tuple[Path, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, mounted = small_dest
    truth = make_source(tmp_path / "frames", [300_000] * 5)
    if not mounted:  # simulated ENOSPC at the write boundary, after two movies
        real, calls = tr.shutil.copyfile, []

        def full(src: str, dst: str) -> object:
            calls.append(src)
            if len(calls) > 4:
                raise OSError(28, "No space left on device")
            return real(src, dst)

        monkeypatch.setattr(tr.shutil, "copyfile", full)
    ledger = TransferLedger(tmp_path / ".dest.transfer.jsonl")
    engine = Transfer(tmp_path / "frames", dest, ledger, move=True, settle=0)
    with pytest.raises(TransferError, match="is full"):
        passes(engine)
    left = files_below(tmp_path / "frames")
    moved = files_below(dest)
    assert {**left, **moved} == truth  # nothing lost, nothing changed
    assert not {rel for rel in set(left) & set(moved) if rel.endswith(".tiff")}  # moved once
    assert set(moved) == set(ledger.copies)  # every copy verified and recorded
    removed = {rel for rel, _mtime in ledger.removed}
    assert removed == {rel for rel in moved if rel.endswith(".tiff")} and removed
    assert not list(dest.rglob(f"*{tr.TMP_SUFFIX}"))
    if mounted:  # the same folder read-only: also a clear error, nothing removed
        subprocess.run(["mount", "-o", "remount,ro", str(dest)], check=True)
        engine2 = Transfer(tmp_path / "frames", dest, ledger, move=True, settle=0)
        with pytest.raises(TransferError, match="is (full|not writable)"):
            passes(engine2)
        assert files_below(tmp_path / "frames") == left
