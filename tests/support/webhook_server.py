"""A webhook receiver on 127.0.0.1: records each request, answers with a chosen status.

``hold=True`` keeps every request unanswered until the server closes (a receiver that never
answers); the handler waits on an event, so closing releases it without any sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookServer:
    """The running receiver: its base URL, what it received, what it answers."""

    url: str
    status: int
    hold: bool
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_server(status: int = 200, *, hold: bool = False) -> Iterator[WebhookServer]:
    """Serve on a free loopback port while the block runs."""
    state: WebhookServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.received.append(
                Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            state.arrived.set()
            if state.hold:
                state.release.wait()
                return
            reply = b"ok" if state.status < 300 else b"refused"
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on what was received."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    state = WebhookServer(f"http://{host!s}:{port}", status, hold)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
