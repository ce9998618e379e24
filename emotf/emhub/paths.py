"""Where a session's raw data and processing folder are, checked against allowed roots.

Paths come from the EMhub server; a worker only touches folders below the roots the facility
configured (``otf.raw_roots`` / ``otf.otf_roots`` in the worker configuration). Symlinks and
``..`` are resolved before checking, so neither can lead outside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import deep_merge
from .worker import TaskError

MAX_PATH = 4096


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{what} is missing")
    if len(value) > MAX_PATH or "\x00" in value:
        raise TaskError(f"{what} is not a valid path")
    return value


def within_roots(path: str, roots: list[str], what: str) -> Path:
    """The resolved ``path``; TaskError unless it lies below one of ``roots`` (if any)."""
    if not os.path.isabs(path):
        raise TaskError(f"{what} {path[:200]!r} is not an absolute path")
    resolved = Path(os.path.realpath(path))
    allowed = [Path(os.path.realpath(r)) for r in roots]
    if allowed and not any(resolved == r or r in resolved.parents for r in allowed):
        raise TaskError(f"{what} {path[:200]!r} is outside the allowed folders")
    return resolved


def otf_paths(
    session: dict[str, Any],
    sessions_config: dict[str, Any],
    settings: dict[str, Any],
    microscope: str | None = None,
) -> tuple[Path, Path, dict[str, Any], str | None]:
    """Return (raw folder, processing folder, config overrides, Snakemake profile)."""
    extra = session.get("extra") or {}
    raw_text = _text(
        (extra.get("raw") or {}).get("path"), f"session {session.get('id')} extra.raw.path"
    )
    raw = within_roots(raw_text, list(settings.get("raw_roots", [])), "raw data path")
    if not raw.is_dir():
        raise TaskError(f"raw data folder {raw} does not exist")
    otf_root = (sessions_config.get("otf") or {}).get("root") or settings.get("otf_root")
    otf_text = (extra.get("otf") or {}).get("path")
    if not otf_text:
        if not otf_root:
            raise TaskError("no extra.otf.path and no otf root configured")
        otf_text = os.path.join(_text(otf_root, "otf root"), raw.name + "_OTF")
    out = within_roots(_text(otf_text, "OTF path"), list(settings.get("otf_roots", [])), "OTF path")
    scope = (settings.get("microscopes") or {}).get(microscope or "", {})
    overrides = deep_merge(settings.get("config") or {}, scope.get("config") or {})
    profile = scope.get("profile", settings.get("profile"))
    return raw, out, overrides, profile
