"""Configuration defaults/validation and processing-folder creation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emotf.config import ConfigError, build_config, read_config
from emotf.project import prepare_folder


def test_defaults_come_from_the_schema() -> None:
    config = build_config({"session_dir": "/data/s1"})
    assert config["motioncor"]["backend"] == "relion"
    assert config["ctffind"]["backend"] == "emotf"
    assert config["cryolo"]["backend"] == "relion_log"
    assert config["batches"]["size"] == 16
    assert config["acquisition"]["cs"] == 2.7


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "session_dir"),
        ({"session_dir": "/x", "motioncor": {"backend": "gctf"}}, "motioncor.backend"),
        ({"session_dir": "/x", "batches": {"size": 0}}, "batches.size"),
        ({"session_dir": "/x", "typo_key": 1}, "typo_key"),
    ],
)
def test_invalid_config_is_rejected_with_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)


def test_every_schema_key_is_described() -> None:
    from emotf.config import load_schema

    def walk(node: dict, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}{key} has no description"
            walk(sub, f"{path}{key}.")

    walk(load_schema(), "")


def test_prepare_folder_is_self_contained_and_keeps_existing_files(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    out = tmp_path / "otf"
    config = prepare_folder(out, raw, {"batches": {"size": 4}})
    assert config["batches"]["size"] == 4
    assert (out / "workflow" / "Snakefile").is_file()
    assert (out / "workflow" / "rules" / "motioncor.smk").is_file()
    assert (out / "profiles" / "default" / "config.yaml").is_file()
    assert read_config(out / "config.yaml") == config
    # a rule edited by staff survives reopening the folder
    rule = out / "workflow" / "rules" / "ctffind.smk"
    rule.write_text(rule.read_text() + "\n# local edit\n")
    (out / "notes.txt").write_text("keep me")
    again = prepare_folder(out, raw, {})
    assert again["batches"]["size"] == 4
    assert rule.read_text().endswith("# local edit\n")
    assert (out / "notes.txt").read_text() == "keep me"


def test_prepare_folder_refuses_wrong_session_and_nesting(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    prepare_folder(tmp_path / "otf", raw, {})
    with pytest.raises(ConfigError, match="belongs to session"):
        prepare_folder(tmp_path / "otf", other, {})
    with pytest.raises(ConfigError, match="inside the raw session"):
        prepare_folder(raw / "otf", raw, {})
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_folder(tmp_path / "x", tmp_path / "missing", {})
    assert yaml.safe_load((tmp_path / "otf" / "config.yaml").read_text())["session_dir"] == str(raw)
