"""Create and open processing folders.

A processing folder is self-contained: ``config.yaml``, a copy of the workflow in
``workflow/`` and the profiles in ``profiles/``, so ``cd <folder> && snakemake`` works with
no emotf worker running. Nothing that exists is ever deleted or overwritten: a workflow a
facility edited in a session folder stays as it is, and a folder made by an earlier emotf
keeps its own workflow copy (its steps and schema travel with it; see emotf.pipeline).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from .config import (
    Config,
    ConfigError,
    build_config,
    deep_merge,
    folder_schema,
    known_keys,
    read_config,
    write_config,
)
from .resources import profiles_dir, workflow_dir

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"


def _copy_missing(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` into ``dst``, only creating files that do not exist yet."""
    for path in sorted(src.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _known_overrides(overrides: dict[str, Any], schema: Path, folder: Path) -> dict[str, Any]:
    """Overrides whose top-level key the folder's schema knows: a folder made by an older
    emotf keeps its own layout, so a key added since (e.g. a new step's block) is skipped."""
    known = known_keys(schema)
    dropped = sorted(set(overrides) - known)
    if dropped:
        log.warning(
            "%s: its workflow (made by an earlier emotf) has no %s settings; "
            "those values are not used",
            folder,
            ", ".join(dropped),
        )
    return {k: v for k, v in overrides.items() if k in known}


def prepare_folder(
    out_dir: Path,
    session_dir: Path,
    overrides: dict[str, Any],
    rule_dirs: list[str] | None = None,
) -> Config:
    """Create (or reopen) a processing folder and return its validated configuration.

    ``rule_dirs``: facility folders of added steps (from the worker's own configuration),
    recorded as ``pipeline.rule_dirs`` so a manual ``snakemake`` runs the same pipeline."""
    out_dir = Path(out_dir)
    session_dir = Path(session_dir).resolve()
    if not session_dir.is_dir():
        raise ConfigError(f"session folder {session_dir} does not exist")
    if out_dir.resolve() == session_dir or session_dir in out_dir.resolve().parents:
        raise ConfigError("the processing folder must not be inside the raw session folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / CONFIG_NAME
    new = not config_path.exists()
    if new or not (out_dir / "workflow" / "Snakefile").is_file():
        _copy_missing(workflow_dir(), out_dir / "workflow")
    schema = folder_schema(out_dir)
    overrides = dict(overrides)
    if rule_dirs is not None:
        overrides = deep_merge(overrides, {"pipeline": {"rule_dirs": list(rule_dirs)}})
    overrides = _known_overrides(overrides, schema, out_dir)
    if not new:
        config = read_config(config_path, schema)
        if Path(config["session_dir"]).resolve() != session_dir:
            raise ConfigError(
                f"{config_path} belongs to session {config['session_dir']}, not {session_dir}"
            )
        updated = build_config(deep_merge(config, overrides), schema)
    else:
        updated = build_config(deep_merge({"session_dir": str(session_dir)}, overrides), schema)
        config = {}
    if updated != config:
        write_config(config_path, updated)
    _copy_missing(profiles_dir(), out_dir / "profiles")
    return updated
