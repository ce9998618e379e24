"""Task parsing bounds, the password hand-over across the re-exec, and escaped log lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from emotf.config import ConfigError
from emotf.emhub.safe_text import EscapingFormatter, clean
from emotf.emhub.secret import PASSWORD_FD_ENV, take_inherited_password
from emotf.emhub.tasks import MAX_ARGS_CHARS, Task, parse_args, tasks_of


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' * 50 + "1" + "}" * 50, "deeper than"),
        (nested(40), "deeper than"),
        ("x" * (MAX_ARGS_CHARS + 1), "too large"),
        ({"x": "y" * MAX_ARGS_CHARS}, "too large"),
        ({"x": ["y"] * MAX_ARGS_CHARS}, "too large"),
        ("[1]", "JSON object"),
        (17, "JSON object"),
        ("{nope", "not valid JSON"),
    ],
)
def test_bad_args_mark_the_task_invalid_without_raising(raw: object, reason: str) -> None:
    task = Task.from_reply({"id": "1-0", "name": "session", "args": raw})
    assert reason in task.invalid and task.args == {}


def test_good_args_and_entries() -> None:
    assert parse_args('{"action": "otf", "session_id": 3}') == {"action": "otf", "session_id": 3}
    assert parse_args(None) == {} and parse_args(nested(30)) == nested(30)
    entries = [None, "x", {"id": "../1"}, {"id": "2-0", "name": ["x"], "history": 4}]
    entries.append({"id": "3-0", "name": "session", "args": {"a": 1}, "history": True})
    reply = {"tasks": entries}
    tasks = tasks_of(reply)
    assert [(t.id, t.name, t.history, t.invalid) for t in tasks] == [
        ("2-0", "", 4, ""), ("3-0", "session", 0, "")
    ]  # fmt: skip
    assert tasks_of({"tasks": "nope"}) == tasks_of(None) == []


def test_clean_escapes_control_characters_and_bounds_length() -> None:
    assert clean("a\nb\r\x1b[2K\u2028c\td") == "a\\nb\\r\\x1b[2K\\u2028c\\td"
    assert clean("é ok", 10) == "é ok"
    assert clean("x" * 50, 10) == "x" * 10 + "...[40 more]"


def test_escaping_formatter_keeps_each_record_on_one_line() -> None:
    formatter = EscapingFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "task %s", ("a\nERROR forged",),
                               None)  # fmt: skip
    assert formatter.format(record) == "INFO task a\\nERROR forged"
    assert record.getMessage() == "task a\nERROR forged"  # the record itself is unchanged


def test_inherited_password_is_read_once_and_the_pipe_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, "pä ss\n".encode())
    os.close(write_end)
    monkeypatch.setenv(PASSWORD_FD_ENV, str(read_end))
    assert take_inherited_password() == "pä ss\n"
    assert PASSWORD_FD_ENV not in os.environ  # children do not see a stale number
    with pytest.raises(OSError):
        os.fstat(read_end)
    assert take_inherited_password() is None
    monkeypatch.setenv(PASSWORD_FD_ENV, "three")
    with pytest.raises(ConfigError):
        take_inherited_password()


def test_reexec_drops_the_password_from_the_process_environment() -> None:
    """A real re-exec: the same PID, a start environment without the password, which the
    new program still gets."""
    code = (
        "import os\n"
        "from emotf.emhub.secret import reexec_without_password, take_inherited_password\n"
        "pid = os.environ.get('FIRST_PID') or str(os.getpid())\n"
        "os.environ['FIRST_PID'] = pid\n"
        "reexec_without_password()\n"
        "start_env = open('/proc/self/environ', 'rb').read()\n"
        "print(pid == str(os.getpid()), b'hunter2-x' in start_env, take_inherited_password())\n"
    )
    env = dict(os.environ, EMHUB_PASSWORD="hunter2-x")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "False", "hunter2-x"], done.stderr
