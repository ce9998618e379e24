"""``emotf profiles install``: make ``snakemake --profile slurm|lsf`` work from any folder."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from .resources import profiles_dir

# profiles/default is Snakemake's *workflow* profile, found in each processing folder.
CLUSTER_PROFILES = ("slurm", "lsf")


def user_profile_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "snakemake"


def install(dest: Path, force: bool) -> list[str]:
    """Copy the cluster profiles to ``dest``; an existing (site-edited) one is kept unless force."""
    done = []
    for name in CLUSTER_PROFILES:
        target = dest / name
        if target.exists() and not force:
            print(f"kept existing {target} (use --force to replace it)")
            continue
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(profiles_dir() / name / "config.yaml", target / "config.yaml")
        done.append(str(target))
        print(f"installed {target}")
    return done


def cmd_profiles(args: argparse.Namespace) -> int:
    install(Path(args.dest) if args.dest else user_profile_dir(), args.force)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("profiles", help="install the slurm/lsf Snakemake profiles")
    p.add_argument("action", choices=["install"])
    p.add_argument("--dest", help="default: ~/.config/snakemake (use /etc/xdg/snakemake site-wide)")
    p.add_argument("--force", action="store_true", help="replace existing profiles")
    p.set_defaults(func=cmd_profiles)
