"""Session ``extra`` updates that never clobber what others wrote.

EMhub 1.0.2's ``update_session_extra`` merges only the top level (``extra.update(new)``): a
sub-dict such as ``raw`` or ``otf`` that is sent replaces the stored one wholesale. Sending
the copy a task read at its start would undo every later edit by staff or by another task of
the same session (``transfer`` sets ``raw.path`` while ``otf`` runs). So each update re-reads
the session and merges the keys emotf owns into the *current* sub-dicts; ``extra.updated``
is set on each update, as the stock worker does. Updates of one session from this worker
are serialised, so two tasks of a session never interleave their read and write. (A staff
edit that lands between the read and the write of one update can still be lost: EMhub 1.0.2
has no conditional or deep update.)
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .client import EmhubClient
from .raw_stats import now_text

MERGED = ("raw", "otf")  # sub-dicts shared with EMhub's pages and staff: merged key by key

_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class ExtraSender(Protocol):
    """What :func:`send_merged` needs from the worker (``Worker`` provides both)."""

    client: EmhubClient

    def update_extra(self, session_id: int, extra: dict[str, Any]) -> None: ...


def session_lock(session_id: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(session_id, threading.Lock())


def merged(current: dict[str, Any], owned: dict[str, Any]) -> dict[str, Any]:
    """The update to send: ``owned`` keys, with the shared sub-dicts merged into the current
    ones (keys emotf does not own are kept as they are now)."""
    update: dict[str, Any] = {}
    for key, value in owned.items():
        now = current.get(key)
        if key in MERGED and isinstance(value, dict) and isinstance(now, dict):
            update[key] = {**now, **value}
        else:
            update[key] = value
    update["updated"] = now_text()
    return update


def send_merged(
    worker: ExtraSender,
    session_id: int,
    owned: dict[str, Any],
    sent: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Re-read the session, merge ``owned`` into its current ``extra`` and send it; returns
    what was sent. Raises EmhubError like the client (the outbox retries when unreachable).

    ``sent`` is the caller's record of what it last sent: a shared sub-dict whose owned keys
    have not changed since is left out (unless ``force``), so a running session rewrites
    ``raw``/``otf`` only when they change, which keeps the read-to-write window of a lost
    staff edit rare (a task's last update is forced)."""
    if sent is not None and not force:
        owned = {k: v for k, v in owned.items() if k not in MERGED or sent.get(k) != v}
    with session_lock(session_id):
        current = worker.client.get_session(session_id).get("extra") or {}
        update = merged(current if isinstance(current, dict) else {}, owned)
        worker.update_extra(session_id, update)
    if sent is not None:
        sent.update({k: v for k, v in owned.items() if k in MERGED})
    return update
