"""Host specifications reported to EMhub on connect (CPUs, memory, GPUs)."""

from __future__ import annotations

import logging
from typing import Any

import psutil

log = logging.getLogger(__name__)


def gpu_specs() -> dict[str, dict[str, Any]]:
    """``{name: {"count": n, "memory": GiB}}`` via NVML; empty without an NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no library: a CPU-only host
        log.info("no NVIDIA GPUs visible (%s)", type(exc).__name__)
        return {}
    gpus: dict[str, dict[str, Any]] = {}
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3
            entry = gpus.setdefault(name, {"count": 0, "memory": round(memory, 1)})
            entry["count"] += 1
    finally:
        pynvml.nvmlShutdown()
    return gpus


def host_specs() -> dict[str, Any]:
    return {
        "CPUs": psutil.cpu_count(logical=True) or 0,
        "MEM": round(psutil.virtual_memory().total / 1024**3, 1),
        "GPUs": gpu_specs(),
    }
