"""Bad and hostile task input, against a real EMhub 1.0.2 + redis-server.

Every bad task ends with exactly one ``error`` event and ``done``; the worker stays up,
creates nothing outside its allowed roots, runs no shell and dispatches on no server string.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import EmhubServer
from workerproc import WORKER, Factory, last_event, otf_task_of, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "emotf"
# Snakemake files and profiles: text, not Python the ast module can read. A line (outside
# comments) must not run a shell or evaluate text: no ``shell:`` directive in the built-in
# rules, no shell=True, os.system/os.popen, eval/exec, subprocess's shell helpers.
TEXT_FORBIDDEN = {
    "shell: directive": re.compile(r"^\s*shell\s*:"),
    "shell=True": re.compile(r"\bshell\s*=\s*True\b"),
    "os.system/os.popen": re.compile(r"\bos\s*\.\s*(system|popen)\b"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "subprocess shell helper": re.compile(r"\bgetoutput\b|\bgetstatusoutput\b"),
}


def assert_one_error(server: EmhubServer, task_id: str, label: str, pattern: str = "") -> str:
    wait_for(lambda: server.is_done(task_id), 90, f"task '{label}'")
    final = last_event(server, task_id)
    error = final.get("error", "")
    assert error and len(error) < 500, (label, final)
    assert pattern.lower() in error.lower(), (label, error)
    errors = [e for e in server.task_history(task_id) if "error" in e]
    assert len(errors) == 1, (label, errors)  # reported once, not in a loop
    return error


def session_task(server: EmhubServer, name: str, raw: str, otf: str | None = None) -> str:
    sid = server.create_session(
        name, Path(raw), tasks=[[WORKER, {"action": "otf"}]], otf_path=Path(otf) if otf else None
    )
    return otf_task_of(server, sid)


def test_bad_task_args_end_with_one_error(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    worker = worker_factory()
    outside = tmp_path / "outside"  # a folder outside both allowed roots
    outside.mkdir()
    (emhub_server.raw_root / "link_out").symlink_to(outside)
    (emhub_server.otf_root / "link_OTF").symlink_to(outside)
    good_raw = emhub_server.raw_root / "sec_good"
    good_raw.mkdir()
    escape_otf = emhub_server.otf_root.parent / "escape_OTF"
    cases: dict[str, tuple[str, dict[str, Any], str]] = {
        "no session id": ("session", {"action": "otf"}, "session_id"),
        "unknown session": ("session", {"action": "otf", "session_id": 99999}, "not found"),
        "unknown action": ("session", {"action": "rm_rf", "session_id": 1}, "unknown"),
        "method as action": ("session", {"action": "__class__", "session_id": 1}, "unknown"),
        "text id": ("session", {"action": "otf", "session_id": "1; rm -rf /"}, "integer"),
        "float id": ("session", {"action": "otf", "session_id": 1.5}, "integer"),
        "list id": ("session", {"action": "otf", "session_id": [1]}, "integer"),
        "bool id": ("session", {"action": "otf", "session_id": True}, "integer"),
        "negative id": ("session", {"action": "otf", "session_id": -3}, "positive"),
        "huge action": ("session", {"action": "x" * 1_000_000, "session_id": 1}, "too large"),
        "huge id": (  # beyond int()'s 4300-digit limit: refused as a bad id, not looked up
            "session",
            {"action": "otf", "session_id": "9" * 100_000},
            f"session_id '{'9' * 40}' is not an integer",
        ),
    }
    for method in ("__init__", "run", "shutdown", "start_task", "_execute", "finish", "x" * 5000):
        cases[f"task name {method[:20]}"] = (method, {"session_id": 1}, "no handler")
    ids = {label: emhub_server.create_task(WORKER, n, a) for label, (n, a, _) in cases.items()}
    paths = {
        "raw elsewhere": (session_task(emhub_server, "p1", "/etc"), "outside"),
        "raw with ..": (
            session_task(emhub_server, "p2", f"{emhub_server.raw_root}/../../{outside.name}"),
            "outside",
        ),
        "raw symlink out": (
            session_task(emhub_server, "p3", str(emhub_server.raw_root / "link_out")),
            "outside",
        ),
        "raw relative": (session_task(emhub_server, "p4", "sec_good"), "absolute"),
        "otf elsewhere": (
            session_task(emhub_server, "p5", str(good_raw), str(outside / "x_OTF")),
            "outside",
        ),
        "otf with ..": (
            session_task(
                emhub_server, "p6", str(good_raw), f"{emhub_server.otf_root}/../escape_OTF"
            ),
            "outside",
        ),
        "otf symlink out": (
            session_task(
                emhub_server, "p7", str(good_raw), str(emhub_server.otf_root / "link_OTF")
            ),
            "outside",
        ),
    }
    for label, (_n, _a, pattern) in cases.items():
        assert_one_error(emhub_server, ids[label], label, pattern)
    for label, (task_id, pattern) in paths.items():
        assert_one_error(emhub_server, task_id, label, pattern)
    assert list(outside.iterdir()) == [] and not escape_otf.exists()  # nothing created outside
    assert worker.alive()


def test_command_tasks_run_only_allowlisted_names(
    emhub_server: EmhubServer, worker_factory: Factory, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    default = worker_factory()
    task = emhub_server.create_task(WORKER, "command", {"cmd": "echo hi"})
    assert_one_error(emhub_server, task, "command, no allowlist", "disabled")
    default.kill()
    allowed = worker_factory(settings={"commands": {"hello": ["echo", "hello-allowlisted"]}})
    ok = emhub_server.create_task(WORKER, "command", {"cmd": "hello"})
    wait_for(lambda: emhub_server.is_done(ok), 60, "the allowlisted command")
    history = emhub_server.task_history(ok)
    assert any("hello-allowlisted" in e.get("output", "") for e in history), history
    assert last_event(emhub_server, ok).get("returncode") == "0"
    refused = {
        "shell chars": f"hello; touch {marker}",
        "not listed": "rm",
        "path": "/bin/echo",
    }
    for label, cmd in refused.items():
        task_id = emhub_server.create_task(WORKER, "command", {"cmd": cmd})
        assert_one_error(emhub_server, task_id, label, "allowlist")
    task_id = emhub_server.create_task(WORKER, "command", {"cmd": ["echo", "x"]})
    assert_one_error(emhub_server, task_id, "argv from the server", "allowlist")
    assert not marker.exists()
    assert allowed.alive()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_hostile_task_args_end_once_and_the_worker_stays_up(
    emhub_server: EmhubServer, worker_factory: Factory
) -> None:
    """Issue 17 item 4: args nested 100k deep (EMhub stores a string as it is, and hands it
    back for the worker to parse), huge args and a name with a newline (log injection):
    each task ends with one error, the worker stays alive and a good task after them runs."""
    worker = worker_factory(settings={"commands": {"hello": ["echo", "still-alive"]}})
    forged = "FAKE-LINE emotf.emhub.worker: worker stopped"
    cases: dict[str, tuple[str, Any, str]] = {
        "100k deep (text)": ("session", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "200 deep (object)": ("session", {"action": "otf", "x": nested(200)}, "deeper than"),
        "3 MB": (
            "session",
            {"action": "otf", "session_id": 1, "x": "y" * 3_000_000},
            "too large",
        ),  # fmt: skip
        "3 MB (text)": ("session", '{"x": "' + "y" * 3_000_000 + '"}', "too large"),
        "not an object": ("session", "[1, 2]", "json object"),
        "not JSON": ("session", "{nope", "not valid json"),
        "newline in name": (f"session\n{forged}", {"session_id": 1}, "no handler"),
    }
    ids = {}
    for label, (name, args, _pattern) in cases.items():
        task = {"name": name, "args": args}
        reply = emhub_server.api("create_task", {"attrs": {"worker": WORKER, "task": task}})
        ids[label] = str(reply["task"]["id"])
    for label, (_name, _args, pattern) in cases.items():
        assert_one_error(emhub_server, ids[label], label, pattern)
    good = emhub_server.create_task(WORKER, "command", {"cmd": "hello"})
    wait_for(lambda: emhub_server.is_done(good), 60, "a good task after the hostile ones")
    assert any("still-alive" in e.get("output", "") for e in emhub_server.task_history(good))
    assert worker.alive()
    lines = worker.log_text().splitlines()
    assert any(forged in line for line in lines)  # the name was logged ...
    assert not any(line.startswith("FAKE-LINE") for line in lines)  # ... on its own line


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def test_package_runs_no_shell_and_dispatches_on_no_string() -> None:
    """Static guard over every module: no shell, no eval, no attribute lookup by a computed
    name except the progress counters (names from a constant table)."""
    forbidden = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                 "eval", "exec", "__import__", "importlib.import_module"}  # fmt: skip
    dynamic_ok = {"progress.py"}  # setattr/getattr over a fixed tuple of counter names
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            where = f"{path.relative_to(PACKAGE)}:{call.lineno}"
            name = _name(call.func)
            if name in forbidden:
                problems.append(f"{where}: {name}")
            for kw in call.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    problems.append(f"{where}: shell=")
            if name in ("getattr", "setattr", "hasattr") and len(call.args) >= 2:
                if not isinstance(call.args[1], ast.Constant) and path.name not in dynamic_ok:
                    problems.append(f"{where}: {name} with a computed name")
    assert not problems, problems
    assert shutil.which("setpriv") or os.geteuid() != 0  # the fault tests need it as root


def text_problems(path: Path, text: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        problems += [f"{path}:{number}: {what}" for what, pattern in TEXT_FORBIDDEN.items()
                     if pattern.search(code)]  # fmt: skip
    return problems


def test_workflows_and_profiles_run_no_shell() -> None:
    """The static guard also covers the built-in rules and the shipped profiles."""
    files = [ROOT / "workflows" / "Snakefile", *sorted((ROOT / "workflows").rglob("*.smk")),
             *sorted((ROOT / "profiles").rglob("*.yaml"))]  # fmt: skip
    assert len([f for f in files if f.suffix == ".smk"]) >= 5 and files[0].is_file()
    assert any(f.parent.name == "slurm" for f in files)  # the profiles are scanned too
    problems = [p for f in files for p in text_problems(f, f.read_text(encoding="utf-8"))]
    assert not problems, problems
    planted = 'rule x:\n    shell: "rm -rf {input}"\n    run:\n        os.system("ls")\n'
    planted += "        eval(params.x)  # comment: exec(\nsubmit: sbatch --wrap shell=True\n"
    found = text_problems(Path("planted.smk"), planted)
    assert [f.split(": ", 1)[1] for f in found] == [
        "shell: directive", "os.system/os.popen", "eval/exec", "shell=True"
    ], found  # fmt: skip
