"""Local GPU allocation: concurrent jobs get distinct devices; a third one waits; the lock
folder and files cannot be redirected by another local user. (No GPU is used: devices are
given as names, the locks are real ``flock``s.)"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import time
from pathlib import Path

import pytest

from emotf.gpu import GpuError, allocate, default_lock_dir


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


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A local user who plants ``gpu0.lock -> victim`` used to make the worker empty the
    victim (the lock file was opened with ``a+`` and truncated)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    (locks / "gpu0.lock").symlink_to(victim)
    with pytest.raises(GpuError, match="gpu0.lock refused"):
        with allocate(1, locks, devices=["0"]):
            pass
    assert victim.read_text() == "precious data\n"


def test_a_symlinked_lock_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(GpuError, match="lock folder .*link refused"):
        with allocate(1, tmp_path / "link", devices=["0"]):
            pass
    assert list(real.iterdir()) == []


def test_a_lock_folder_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp/emotf-gpu-locks made by anyone
    with pytest.raises(GpuError, match="writable by group or others"):
        with allocate(1, shared, devices=["0"]):
            pass
    assert list(shared.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_lock_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(GpuError, match="owned by uid 65534"):
        with allocate(1, theirs, devices=["0"]):
            pass


def test_the_lock_folder_is_made_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with allocate(1, tmp_path / "new", devices=["0"]) as gpus:
            assert gpus == ["0"]
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new" / "gpu0.lock").stat().st_mode) == 0o600


def test_default_folder_is_per_user_and_emotf_gpus_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMOTF_GPU_LOCK_DIR", raising=False)
    assert default_lock_dir() == Path(f"/tmp/emotf-gpu-locks-{os.geteuid()}")
    monkeypatch.setenv("EMOTF_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("EMOTF_GPUS", "2,3")
    for var in ("SLURM_JOB_ID", "LSB_JOBID"):
        monkeypatch.delenv(var, raising=False)
    with allocate(2) as gpus:  # devices from EMOTF_GPUS, folder from EMOTF_GPU_LOCK_DIR
        assert gpus == ["2", "3"]
        with pytest.raises(GpuError, match="within"):
            with allocate(1, timeout=0.1, poll=0.05):
                pass
    assert sorted(p.name for p in (tmp_path / "locks").iterdir()) == ["gpu2.lock", "gpu3.lock"]
