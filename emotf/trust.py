"""Which files of a processing folder the worker may run as code.

A processing folder holds code: its ``workflow/`` copy (Snakefile, rule files, added steps in
``workflow/rules/local/``), its ``profiles/`` (Snakemake options), its ``config.yaml`` (which
names facility rule folders) and the facility rule folders themselves. The worker runs them
as its own account, which can read its EMhub password. So before each Snakemake run every
one of them, and every folder above them up to the processing folder, must be owned by the
account that runs emotf (or root) and writable by nobody else, unless its group is one the
worker configuration trusts (``otf.trusted_groups``). Otherwise the run is refused with an
error naming the path; nothing is run and nothing is changed.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


class UntrustedFolder(RuntimeError):
    """A file the worker would run as code could be changed by someone else."""


@dataclass(frozen=True)
class TrustPolicy:
    uid: int = field(default_factory=os.geteuid)
    trusted_gids: frozenset[int] = frozenset()

    @classmethod
    def with_groups(cls, names: Iterable[str]) -> TrustPolicy:
        gids = set()
        for name in names:
            try:
                gids.add(grp.getgrnam(name).gr_gid)
            except KeyError:
                raise UntrustedFolder(f"trusted group {name!r} does not exist") from None
        return cls(trusted_gids=frozenset(gids))

    def problem(self, path: Path, info: os.stat_result) -> str | None:
        trusted = info.st_gid in self.trusted_gids
        if info.st_mode & stat.S_IWOTH:
            return "writable by others"
        if info.st_uid not in (self.uid, 0) and not trusted:
            return (
                f"owned by uid {info.st_uid}, not by this account ({self.uid}) or root, "
                f"and its group {info.st_gid} is not in otf.trusted_groups"
            )
        if info.st_mode & stat.S_IWGRP and not trusted:
            return f"writable by group {info.st_gid}, which otf.trusted_groups does not list"
        return None


CODE = ("config.yaml", "workflow", "profiles")  # what Snakemake reads or runs in a folder


def _tree(path: Path) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in (*dirs, *files):
                yield Path(root) / name


def _check(folder: Path, item: Path, policy: TrustPolicy) -> None:
    info = os.lstat(item)
    if stat.S_ISLNK(info.st_mode):
        raise UntrustedFolder(
            f"refusing to run the workflow of {folder}: {item} is a symbolic link "
            "(code files must be plain files)"
        )
    why = policy.problem(item, info)
    if why:
        raise UntrustedFolder(
            f"refusing to run the workflow of {folder}: {item} is {why}; fix its "
            "owner or permissions (or trust the group in otf.trusted_groups)"
        )


def check_folder(folder: Path, policy: TrustPolicy, rule_dirs: Iterable[str] = ()) -> None:
    """Raise UntrustedFolder unless every code file of ``folder`` (and ``rule_dirs``) is
    safe to run for ``policy``. Only the folder itself, not its data, is checked at the top."""
    folder = Path(os.path.realpath(folder))
    _check(folder, folder, policy)
    for tree in [*(folder / name for name in CODE), *(Path(d) for d in rule_dirs)]:
        if os.path.lexists(tree):
            for item in _tree(tree):
                _check(folder, item, policy)
