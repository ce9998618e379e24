"""The worker's events against a scripted HTTP stand-in for EMhub (tests/emhub/scripted_server.py):
numbering, exactly one final ``done``, no traceback sent, bad tasks ended once, log lines.

The read-timeout cases need a server that stores an event and then loses its reply, which a
real EMhub does not do on demand, so the HTTP layer is scripted here (the real-server tests
in tests/faults/ cover the rest).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from scripted_server import Script, scripted_server

from emotf.emhub.client import EmhubClient, RetryPolicy, Task
from emotf.emhub.outbox import Outbox
from emotf.emhub.worker import Worker

OK = (200, {"task": {"result": "OK"}}, 0.0)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    with scripted_server() as scripted:
        yield scripted


def make_worker(url: str, attempts: int = 4, timeout: float = 5.0, **kwargs: Any) -> Worker:
    client = EmhubClient(url, "otf", "pw", "host1", timeout=timeout, sleep=lambda _s: None,
                         retry=RetryPolicy(attempts=attempts, first_delay=0.01))  # fmt: skip
    client.token, client._logged_in = "tok", True  # noqa: SLF001 - no login round trip
    worker = Worker(client, kwargs.pop("registry", {}), finish_delay=0.01, **kwargs)
    timer = threading.Timer(20, worker.stopping.set)  # bounds a retry loop that never ends
    timer.daemon = True
    timer.start()
    return worker


def events(script: Script) -> list[dict[str, Any]]:
    return [body["attrs"]["event"] for body in script.bodies("update_task")]


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    raise AssertionError("condition not reached")


def listed(status: str) -> tuple[int, Any, float]:
    task = {"id": "5-0", "name": "command", "args": {}, "worker": "host1", "status": status}
    return (200, {"tasks": [task]}, 0.0)


def test_final_event_is_not_sent_twice_after_a_read_timeout(server: tuple[str, Script]) -> None:
    """EMhub stored the ``done`` event but its reply came too late: the worker asks EMhub
    (the task shows ``done``) instead of sending ``done`` again."""
    url, script = server
    script.on("update_task", (200, {"task": {"result": "OK"}}, 1.0))  # stored, reply lost
    script.on("get_all_tasks", listed("done"))
    worker = make_worker(url, timeout=0.3)
    worker.finish(Task("5-0", "command", {}), {"returncode": 0})
    dones = [e for e in events(script) if "done" in e]
    assert len(dones) == 1, dones
    assert [c[0] for c in script.calls] == ["update_task", "get_all_tasks"]


def test_final_event_resent_once_when_emhub_does_not_hold_it(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("update_task", (504, "gateway timeout", 0.0), OK)
    script.on("get_all_tasks", listed("pending"))
    worker = make_worker(url)
    worker.finish(Task("5-0", "command", {}), {"returncode": 0})
    sent = events(script)
    assert len(sent) == 2 and all("done" in e for e in sent), sent
    assert sent[0]["seq"] == sent[1]["seq"] == 1  # the resend is recognisably the same event


def test_connection_refused_final_event_is_retried_without_asking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request that never reached the server (nothing listens) is simply sent again: it
    is not treated as possibly stored."""
    worker = make_worker("http://127.0.0.1:9", attempts=2)
    threading.Timer(0.5, worker.stopping.set).start()
    with caplog.at_level(logging.WARNING):
        worker.finish(Task("5-0", "command", {}), {"returncode": 0})  # ends when stopping
    assert "final event not delivered yet" in caplog.text
    assert "unconfirmed" not in caplog.text


def test_every_event_has_a_sequence_number_kept_on_resend(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("update_task", (502, "bad gateway", 0.0), OK)
    worker = make_worker(url, attempts=1)  # no retry in the client: the outbox resends
    task = Task("7-0", "session", {})
    box = Outbox(lambda event: worker.deliver(task, event), lambda extra: None,
                 first_delay=0.01, max_delay=0.05)  # fmt: skip
    box.put("event", {"imported": 1})
    assert box.flush(threading.Event())
    box.close()
    assert worker.send_event(task, {"imported": 2})
    worker.finish(task, {"status": "finished"})
    sent = events(script)
    assert [e["seq"] for e in sent] == [1, 1, 2, 3], sent
    assert sent[0] == sent[1] and "done" in sent[-1]
    script.calls.clear()
    resumed = Task("8-0", "session", {}, history=10)  # created + 9 events already stored
    worker.send_event(resumed, {"imported": 5})
    assert events(script)[0]["seq"] == 10


class Boom:
    def run(self) -> dict[str, Any]:
        raise ValueError("broken\nFAKE-LINE level=CRITICAL")

    def stop(self, user: bool = True) -> None:
        pass


def test_crash_sends_a_short_error_and_no_traceback(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("update_task", OK)
    worker = make_worker(url, registry={"boom": lambda w, t, r: Boom()})
    worker.start_task(Task("9-0", "boom", {}))
    wait_until(lambda: any("done" in e for e in events(script)))
    final = events(script)[-1]
    assert "done" in final and "stack" not in final, final
    assert "ValueError" in final["error"] and "\n" not in final["error"]


def test_bad_task_ends_with_one_error_and_names_are_logged_on_one_line(
    server: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = server
    script.on("update_task", OK)
    worker = make_worker(url)
    bad = Task("10-0", "session", {}, invalid="task args nested too deeply")
    evil = Task("11-0", "x\nFAKE-LINE worker stopped\r\x1b[2K", {"a\nb": 1})
    with caplog.at_level(logging.DEBUG):
        for task in (bad, evil, bad):
            worker.dispatch(task, "new")
    sent = events(script)
    assert [e["error"] for e in sent] == [
        "task args nested too deeply",
        "no handler for task name x\\nFAKE-LINE worker stopped\\r\\x1b[2K",
    ]
    assert all(e["done"] == 1 for e in sent)
    messages = [r.getMessage() for r in caplog.records]
    assert any("FAKE-LINE" in m for m in messages)  # the name was logged ...
    assert not any(ch in m for m in messages for ch in "\n\r\x1b"), messages  # ... escaped


def test_poll_loop_survives_replies_nothing_expects(server: tuple[str, Script]) -> None:
    """Malformed replies and task entries are logged; the loop goes on and the good task in
    the same reply still runs."""
    url, script = server
    good = {"id": "12-0", "name": "nothing", "args": "{}"}
    deep = {"id": "13-0", "name": "nothing", "args": "[" * 100_000 + "]" * 100_000}
    script.on("get_new_tasks", (200, {"tasks": "not a list"}, 0.0),
              (200, {"tasks": [None, {"id": "x\ny"}, deep, good]}, 0.0),
              (200, {"tasks": []}, 0.2))  # fmt: skip
    script.on("get_pending_tasks", (200, {"tasks": []}, 0.0))
    script.on("connect_worker", (200, {"token": "tok"}, 0.0))
    script.on("update_task", OK)
    worker = make_worker(url)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(events(script)) >= 2)
    finally:
        worker.shutdown(wait=5)
        thread.join(10)
    by_task = {b["attrs"]["task_id"]: b["attrs"]["event"] for b in script.bodies("update_task")}
    assert "nested too deeply" in by_task["13-0"]["error"]
    assert "no handler" in by_task["12-0"]["error"]  # the good entry was not lost
    assert not thread.is_alive()
