"""EmhubClient against a scripted HTTP server on 127.0.0.1: errors, retries, reconnects."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from scripted_server import Script, scripted_server

from emotf.emhub.client import (
    EmhubAuthError,
    EmhubClient,
    EmhubError,
    EmhubReconnectNeeded,
    EmhubUnavailable,
    RetryPolicy,
    flatten_event,
)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    with scripted_server() as scripted:
        yield scripted


def make_client(url: str, sleeps: list[float], **kwargs: Any) -> EmhubClient:
    client = EmhubClient(
        url,
        "otf",
        "s3cret-pw",
        "host1",
        sleep=sleeps.append,
        retry=RetryPolicy(attempts=4, first_delay=1, max_delay=3),
        **kwargs,
    )
    client.token = "tok-xyz"
    client._logged_in = True  # noqa: SLF001 - skip the login round trip in unit tests
    return client


def test_error_body_is_raised_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("update_task", (200, {"error": "ERROR from Server: Invalid input of type"}, 0))
    sleeps: list[float] = []
    with pytest.raises(EmhubError, match="Invalid input") as info:
        make_client(url, sleeps).update_task("1-0", {"x": 1})
    assert not isinstance(info.value, EmhubUnavailable | EmhubReconnectNeeded)
    assert len(script.calls) == 1 and sleeps == []


@pytest.mark.parametrize(
    "message", ["NOGROUP No such key 'host1:tasks'", "Unregistered host host1"]
)
def test_lost_stream_asks_for_reconnect(server: tuple[str, Script], message: str) -> None:
    url, script = server
    script.on("get_new_tasks", (200, {"error": f"ERROR from Server: {message}"}, 0))
    with pytest.raises(EmhubReconnectNeeded):
        make_client(url, []).get_new_tasks()


def test_5xx_retried_with_bounded_backoff(server: tuple[str, Script]) -> None:
    url, script = server
    script.on(
        "get_pending_tasks",
        (500, "boom", 0),
        (502, "boom", 0),
        (200, {"tasks": [{"id": "7-0", "name": "session", "args": '{"a": 1}'}]}, 0),
    )
    sleeps: list[float] = []
    tasks = make_client(url, sleeps).get_pending_tasks()
    assert [(t.id, t.args) for t in tasks] == [("7-0", {"a": 1})]
    assert sleeps == [1, 2]
    script.on("get_pending_tasks", (503, "down", 0))
    sleeps.clear()
    with pytest.raises(EmhubUnavailable, match="HTTP 503"):
        make_client(url, sleeps).get_pending_tasks()
    assert sleeps == [1, 2, 3]  # 4 attempts, delays capped at max_delay


def test_connection_refused_and_timeout_are_transient(server: tuple[str, Script]) -> None:
    url, script = server
    sleeps: list[float] = []
    with pytest.raises(EmhubUnavailable, match="cannot reach"):
        make_client("http://127.0.0.1:9", sleeps).get_new_tasks()
    assert len(sleeps) == 3
    script.on("get_new_tasks", (200, {"tasks": []}, 1.5))
    sleeps.clear()
    with pytest.raises(EmhubUnavailable, match="ReadTimeout"):
        make_client(url, sleeps).get_new_tasks(timeout=0.3)
    assert len(sleeps) == 3


def test_401_relogs_once(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("get_config", (401, "no", 0), (200, {"config": {"otf": {}}}, 0))
    script.on("login", (200, "OK", 0))
    assert make_client(url, []).get_config("sessions") == {"otf": {}}
    assert [c[0] for c in script.calls] == ["get_config", "login", "get_config"]
    script.calls.clear()
    script.on("get_config", (401, "no", 0))
    with pytest.raises(EmhubAuthError):
        make_client(url, []).get_config("sessions")
    assert [c[0] for c in script.calls] == ["get_config", "login", "get_config"]


def test_bad_password_is_an_auth_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("login", (200, {"error": "Invalid username or password"}, 0))
    with pytest.raises(EmhubAuthError, match="refused"):
        EmhubClient(url, "otf", "wrong", "host1").login()


def test_events_are_flattened_to_scalars(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("update_task", (200, {"task": {"result": "OK"}}, 0))
    make_client(url, []).update_task(
        "1-0",
        {"n": 3, "f": 0.5, "s": "x", "none": None, "flag": True, "d": {"a": [1, 2]}, "l": [1]},
    )
    event = script.calls[0][1]["attrs"]["event"]
    assert event == {
        "n": 3,
        "f": 0.5,
        "s": "x",
        "none": "",
        "flag": 1,
        "d": '{"a": [1, 2]}',
        "l": "[1]",
    }
    assert all(
        isinstance(v, int | float | str) and not isinstance(v, bool)
        for v in flatten_event({"b": False, "z": None}).values()
    )


def test_credentials_never_logged(server: tuple[str, Script],
                                  caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    url, script = server
    script.on("get_new_tasks", (500, "x", 0))
    client = make_client(url, [])
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(EmhubUnavailable):
            client.get_new_tasks()
        with pytest.raises(EmhubUnavailable):
            make_client("http://127.0.0.1:9", []).login()
    text = caplog.text + repr(client)
    assert "s3cret-pw" not in text and "tok-xyz" not in text
    assert "WARNING" in caplog.text  # retries are logged, without secrets


def test_unregistered_host_is_not_a_reconnect_loop(server: tuple[str, Script]) -> None:
    url, script = server
    script.on("connect_worker", (200, {"error": "ERROR from Server: Unregistered host host1"}, 0))
    client = make_client(url, [])
    with pytest.raises(EmhubError, match="not registered") as info:
        client.connect_worker({})
    assert not isinstance(info.value, EmhubReconnectNeeded)
