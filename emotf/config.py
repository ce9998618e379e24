"""Run configuration: defaults and validation come from the workflow's own schema."""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .resources import schema_path

Config = dict[str, Any]


class ConfigError(ValueError):
    """The run configuration is invalid; the message names the key and the problem."""


@lru_cache(maxsize=8)
def _schema_at(path: str, _mtime: int) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            schema: dict[str, Any] = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration schema {path}: {exc}") from exc
    return schema


def load_schema(path: Path | None = None) -> dict[str, Any]:
    """The schema at ``path`` (a processing folder's own copy), default the package's."""
    where = os.fspath(path or schema_path())
    try:
        mtime = os.stat(where).st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cannot read configuration schema {where}: {exc.strerror}") from exc
    return _schema_at(where, mtime)


def folder_schema(folder: Path) -> Path:
    """The schema a processing folder's config is validated against: its own workflow
    copy's (folders made by an older emotf keep their layout), else the package's."""
    own = Path(folder) / "workflow" / "schemas" / "config.schema.yaml"
    return own if own.is_file() else schema_path()


def _apply_defaults(value: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if isinstance(value.get(key), dict) and sub.get("type") == "object":
            _apply_defaults(value[key], sub)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``update`` (inputs unchanged)."""
    merged = copy.deepcopy(base)
    for key, val in update.items():
        if isinstance(val, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], val)
        else:
            merged[key] = copy.deepcopy(val)
    return merged


def build_config(values: dict[str, Any], schema_file: Path | None = None) -> Config:
    """Fill schema defaults into ``values`` and validate; raise ConfigError when invalid."""
    config = copy.deepcopy(values)
    schema = load_schema(schema_file)
    _apply_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
            for err in errors
        )
        raise ConfigError(f"invalid emotf configuration: {details}")
    return config


def known_keys(schema_file: Path | None = None) -> set[str]:
    return set(load_schema(schema_file).get("properties", {}))


def read_folder_config(folder: Path) -> Config:
    """A processing folder's ``config.yaml``, validated against the folder's own schema."""
    return read_config(Path(folder) / "config.yaml", folder_schema(folder))


def read_config(path: Path, schema_file: Path | None = None) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} is not a mapping")
    return build_config(data, schema_file)


def write_config(path: Path, config: Config) -> None:
    from .fsutil import atomic_write_text

    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)
    os.chmod(path, 0o644)  # Snakemake reads it (facility rule folders): nobody else writes it
