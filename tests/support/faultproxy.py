"""A fault-injecting HTTP proxy of the tests' own, in front of the moto server.

Requests pass through to moto unless a scripted fault matches them: a 503 SlowDown, a 403
AccessDenied, a 400 BadDigest (a PUT whose body fails its Content-MD5), a
connection reset halfway through the response body, an answer held back past the client's read
timeout, a body cut short (well-formed HTTP, broken XML), or a request held until the test
releases it. Every request is recorded with the fault it met, so a test can count retries.

Bounded: every wait has a timeout and ``close`` ends them all, so a failing test cannot hang
on the proxy. No fault sleeps on the test's side; only the server waits (on events).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

FaultKind = Literal[
    "slowdown", "reset", "slow", "truncate", "hold", "error500", "denied", "bad_digest"
]

SLOWDOWN_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)
DENIED_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
    b"<Message>Access Denied</Message></Error>"
)
BAD_DIGEST_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>BadDigest</Code>"
    b"<Message>The Content-MD5 you specified did not match what we received.</Message></Error>"
)
# The longest any fault keeps a request waiting; a test that forgets to release ends anyway.
MAX_WAIT = 30.0


@dataclass
class Fault:
    """What to do to the next ``times`` requests listing ``prefix`` or anything under it (a
    lister may list a prefix's sub-folders on their own); any request if ``prefix`` is None.
    ``path``: only requests whose URL path starts with it (``/bucket/key``: an object's).
    ``query``: only requests whose query names this parameter (``logging``: GetBucketLogging).
    ``method`` and ``header`` (a header's name, any case): only requests of that method, or
    carrying that header, so one kind of request on an object's path can be singled out
    (``x-amz-copy-source``: CopyObject; ``if-match`` on a GET: the object's body, not its
    tags; ``DELETE``: DeleteObject)."""

    kind: FaultKind
    prefix: str | None = None
    times: int | None = 1  # None: every matching request, for good
    later_pages: bool = False  # only requests that carry a continuation token
    delay: float = 0.0  # for "slow": how long the server waits before answering
    path: str | None = None
    query: str | None = None
    method: str | None = None
    header: str | None = None
    # only requests lacking this header: a bucket policy's Deny on a missing
    # x-amz-server-side-encryption (its "Null" condition), for one
    missing_header: str | None = None
    unless_query: str | None = None  # not requests naming this parameter (``uploadId``)
    used: int = 0

    def matches(
        self,
        query: dict[str, list[str]],
        path: str = "",
        method: str = "",
        headers: frozenset[str] = frozenset(),
    ) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        if self.header is not None and self.header.lower() not in headers:
            return False
        if self.missing_header is not None and self.missing_header.lower() in headers:
            return False
        if self.path is not None and not path.startswith(self.path):
            return False
        if self.query is not None and self.query not in query:
            return False
        if self.unless_query is not None and self.unless_query in query:
            return False
        listed = query.get("prefix", [None])[0]
        if self.prefix is not None and not (listed or "\0").startswith(self.prefix):
            return False
        return not self.later_pages or "continuation-token" in query


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the fault it met (None: passed through)."""

    method: str
    path: str
    prefix: str | None
    later_page: bool
    fault: FaultKind | None


@dataclass
class FaultProxy:
    url: str
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # S3 may return fewer keys than asked for; a small page makes few objects span many pages.
    page_size: int | None = None

    def add(self, kind: FaultKind, prefix: str | None = None, **options: object) -> Fault:
        fault = Fault(kind, prefix, **options)  # type: ignore[arg-type]
        with self.lock:
            self.faults.append(fault)
        return fault

    def requests_for(self, prefix: str) -> list[Seen]:
        """Requests listing ``prefix`` or anything under it, in the order they came."""
        with self.lock:
            return [s for s in self.seen if (s.prefix or "\0").startswith(prefix)]

    def _pick(
        self, method: str, target: str, headers: frozenset[str] = frozenset()
    ) -> Fault | None:
        """The first fault matching the request (``headers``: its header names, lower case)."""
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        with self.lock:
            # Subresources (``?logging``) are parameters without a value: keep them to match.
            every = parse_qs(parts.query, keep_blank_values=True)
            chosen = next(
                (f for f in self.faults if f.matches(every, parts.path, method, headers)), None
            )
            if chosen is not None:
                chosen.used += 1
            prefix = query.get("prefix", [None])[0]
            later = "continuation-token" in query
            self.seen.append(Seen(method, parts.path, prefix, later, chosen and chosen.kind))
        return chosen


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = MAX_WAIT  # an idle keep-alive connection ends by itself

        def _forward(self) -> tuple[int, list[tuple[str, str]], bytes]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            target = self.path
            if proxy.page_size is not None and "list-type=2" in target:
                parts = urlsplit(target)
                query = [
                    (k, v)
                    for k, v in parse_qsl(parts.query, keep_blank_values=True)
                    if k != "max-keys"
                ]
                query.append(("max-keys", str(proxy.page_size)))
                target = f"{parts.path}?{urlencode(query)}"
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=MAX_WAIT)
            try:
                conn.request(self.command, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                kept = [
                    (k, v)
                    for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                ]
                return response.status, kept, data
            finally:
                conn.close()

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            names = frozenset(k.lower() for k in self.headers)
            fault = proxy._pick(self.command, self.path, names)
            kind = fault.kind if fault else None
            if kind == "slowdown":
                self._send(503, [("Content-Type", "application/xml")], SLOWDOWN_BODY)
                return
            if kind == "error500":
                self._send(500, [("Content-Type", "application/xml")], b"")
                return
            if kind == "denied":  # what S3 answers where a policy refuses this prefix
                self._send(403, [("Content-Type", "application/xml")], DENIED_BODY)
                return
            if kind == "bad_digest":  # what S3 answers a permitted PUT whose body fails its MD5
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self._send(400, [("Content-Type", "application/xml")], BAD_DIGEST_BODY)
                return
            if kind == "hold":
                proxy.held.set()
                proxy.release.wait(MAX_WAIT)  # closing the proxy sets it too
            if kind == "slow":
                assert fault is not None
                proxy.stopping.wait(min(fault.delay, MAX_WAIT))
            status, headers, body = self._forward()
            if kind == "truncate":
                self._send(status, headers, body[: len(body) // 2])
            elif kind == "reset":
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                # Linger 0: closing sends a TCP RST, as a load balancer dropping a connection does.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
            else:
                self._send(status, headers, body)

        def _any(self) -> None:
            try:
                self._handle()
            except OSError:
                # The client gave up (its read timeout) or the test ended: nothing to answer.
                self.close_connection = True

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fault_proxy(upstream_url: str) -> Iterator[FaultProxy]:
    """Run a proxy to ``upstream_url`` on a random port of 127.0.0.1 for the block."""
    up = urlsplit(upstream_url)
    assert up.hostname is not None and up.port is not None
    proxy = FaultProxy(url="", upstream=(up.hostname, up.port))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.stopping.set()
        proxy.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
