"""Worker configuration: a YAML file plus EMHUB_SERVER_URL / EMHUB_USER / EMHUB_PASSWORD.

```yaml
emhub:
  url: https://emhub.example.org      # or EMHUB_SERVER_URL
  user: otf-worker                    # or EMHUB_USER
  password_file: /etc/emotf/password  # or EMHUB_PASSWORD; never put it on a command line
  worker: krios-gpu01                 # registered in EMhub's config:hosts; default hostname
otf:
  raw_roots: [/data/raw]              # sessions' raw folders must be below one of these
  otf_roots: [/data/otf]              # processing folders must be below one of these
  otf_root: /data/otf                 # used when config:sessions has no otf.root
  profile: null                       # Snakemake profile (slurm, lsf) or null for local
  idle_timeout: 1800                  # end a session after this long without new movies
  report_interval: 30                 # seconds between task events when nothing changes
  max_runs: 2                         # concurrent Snakemake runs per session (disjoint batches)
  rule_dirs: [/opt/facility/rules]    # facility-wide rule folders
  trusted_groups: [cryoem-staff]      # groups whose write access to folders is trusted
  config: {batches: {size: 16}}       # config.yaml values for every session
  microscopes:                        # per EMhub resource name
    Krios01: {profile: slurm, config: {acquisition: {cs: 2.7}}}
commands:                             # the only "command" tasks this worker runs (no shell)
  disk_usage: [df, -h, /data]
command_timeout: 300
```

The file is checked against :data:`emotf.emhub.worker_schema.SCHEMA` before anything is read
from it: an unknown key or a wrong type is a ConfigError naming the key (the worker exits with
code 2). Without ``raw_roots`` and ``otf_roots`` every session task is refused.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from .secret import take_inherited_password
from .worker_schema import validate_worker_settings

ENV_KEYS = {"url": "EMHUB_SERVER_URL", "user": "EMHUB_USER", "password": "EMHUB_PASSWORD"}


def load_settings(path: Path | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read worker configuration {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"worker configuration {path} is not a mapping")
    validate_worker_settings(data, f"worker configuration {path}")  # before any key is read
    emhub = dict(data.get("emhub") or {})
    inherited = take_inherited_password()  # EMHUB_PASSWORD after the re-exec (secret.py)
    if inherited is not None:
        emhub.setdefault("password", inherited)
    for key, env in ENV_KEYS.items():
        if os.environ.get(env):
            emhub.setdefault(key, os.environ[env])
    # Child processes (Snakemake, tools, allowlisted commands) must not inherit the password.
    os.environ.pop(ENV_KEYS["password"], None)
    if "password" not in emhub and emhub.get("password_file"):
        try:
            emhub["password"] = Path(emhub["password_file"]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file: {exc.strerror}") from exc
    emhub.setdefault("worker", socket.gethostname())
    for key in ("url", "user", "password"):
        if not emhub.get(key):
            raise ConfigError(f"EMhub {key} not configured (set {ENV_KEYS[key]} or emhub.{key})")
    data["emhub"] = emhub
    data["otf"] = data.get("otf") or {}
    return data
