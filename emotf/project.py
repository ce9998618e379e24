"""Create and open processing folders.

A processing folder is self-contained: ``config.yaml``, a copy of the workflow in
``workflow/`` and the profiles in ``profiles/``, so ``cd <folder> && snakemake`` works with
no emotf worker running. Nothing that exists is ever deleted or overwritten: a workflow a
facility edited in a session folder stays as it is, and a folder made by an earlier emotf
keeps its own workflow copy (its steps and schema travel with it; see emotf.pipeline).
"""

from __future__ import annotations

import logging
import os
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
from .session.folder_lock import claim
from .trust import TrustPolicy, check_folder

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
LAYOUT = {"workflow", "profiles", ".emotf"}  # what emotf itself puts in a new folder


def _copy_missing(src: Path, dst: Path) -> None:
    """Copy the tree ``src`` into ``dst``, only creating files that do not exist yet. Copies
    are code the worker runs: whatever the umask, nobody else may write them."""
    for path in [src, *sorted(src.rglob("*"))]:
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            if not target.exists():
                target.mkdir(parents=True)
                target.chmod(0o755)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            target.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def _adoptable(out_dir: Path) -> None:
    """A folder emotf may use: new, empty, or one it made (never a folder of someone's data,
    whose files emotf would then mix with or overwrite)."""
    if (out_dir / CONFIG_NAME).exists() or not out_dir.exists():
        return
    if any(p.name not in LAYOUT for p in out_dir.iterdir()):  # pre-seeded profiles are fine
        raise ConfigError(
            f"{out_dir} exists and is not an emotf processing folder (it has "
            f"files but no {CONFIG_NAME}); refusing to use it"
        )


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
    policy: TrustPolicy | None = None,
    owner: str | None = None,
) -> Config:
    """Create (or reopen) a processing folder and return its validated configuration.

    ``rule_dirs``: facility folders of added steps (from the worker's own configuration),
    recorded as ``pipeline.rule_dirs`` so a manual ``snakemake`` runs the same pipeline.
    An existing folder's code must be safe to run (``policy``, see emotf.trust) before
    anything is written to it; ``owner`` (an EMhub session) must be the one that made it."""
    out_dir = Path(out_dir)
    session_dir = Path(session_dir).resolve()
    if not session_dir.is_dir():
        raise ConfigError(f"session folder {session_dir} does not exist")
    if out_dir.resolve() == session_dir or session_dir in out_dir.resolve().parents:
        raise ConfigError("the processing folder must not be inside the raw session folder")
    _adoptable(out_dir)
    config_path = out_dir / CONFIG_NAME
    new = not config_path.exists()
    if not new:
        check_folder(out_dir, policy or TrustPolicy(), rule_dirs or [])
    if not out_dir.exists():
        out_dir.mkdir(parents=True)
        out_dir.chmod(0o755)  # it holds the workflow the worker runs: see emotf.trust
    if owner is not None:
        claim(out_dir, owner)
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
