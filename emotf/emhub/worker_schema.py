"""JSON schema of the worker configuration (``emotf worker --config``), checked at start.

Every key the worker reads is declared here with its type and a description; an unknown key
or a wrong type (``raw_roots: /data/raw`` instead of a list) stops the worker with a
:class:`~emotf.config.ConfigError` that names the key (exit code 2), instead of being
interpreted in some surprising way later.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from ..config import ConfigError

_ABS_PATH: dict[str, Any] = {
    "type": "string",
    "pattern": "^/[^\x00]*$",
    "maxLength": 4096,
}


_ROOT = {**_ABS_PATH, "pattern": "^/[^\x00]*[^/\x00][^\x00]*$"}  # absolute, and not "/"


def _abs_paths(description: str) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": _ROOT, "description": description}


_SECONDS: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
_PROFILE = {
    "type": ["string", "null"],
    "minLength": 1,
    "description": "Snakemake profile: a shipped name (slurm, lsf) or a folder; null runs "
    "the jobs locally",
}
_RUN_CONFIG = {
    "type": "object",
    "description": "config.yaml values (checked against the workflow's schema when a "
    "session's folder is prepared)",
}
_RULE_DIRS = _abs_paths(
    "facility-wide rule folders (absolute paths); rule folders come only from the worker "
    "configuration, never from a session or a processing folder"
)

EMHUB: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "how this worker reaches EMhub",
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^https?://",
            "description": "EMhub server address (or EMHUB_SERVER_URL)",
        },
        "user": {
            "type": "string",
            "minLength": 1,
            "description": "EMhub user of this worker (or EMHUB_USER)",
        },
        "password_file": {
            "type": "string",
            "minLength": 1,
            "description": "file holding the EMhub password, readable only by the service "
            "account (or EMHUB_PASSWORD); never put the password on a command line",
        },
        "password": {
            "type": "string",
            "description": "the password itself; discouraged, use password_file",
        },
        "worker": {
            "type": "string",
            "minLength": 1,
            "description": "worker name, a key of EMhub's config:hosts (default: hostname)",
        },
        "pending_interval": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "seconds between takes of this worker's pending tasks (default 45; "
            "--pending-interval overrides): a task EMhub handed to a stopped worker's long "
            "poll runs after at most this long",
        },
    },
}

MICROSCOPE: dict[str, Any] = {
    "type": "object",
    "description": "settings for sessions on one EMhub resource (by resource name)",
    "additionalProperties": False,
    "properties": {
        "profile": {**_PROFILE, "description": "Snakemake profile for this microscope"},
        "config": {
            **_RUN_CONFIG,
            "description": "config.yaml values for this microscope, over otf.config",
        },
        "rule_dirs": {
            **_RULE_DIRS,
            "description": "rule folders for this microscope "
            "(absolute paths), besides otf.rule_dirs",
        },
    },
}

OTF: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "on-the-fly processing of session tasks",
    "additionalProperties": False,
    "properties": {
        "raw_roots": _abs_paths(
            "a session's raw data folder must be below one of these; without it every "
            "session task is refused"
        ),
        "otf_roots": _abs_paths(
            "a processing folder must be below one of these; without it every session task "
            "is refused"
        ),
        "otf_root": {
            **_ABS_PATH,
            "description": "where processing folders are made when EMhub's config:sessions "
            "has no otf.root and the session no extra.otf.path",
        },
        "profile": _PROFILE,
        "idle_timeout": {
            **_SECONDS,
            "description": "seconds without new movies after which a session ends",
        },
        "report_interval": {
            **_SECONDS,
            "description": "seconds between task events when nothing changes",
        },
        "poll_interval": {**_SECONDS, "description": "seconds between scans of the raw folder"},
        "raw_wait": {
            **_SECONDS,
            "description": "seconds a session task waits for its raw folder to appear "
            "(default: idle_timeout)",
        },
        "max_runs": {
            "type": "integer",
            "minimum": 1,
            "description": "concurrent Snakemake runs per session (on disjoint batches)",
        },
        "batches_per_run": {
            "type": "integer",
            "minimum": 0,
            "description": "oldest pending batches per Snakemake run (0: all; default 1)",
        },
        "max_attempts": {
            "type": "integer",
            "minimum": 1,
            "description": "Snakemake runs per batch before it is declared failed (default 2)",
        },
        "worker_runs": {
            "type": "integer",
            "minimum": 1,
            "description": "Snakemake runs at once over all sessions of this worker, shared "
            "round robin (default 4)",
        },
        "cores": {
            "type": "integer",
            "minimum": 1,
            "description": "local cores the worker's runs share: each run gets cores / "
            "worker_runs (default: every core)",
        },
        "config": {**_RUN_CONFIG, "description": "config.yaml values for every session"},
        "microscopes": {
            "type": "object",
            "description": "per EMhub resource name: profile, config and rule folders",
            "additionalProperties": MICROSCOPE,
        },
        "rule_dirs": _RULE_DIRS,
        "trusted_groups": {
            "type": "array",
            "description": "groups whose write access to processing folders, workflows and "
            "rules is trusted (otherwise such folders are refused)",
            "items": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*[$]?$"},
        },
    },
}

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}


def _names(description: str) -> dict[str, Any]:
    return {
        "anyOf": [_NAME, {"type": "array", "items": _NAME}],
        "description": description,
    }


TRANSFER: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "session 'transfer' tasks: moving EPU frames folders to storage",
    "additionalProperties": False,
    "properties": {
        "mode": {
            "enum": ["move", "copy"],
            "description": "move (default) or copy the frames to storage",
        },
        "settle_seconds": {
            "type": "number",
            "minimum": 0,
            "description": "a file is transferred once unchanged for this long",
        },
        "sleep": {**_SECONDS, "description": "seconds between scans of the frames folder"},
        "idle_timeout": {
            **_SECONDS,
            "description": "the task ends after this long with nothing new and nothing left",
        },
        "frames_roots": _abs_paths(
            "a session's frames folder must be below one of these (default: otf.raw_roots)"
        ),
    },
}

CLUSTER: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "cluster-slurm / cluster-lsf tasks: which queues to report",
    "additionalProperties": False,
    "properties": {
        "slurm_partitions": _names("SLURM partitions to report (default: all)"),
        "lsf_queues": _names("LSF queues to report (default: all)"),
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "emotf worker configuration",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "emhub": EMHUB,
        "otf": OTF,
        "transfer": TRANSFER,
        "cluster": CLUSTER,
        "commands": {
            "type": ["object", "null"],
            "description": "the only 'command' tasks this worker runs: name -> argv, run "
            "without a shell; absent: command tasks are refused",
            "propertyNames": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "argv of the command (the program first)",
            },
        },
        "command_timeout": {
            **_SECONDS,
            "description": "seconds before an allowlisted command is killed",
        },
    },
}


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    """The problem, without the value when it may be a credential."""
    if any("password" in str(p) for p in error.absolute_path):
        return f"fails {error.validator!r} {error.validator_value!r} (value not shown)"
    if error.validator == "pattern" and error.validator_value == _ROOT["pattern"]:
        return f"{str(error.instance)[:200]!r} must be an absolute path other than '/'"
    if error.validator == "pattern" and error.validator_value == _ABS_PATH["pattern"]:
        return f"{str(error.instance)[:200]!r} is not an absolute path"
    return error.message[:300]


def validate_worker_settings(data: dict[str, Any], source: str = "worker configuration") -> None:
    """Raise ConfigError naming each wrong key of ``data`` (the YAML file's content)."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        details = "; ".join(f"{_where(e)}: {_message(e)}" for e in errors[:10])
        raise ConfigError(f"{source}: {details}")
