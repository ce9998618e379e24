"""Run configuration: defaults and validation come from the workflow's own schema."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .resources import schema_path

Config = dict[str, Any]


class ConfigError(ValueError):
    """The run configuration is invalid; the message names the key and the problem."""


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    with open(schema_path(), encoding="utf-8") as handle:
        schema: dict[str, Any] = yaml.safe_load(handle)
    return schema


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


def build_config(values: dict[str, Any]) -> Config:
    """Fill schema defaults into ``values`` and validate; raise ConfigError when invalid."""
    config = copy.deepcopy(values)
    schema = load_schema()
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


def read_config(path: Path) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} is not a mapping")
    return build_config(data)


def write_config(path: Path, config: Config) -> None:
    from .fsutil import atomic_write_text

    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)
