"""Where a session's raw data and processing folder are, checked against allowed roots.

Paths come from the EMhub server; a worker only touches folders below the roots the facility
configured (``otf.raw_roots`` / ``otf.otf_roots`` in the worker configuration). Symlinks and
``..`` are resolved before checking, so neither can lead outside. Without configured roots
every session is refused (fail closed).
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


def allowed_roots(settings: dict[str, Any], key: str) -> list[str]:
    """``otf.<key>`` of the worker configuration: a non-empty list of absolute paths, or
    TaskError (fail closed: without roots no session is processed)."""
    roots = settings.get(key)
    if not roots:
        raise TaskError(
            f"this worker has no otf.{key} configured: session tasks are refused "
            f"(list the allowed folders in otf.{key} of the worker configuration)"
        )
    if not isinstance(roots, list) or not all(
        isinstance(r, str) and os.path.isabs(r) for r in roots
    ):
        raise TaskError(f"otf.{key} of the worker configuration is not a list of absolute paths")
    return roots


def within_roots(path: str, roots: list[str], what: str) -> Path:
    """The resolved ``path``; TaskError unless it lies below one of ``roots``."""
    if not roots:
        raise TaskError(
            f"{what} {path[:200]!r} refused: this worker has no allowed folders configured "
            "(otf.raw_roots / otf.otf_roots of the worker configuration)"
        )
    if not os.path.isabs(path):
        raise TaskError(f"{what} {path[:200]!r} is not an absolute path")
    resolved = Path(os.path.realpath(path))
    allowed = [Path(os.path.realpath(r)) for r in roots]
    if not any(resolved == r or r in resolved.parents for r in allowed):
        raise TaskError(f"{what} {path[:200]!r} is outside the allowed folders")
    return resolved


def otf_paths(
    session: dict[str, Any],
    sessions_config: dict[str, Any],
    settings: dict[str, Any],
    microscope: str | None = None,
) -> tuple[Path, Path, dict[str, Any], str | None]:
    """Return (raw folder, processing folder, config overrides, Snakemake profile)."""
    raw_roots = allowed_roots(settings, "raw_roots")
    otf_roots = allowed_roots(settings, "otf_roots")
    extra = session.get("extra") or {}
    raw_text = _text(
        (extra.get("raw") or {}).get("path"), f"session {session.get('id')} extra.raw.path"
    )
    raw = within_roots(raw_text, raw_roots, "raw data path")
    if not raw.is_dir():
        raise TaskError(f"raw data folder {raw} does not exist")
    otf_root = (sessions_config.get("otf") or {}).get("root") or settings.get("otf_root")
    otf_text = (extra.get("otf") or {}).get("path")
    if not otf_text:
        if not otf_root:
            raise TaskError("no extra.otf.path and no otf root configured")
        otf_text = os.path.join(_text(otf_root, "otf root"), raw.name + "_OTF")
    out = within_roots(_text(otf_text, "OTF path"), otf_roots, "OTF path")
    scope = (settings.get("microscopes") or {}).get(microscope or "", {})
    overrides = deep_merge(settings.get("config") or {}, scope.get("config") or {})
    profile = scope.get("profile", settings.get("profile"))
    return raw, out, overrides, profile
