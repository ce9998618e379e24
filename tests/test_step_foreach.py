"""``emotf step foreach``: a facility command per movie, recorded like a built-in step."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

from emotf.fsutil import atomic_write_json
from emotf.steps.foreach import fill, foreach, parse_metrics


def step_file(path: Path, movies: dict[str, dict[str, object]]) -> Path:
    atomic_write_json(
        path,
        {
            "batch": "b000001",
            "step": "motioncor",
            "backend": "x",
            "started": 1.0,
            "finished": 2.0,
            "movies": movies,
        },
    )
    return path


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tool.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_metrics_json_last_line_or_key_values() -> None:
    assert parse_metrics('progress 10%\n{"ice": 0.5, "ok": false}\n') == {"ice": 0.5}
    assert parse_metrics("ice = 12\nname=thin ice\nnoise\n") == {"ice": 12, "name": "thin ice"}
    assert parse_metrics("") == {}


def test_fill_names_a_missing_field() -> None:
    assert fill(
        ["x", "{micrograph}", "--px={pixel_size}"], {"micrograph": "a.mrc", "pixel_size": 1.1}
    ) == ["x", "a.mrc", "--px=1.1"]
    try:
        fill(["{nope}"], {})
    except KeyError as exc:
        assert exc.args[0] == "nope"
    else:
        raise AssertionError("no KeyError")


def test_each_movie_ok_or_failed_with_stderr_and_fields(tmp_path: Path) -> None:
    ok = {"ok": True, "time": 1.0}
    mc = step_file(
        tmp_path / "mc.json",
        {
            "a": {**ok, "micrograph": "A.mrc"},
            "b": {**ok, "micrograph": "B.mrc"},
            "c": {**ok, "micrograph": "C.mrc"},
            "d": {"ok": False, "time": 1.0, "reason": "x"},
        },
    )
    tool = script(
        tmp_path,
        'case "$1" in\n'
        '  B.mrc) echo "reading $1" >&2; echo "thick ice here" >&2; exit 3;;\n'
        "  C.mrc) sleep 5;;\n"
        '  *) echo "progress"; echo "score=0.25"; echo "label=good";;\n'
        "esac\n",
    )
    out = tmp_path / "Ice" / "ice.json"
    log = tmp_path / "ice.log"
    result = foreach("ice", "b000001", [mc], out, [str(tool), "{micrograph}"], 2.0, log)
    data = json.loads(out.read_text())
    assert data["step"] == "ice" and data["backend"] == "foreach"
    movies = data["movies"]
    assert set(movies) == {"a", "b", "c"}  # d failed motion correction: not run
    assert movies["a"]["ok"] and movies["a"]["score"] == 0.25 and movies["a"]["label"] == "good"
    assert movies["b"] == {
        **movies["b"],
        "ok": False,
        "reason": "exit code 3: reading B.mrc | thick ice here",
    }
    assert movies["c"]["ok"] is False and movies["c"]["reason"] == "timed out after 2 s"
    assert "A.mrc" in log.read_text()
    assert len(result.ok()) == 1


def test_a_missing_program_fails_each_movie_not_the_batch(tmp_path: Path) -> None:
    mc = step_file(tmp_path / "mc.json", {"a": {"ok": True, "time": 1.0, "micrograph": "A"}})
    out = tmp_path / "x.json"
    foreach("x", "b000001", [mc], out, [str(tmp_path / "missing-tool"), "{micrograph}"])
    movie = json.loads(out.read_text())["movies"]["a"]
    assert movie["ok"] is False and movie["reason"].startswith("program not found")
    foreach("x", "b000001", [mc], out, ["true", "{defocus_u}"])
    movie = json.loads(out.read_text())["movies"]["a"]
    assert "{defocus_u}" in movie["reason"] and "not a field" in movie["reason"]


def test_command_line(tmp_path: Path) -> None:
    mc = step_file(tmp_path / "mc.json", {"a": {"ok": True, "time": 1.0, "micrograph": "A"}})
    out = tmp_path / "y.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emotf",
            "step",
            "foreach",
            "--step",
            "y",
            "--batch",
            "b000001",
            "--input",
            str(mc),
            "--output",
            str(out),
            "--",
            "echo",
            "n={micrograph}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["movies"]["a"]["n"] == "A"
