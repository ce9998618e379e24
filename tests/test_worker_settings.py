"""Worker configuration: checked against its schema at start, and allowed roots fail closed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from emotf.config import ConfigError
from emotf.emhub.paths import otf_paths
from emotf.emhub.settings import load_settings
from emotf.emhub.worker import TaskError
from emotf.emhub.worker_schema import SCHEMA, validate_worker_settings

REPO = Path(__file__).resolve().parents[1]
EMHUB = {"url": "http://127.0.0.1:9", "user": "otf", "password": "secret-pw"}


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_string_root_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    """``raw_roots: /data/raw`` used to become ['/', 'd', ...]: '/' accepted every path."""
    path = write(tmp_path, {"emhub": EMHUB, "otf": {"raw_roots": "/data/raw"}})
    with pytest.raises(ConfigError, match=r"otf\.raw_roots: '/data/raw' is not of type 'array'"):
        load_settings(path)


def test_the_worker_exits_with_code_2_at_start(tmp_path: Path) -> None:
    path = write(tmp_path, {"emhub": EMHUB, "otf": {"otf_roots": "/data/otf", "max_runs": 0}})
    proc = subprocess.run(
        [sys.executable, "-m", "emotf", "worker", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "otf.otf_roots" in proc.stderr and "otf.max_runs" in proc.stderr
    assert "secret-pw" not in proc.stderr + proc.stdout


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "typo in a key": ({"otf": {"raw_root": ["/data"]}}, "'raw_root' was unexpected"),
    "relative root": ({"otf": {"otf_roots": ["data/otf"]}}, "otf.otf_roots.0"),
    "empty roots": ({"otf": {"raw_roots": []}}, "otf.raw_roots"),
    "the whole disk": ({"otf": {"raw_roots": ["/data", "//"]}}, "otf.raw_roots.1"),
    "timeout as text": ({"otf": {"idle_timeout": "30 min"}}, "otf.idle_timeout"),
    "scope profile": ({"otf": {"microscopes": {"K1": {"profile": 3}}}}, "microscopes.K1.profile"),
    "scope rule dir": ({"otf": {"microscopes": {"K1": {"rule_dirs": "/r"}}}}, "K1.rule_dirs"),
    "rule dirs": ({"otf": {"rule_dirs": ["rules"]}}, "otf.rule_dirs.0"),
    "groups": ({"otf": {"trusted_groups": "staff"}}, "otf.trusted_groups"),
    "command as text": ({"commands": {"df": "df -h"}}, "commands.df"),
    "command name": ({"commands": {"rm -rf": ["rm"]}}, "commands"),
    "timeout": ({"command_timeout": -1}, "command_timeout"),
    "unknown section": ({"otff": {}}, "'otff' was unexpected"),
    "url": ({"emhub": {"url": "emhub.example.org"}}, "emhub.url"),
    "transfer mode": ({"transfer": {"mode": "rsync"}}, "transfer.mode"),
    "frames roots": ({"transfer": {"frames_roots": "/frames"}}, "transfer.frames_roots"),
    "partition name": ({"cluster": {"slurm_partitions": ["gpu; rm"]}}, "slurm_partitions"),
}

FULL: dict[str, Any] = {
    "emhub": {"url": "https://emhub.example.org", "user": "otf", "worker": "krios-gpu01",
              "password_file": "/etc/emotf/password"},
    "otf": {
        "raw_roots": ["/data/raw"], "otf_roots": ["/data/otf"], "otf_root": "/data/otf",
        "profile": None, "idle_timeout": 1800, "report_interval": 30, "poll_interval": 5,
        "raw_wait": 600, "max_runs": 2, "config": {"batches": {"size": 16}},
        "rule_dirs": ["/opt/facility/rules"], "trusted_groups": ["cryoem-staff"],
        "microscopes": {"Krios01": {"profile": "slurm", "config": {}, "rule_dirs": ["/r"]}},
    },
    "transfer": {"mode": "copy", "settle_seconds": 0, "sleep": 60, "idle_timeout": 86400,
                 "frames_roots": ["/frames"]},
    "cluster": {"slurm_partitions": ["cpu", "gpu"], "lsf_queues": "gpu"},
    "commands": {"disk_usage": ["df", "-h", "/data"]},
    "command_timeout": 300,
}  # fmt: skip


def test_every_documented_key_is_accepted() -> None:
    validate_worker_settings(FULL)
    validate_worker_settings({"emhub": None, "otf": None, "commands": None})  # empty sections


@pytest.mark.parametrize("label", sorted(BAD))
def test_wrong_types_name_the_key(label: str) -> None:
    data, where = BAD[label]
    with pytest.raises(ConfigError) as caught:
        validate_worker_settings(data)
    assert where in str(caught.value)


def test_a_bad_password_value_is_not_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_worker_settings({"emhub": {"password": 271828182}})
    assert "emhub.password" in str(caught.value) and "271828182" not in str(caught.value)


def test_every_key_has_a_description() -> None:
    missing: list[str] = []

    def walk(node: dict[str, Any], where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            if not sub.get("description"):
                missing.append(f"{where}{key}")
            walk(sub, f"{where}{key}.")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            if not extra.get("description"):
                missing.append(f"{where}<name>")
            walk(extra, f"{where}<name>.")

    walk(SCHEMA, "")
    assert not missing
    otf = SCHEMA["properties"]["otf"]["properties"]
    assert {"rule_dirs", "trusted_groups", "raw_roots", "otf_roots"} <= set(otf)


def test_the_shipped_example_is_valid() -> None:
    text = (REPO / "deploy" / "worker.example.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    validate_worker_settings(data)
    # the commented-out allowlist, once enabled, is valid too
    enabled = "\n".join(
        line[2:] if line.startswith(("# commands:", "#   ", "# command_timeout")) else line
        for line in text.splitlines()
    )
    enabled_data = yaml.safe_load(enabled)
    assert enabled_data.get("commands") and enabled_data.get("command_timeout")
    validate_worker_settings(enabled_data)


def session(raw: Path) -> dict[str, Any]:
    return {"id": 7, "extra": {"raw": {"path": str(raw)}, "otf": {"path": str(raw) + "_OTF"}}}


def test_no_roots_refuses_every_session(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(TaskError, match=r"no otf\.raw_roots configured"):
        otf_paths(session(raw), {}, {})
    with pytest.raises(TaskError, match=r"no otf\.otf_roots configured"):
        otf_paths(session(raw), {}, {"raw_roots": [str(tmp_path)]})


def test_a_string_root_given_directly_is_refused(tmp_path: Path) -> None:
    """Defence in depth for callers that bypass load_settings: '/etc' is not below '/'."""
    with pytest.raises(TaskError, match="not a list"):
        otf_paths(session(Path("/etc")), {}, {"raw_roots": "/data/raw", "otf_roots": "/data"})


def test_paths_below_the_roots_are_accepted(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "s1"
    raw.mkdir(parents=True)
    settings = {"raw_roots": [str(tmp_path / "raw")], "otf_roots": [str(tmp_path / "raw")]}
    got_raw, out, _overrides, profile = otf_paths(session(raw), {}, settings)
    assert got_raw == raw and out == Path(str(raw) + "_OTF") and profile is None
