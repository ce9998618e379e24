"""Local GPU allocation: concurrent jobs get distinct devices; a third one waits."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from emotf.gpu import GpuError, allocate


def hold(lock_dir: str, seconds: float, queue: mp.Queue) -> None:
    with allocate(1, Path(lock_dir), devices=["0", "1"], poll=0.05) as gpus:
        queue.put((gpus[0], time.monotonic()))
        time.sleep(seconds)
    queue.put(("released", time.monotonic()))


def test_concurrent_jobs_get_distinct_devices(tmp_path: Path) -> None:
    queue: mp.Queue = mp.Queue()
    procs = [mp.Process(target=hold, args=(str(tmp_path), 1.5, queue)) for _ in range(3)]
    for proc in procs:
        proc.start()
    events = [queue.get(timeout=20) for _ in range(6)]
    for proc in procs:
        proc.join(10)
    grants = [(dev, t) for dev, t in events if dev != "released"]
    releases = sorted(t for dev, t in events if dev == "released")
    assert sorted(dev for dev, _ in grants[:2]) == ["0", "1"]  # first two: distinct devices
    third_grant = sorted(t for _, t in grants)[2]
    assert third_grant >= releases[0] - 0.01  # the third job waited for a free device


def test_scheduler_devices_win_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with allocate(1, tmp_path, devices=["0"]) as gpus:
        assert gpus == ["3"]
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(GpuError, match="has 0"):
        with allocate(1, tmp_path, devices=[]):
            pass
    with allocate(1, tmp_path, devices=["0"]):
        with pytest.raises(GpuError, match="within"):
            with allocate(1, tmp_path, devices=["0"], timeout=0.2, poll=0.05):
                pass
    with allocate(0, tmp_path) as none:
        assert none == []
