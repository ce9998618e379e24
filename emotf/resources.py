"""Locate the workflow and profiles shipped with emotf (source checkout or installed wheel)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


class ResourceError(FileNotFoundError):
    """A file that ships with emotf could not be found: the installation is broken."""


def _locate(name: str) -> Path:
    for candidate in (_PKG.parent / name, _PKG / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise ResourceError(f"emotf resource folder {name!r} not found next to {_PKG}")


def workflow_dir() -> Path:
    """The folder holding Snakefile, rules/, schemas/ and scripts/."""
    return _locate("workflows")


def profiles_dir() -> Path:
    """The folder holding the Snakemake profiles (default/, slurm/, lsf/)."""
    return _locate("profiles")


def schema_path() -> Path:
    return workflow_dir() / "schemas" / "config.schema.yaml"
