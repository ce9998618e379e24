"""Deliver a task's updates in the background, so an EMhub outage never stalls processing.

A session task produces progress events and session ``extra`` updates every few seconds.
They go into an :class:`Outbox` and a sender thread delivers them in order. While the server
is unreachable the sender waits with bounded exponential backoff (no busy loop) and the
outbox keeps only what still matters: every event carries the full counts, so consecutive
progress events collapse into the newest one, and only the newest ``extra`` is kept. After
recovery the newest state arrives and the session shows exact counts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import EmhubError, EmhubUnavailable

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]


@dataclass
class _Item:
    kind: str  # "event" | "extra"
    payload: dict[str, Any]


class Outbox:
    """Ordered, coalescing queue of updates with one sender thread.

    ``send_event`` / ``send_extra`` perform one delivery and raise :class:`EmhubUnavailable`
    when the server cannot be reached (the item is kept and retried) or another
    :class:`EmhubError` when the server refuses it (the item is dropped, with a warning).
    """

    def __init__(
        self,
        send_event: Send,
        send_extra: Send,
        name: str = "outbox",
        first_delay: float = 5.0,
        max_delay: float = 60.0,
    ) -> None:
        self._send = {"event": send_event, "extra": send_extra}
        self._items: list[_Item] = []
        self._cond = threading.Condition()
        self._closed = False
        self._closing = threading.Event()  # wakes a backoff wait only on close
        self._busy = False
        self.first_delay, self.max_delay = first_delay, max_delay
        self.failures = 0  # consecutive failed deliveries (0 = the server is reachable)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- producer side -------------------------------------------------------------------
    def put(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue an update; it replaces a waiting one of the same kind (each carries the
        whole state, so only the newest matters)."""
        with self._cond:
            self._items = [x for x in self._items if x.kind != kind]
            self._items.append(_Item(kind, payload))
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

    def flush(self, stop: threading.Event, poll: float = 1.0) -> bool:
        """Wait until everything queued is delivered (or dropped); False if ``stop`` is set
        first."""
        while not stop.is_set():
            with self._cond:
                if not self._items and not self._busy:
                    return True
                self._cond.wait(poll)
        return False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._closing.set()

    # -- sender thread -----------------------------------------------------------------------
    def _next(self) -> _Item | None:
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._busy = True
            return self._items.pop(0)

    def _requeue(self, item: _Item) -> None:
        """Put an undelivered item back in front unless a newer one of its kind supersedes it."""
        with self._cond:
            if not any(x.kind == item.kind for x in self._items):
                self._items.insert(0, item)

    def _done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _run(self) -> None:
        delay = self.first_delay
        while True:
            item = self._next()
            if item is None:
                return
            try:
                self._send[item.kind](item.payload)
                if self.failures:
                    log.info("%s: server reachable again", self._thread.name)
                self.failures, delay = 0, self.first_delay
            except EmhubUnavailable as exc:
                self.failures += 1
                self._requeue(item)
                log.warning("%s: %s; keeping %d update(s), next try in %.0f s",
                            self._thread.name, exc, self.pending(), delay)  # fmt: skip
                self._done()
                self._closing.wait(delay)
                delay = min(self.max_delay, delay * 2)
                continue
            except EmhubError as exc:
                log.warning("%s: %s update refused, dropped: %s", self._thread.name, item.kind, exc)
            self._done()
