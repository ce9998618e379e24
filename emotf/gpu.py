"""GPU devices for a job.

On a cluster the scheduler chooses (SLURM/LSF set ``CUDA_VISIBLE_DEVICES``). On a local
machine each running GPU job takes a distinct device with an exclusive ``flock`` on
``<lock_dir>/gpu<id>.lock``, machine-wide (every session, every Snakemake process), held for
the whole job. Devices are tried in order of most free memory (NVML); ``EMOTF_GPUS``
(e.g. ``"0,1"``) overrides discovery, for hosts without NVML and for tests.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path(os.environ.get("EMOTF_GPU_LOCK_DIR", "/tmp/emotf-gpu-locks"))
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


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while locked
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextmanager
def allocate(
    count: int,
    lock_dir: Path = DEFAULT_LOCK_DIR,
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
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: dict[str, IO[str]] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            for dev in devices:
                if len(held) < count:
                    handle = _try_lock(lock_dir / f"gpu{dev}.lock")
                    if handle is not None:
                        held[dev] = handle
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


def _release(held: dict[str, IO[str]]) -> None:
    for handle in held.values():
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
    held.clear()
