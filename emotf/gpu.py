"""GPU devices for a job.

On a cluster the scheduler chooses (SLURM/LSF set ``CUDA_VISIBLE_DEVICES``). On a local
machine each running GPU job takes a distinct device with an exclusive ``flock`` on
``<lock_dir>/gpu<id>.lock``, machine-wide (every session, every Snakemake process of the
account), held for the whole job. The lock folder (``/tmp/emotf-gpu-locks-<uid>``, or
``EMOTF_GPU_LOCK_DIR``) is created with mode 0700 and refused when it is a symlink, owned by
another user or writable by group/others; lock files are opened without following symlinks,
so no other local user can make the worker write to (or empty) a file of their choosing.
Devices are tried in order of most free memory (NVML); ``EMOTF_GPUS`` (e.g. ``"0,1"``)
overrides discovery, for hosts without NVML and for tests.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_BASE = Path("/tmp")  # noqa: S108 - a per-uid 0700 folder inside, checked before use
SCHEDULER_VARS = ("SLURM_JOB_ID", "LSB_JOBID")


class GpuError(RuntimeError):
    """No GPU could be allocated (none present, or none free before the timeout)."""


def discover_devices() -> list[str]:
    """Device ids, most free memory first: ``EMOTF_GPUS``, else NVML, else none."""
    override = os.environ.get("EMOTF_GPUS", "").strip()
    if override:
        return [d.strip() for d in override.split(",") if d.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        free = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
            free.append((int(info.free), str(index)))
    finally:
        pynvml.nvmlShutdown()
    return [dev for _free, dev in sorted(free, reverse=True)]


def default_lock_dir() -> Path:
    """``EMOTF_GPU_LOCK_DIR``, else ``/tmp/emotf-gpu-locks-<uid>``: the same folder for every
    process of the account (the service, its Snakemake runs, a run started by hand), whatever
    their ``TMPDIR`` or systemd runtime folder."""
    chosen = os.environ.get("EMOTF_GPU_LOCK_DIR", "").strip()
    return Path(chosen) if chosen else LOCK_BASE / f"emotf-gpu-locks-{os.geteuid()}"


def _open_lock_dir(lock_dir: Path) -> int:
    """A descriptor of ``lock_dir`` (created with mode 0700 if missing); GpuError unless it is
    a real folder (not a symlink) owned by this user and not writable by group or others."""
    lock_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(lock_dir, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(lock_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise GpuError(f"GPU lock folder {lock_dir} refused: {exc.strerror} (a symlink?)") from None
    st = os.fstat(fd)
    problem = ""
    if st.st_uid != os.geteuid():
        problem = f"it is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        os.close(fd)
        raise GpuError(
            f"GPU lock folder {lock_dir} refused: {problem}; remove it or set "
            "EMOTF_GPU_LOCK_DIR to a folder only this account can write"
        )
    return fd


def _lock_name(dev: str) -> str:
    return "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", dev)[:100] + ".lock"


def _try_lock(dir_fd: int, dev: str) -> int | None:
    """Lock ``gpu<dev>.lock`` in the lock folder; None if another job holds it. The file is
    never followed through a symlink, and rewritten only if it is a plain file of ours."""
    name = _lock_name(dev)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise GpuError(f"GPU lock file {name} refused: {exc.strerror} (a symlink?)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
        os.close(fd)
        raise GpuError(f"GPU lock file {name} refused: not a plain file of this user")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextmanager
def allocate(
    count: int,
    lock_dir: Path | None = None,
    devices: list[str] | None = None,
    timeout: float = 24 * 3600.0,
    poll: float = 0.5,
) -> Iterator[list[str]]:
    """Hold ``count`` distinct local GPUs for the duration of the ``with`` block."""
    if count <= 0:
        yield []
        return
    scheduled = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if scheduled and any(os.environ.get(v) for v in SCHEDULER_VARS):
        yield [d for d in scheduled.split(",") if d][:count]
        return
    devices = discover_devices() if devices is None else devices
    if len(devices) < count:
        raise GpuError(f"job needs {count} GPU(s), this host has {len(devices)}")
    dir_fd = _open_lock_dir(default_lock_dir() if lock_dir is None else Path(lock_dir))
    held: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            for dev in devices:
                if len(held) < count:
                    fd = _try_lock(dir_fd, dev)
                    if fd is not None:
                        held[dev] = fd
            if len(held) == count:
                break
            _release(held)  # all or nothing: two jobs never hold half of what they need
            if time.monotonic() > deadline:
                raise GpuError(f"no {count} free GPU(s) within {timeout:.0f} s")
            time.sleep(poll)
        chosen = list(held)
        log.info("using GPU(s) %s", ",".join(chosen))
        yield chosen
    finally:
        _release(held)
        os.close(dir_fd)


def _release(held: dict[str, int]) -> None:
    for fd in held.values():
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    held.clear()
