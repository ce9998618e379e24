"""A scripted HTTP server on 127.0.0.1 standing in for EMhub in unit tests of the client and
the worker: each endpoint answers from a queue of (status, JSON body, delay) replies, and
every request is recorded *before* its delay, so a delayed reply models "the server acted
on the request, but the reply was lost" (a read timeout on the client)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any, float]  # status, JSON body, delay before answering


class Script:
    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.calls: list[tuple[str, Any]] = []

    def on(self, endpoint: str, *replies: Reply) -> None:
        """Answer ``endpoint`` with these replies in turn, then the last one forever."""
        self.replies[endpoint] = list(replies)

    def next(self, endpoint: str) -> Reply:
        queue = self.replies.get(endpoint) or [(200, {"error": "unscripted"}, 0.0)]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def bodies(self, endpoint: str) -> list[Any]:
        return [body for name, body in self.calls if name == endpoint]


@contextmanager
def scripted_server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            endpoint = self.path.rsplit("/", 1)[-1]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.calls.append((endpoint, body))
            status, reply, delay = script.next(endpoint)
            time.sleep(delay)
            data = json.dumps(reply).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
