"""Tasks as EMhub hands them out, parsed so that no task can hurt the worker.

Task arguments are bounded (:data:`MAX_ARGS_CHARS`, :data:`MAX_ARGS_DEPTH`) and checked
without recursion. A task whose arguments are too large, too deep or not a JSON object is
still returned, marked ``invalid``, so the worker ends it with one error instead of failing
on it again at every start (``get_pending_tasks`` would hand it back).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from .safe_text import clean

log = logging.getLogger(__name__)

MAX_ARGS_CHARS = 256 * 1024  # a session task's args are a few hundred characters
MAX_ARGS_DEPTH = 32
TASK_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")  # a Redis stream id, as EMhub makes them


class BadArgs(ValueError):
    """Task args that no handler may see (too large, too deep, not a JSON object)."""


def _check_shape(value: Any) -> None:
    """Bound size and depth without recursion (a deep value must not blow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    size = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_ARGS_DEPTH:
            raise BadArgs(f"task args nested deeper than {MAX_ARGS_DEPTH} levels")
        if isinstance(item, dict):
            size += 2 + sum(len(str(k)) + 4 for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            size += 2 + len(item)
            stack.extend((v, depth + 1) for v in item)
        else:
            size += len(item) + 2 if isinstance(item, str) else 8
        if size > MAX_ARGS_CHARS:
            raise BadArgs(f"task args too large (over {MAX_ARGS_CHARS} characters)")


def parse_args(raw: Any) -> dict[str, Any]:
    """Task args from a reply (a JSON object, or a string holding one); raises BadArgs."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        if len(raw) > MAX_ARGS_CHARS:
            raise BadArgs(f"task args too large ({len(raw)} characters, at most {MAX_ARGS_CHARS})")
        try:
            raw = json.loads(raw)
        except RecursionError:
            raise BadArgs("task args nested too deeply") from None
        except ValueError:
            raise BadArgs("task args are not valid JSON") from None
    if not isinstance(raw, dict):
        raise BadArgs(f"task args must be a JSON object, not {type(raw).__name__}")
    _check_shape(raw)
    return raw


@dataclass(frozen=True)
class Task:
    id: str
    name: str
    args: dict[str, Any]
    history: int = 0  # events EMhub held when the task was handed out (get_pending_tasks)
    invalid: str = ""  # why the task cannot run; "" when it can

    @classmethod
    def from_reply(cls, data: dict[str, Any]) -> Task:
        """Never raises for a task with a valid id: bad args mark the task ``invalid``."""
        task_id = str(data.get("id", ""))
        if not TASK_ID.match(task_id):
            raise BadArgs(f"task id {clean(task_id, 40)} is not a stream id")
        name = data.get("name")
        history = data.get("history")
        try:
            args, invalid = parse_args(data.get("args")), ""
        except BadArgs as exc:
            args, invalid = {}, str(exc)
        return cls(
            id=task_id,
            name=name if isinstance(name, str) else "",
            args=args,
            history=history if type(history) is int and history > 0 else 0,
            invalid=invalid,
        )


def tasks_of(data: Any) -> list[Task]:
    """The tasks of a get_*_tasks reply; an entry without a usable id is skipped (logged):
    one bad entry never costs the others."""
    items = data.get("tasks") if isinstance(data, dict) else None
    tasks: list[Task] = []
    for item in items if isinstance(items, list) else []:
        try:
            tasks.append(Task.from_reply(item if isinstance(item, dict) else {}))
        except Exception as exc:  # noqa: BLE001 - whatever the server sent, go on
            log.warning("task entry skipped: %s", clean(exc))
    return tasks
