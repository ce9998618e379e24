"""Unit tests of the task update outbox and the command allowlist."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from emotf.config import ConfigError
from emotf.emhub.client import EmhubError, EmhubUnavailable
from emotf.emhub.command_task import allowlist
from emotf.emhub.outbox import Outbox


class FlakyServer:
    """Records deliveries; unreachable while ``down`` is set; refuses payloads marked bad."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.delivered: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0

    def sender(self, kind: str) -> Any:
        def send(payload: dict[str, Any]) -> None:
            self.attempts += 1
            if self.down.is_set():
                raise EmhubUnavailable("cannot reach server")
            if payload.get("bad"):
                raise EmhubError("refused")
            self.delivered.append((kind, payload))

        return send


def make(server: FlakyServer, first_delay: float = 0.05) -> Outbox:
    return Outbox(server.sender("event"), server.sender("extra"), first_delay=first_delay,
                  max_delay=0.2)  # fmt: skip


def test_updates_are_delivered_in_order() -> None:
    server = FlakyServer()
    box = make(server)
    box.put("event", {"n": 1})
    assert box.flush(threading.Event())
    box.put("extra", {"n": 1})
    box.put("event", {"n": 2})
    assert box.flush(threading.Event())
    box.close()
    assert server.delivered == [("event", {"n": 1}), ("extra", {"n": 1}), ("event", {"n": 2})]


def test_outage_keeps_only_the_newest_state_and_backs_off() -> None:
    server = FlakyServer()
    server.down.set()
    box = make(server, first_delay=0.1)
    start = time.monotonic()
    for n in range(50):
        box.put("event", {"n": n})
        box.put("extra", {"n": n})
        time.sleep(0.01)
    time.sleep(0.6)
    attempts_down, elapsed = server.attempts, time.monotonic() - start
    assert box.pending() <= 2  # coalesced: one event and one extra waiting
    # backoff 0.1, 0.2, 0.2, ... s: a handful of attempts, not a busy loop
    assert 2 <= attempts_down <= 3 + elapsed / 0.2, (attempts_down, elapsed)
    server.down.clear()
    assert box.flush(threading.Event())
    box.close()
    assert ("event", {"n": 49}) in server.delivered and ("extra", {"n": 49}) in server.delivered
    assert len(server.delivered) <= 3  # at most one stale item plus the newest of each kind


def test_refused_update_is_dropped_and_others_go_on() -> None:
    server = FlakyServer()
    box = make(server)
    box.put("extra", {"bad": 1})
    box.put("event", {"n": 1})
    assert box.flush(threading.Event())
    box.close()
    assert server.delivered == [("event", {"n": 1})]


def test_flush_gives_up_when_the_worker_stops() -> None:
    server = FlakyServer()
    server.down.set()
    box = make(server)
    box.put("event", {"n": 1})
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert box.flush(stop, poll=0.05) is False
    box.close()
    assert server.delivered == []


def test_allowlist_validation() -> None:
    assert allowlist({}) == {}
    assert allowlist({"commands": {"df": ["df", "-h"]}}) == {"df": ["df", "-h"]}
    for bad in ({"commands": ["df"]}, {"commands": {"df": "df -h"}},
                {"commands": {"a b": ["x"]}}, {"commands": {"df": []}}):  # fmt: skip
        with pytest.raises(ConfigError):
            allowlist(bad)
