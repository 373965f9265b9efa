"""Servers the benchmarks run against: moto in its own process, and a delaying proxy.

moto runs in a child process so that its CPU does not compete with the code being measured
for this process's GIL. The proxy adds a fixed delay to every request, like the round trip to
a real S3 endpoint. In ``replay`` mode it answers from responses it recorded from moto earlier,
so that what is measured is the client under latency rather than moto's own CPU time (moto
serves one request at a time at 10-200 ms each; real S3 serves them in parallel).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

_CHILD = Path(__file__).with_name("_moto_process.py")


@contextmanager
def moto_process(seed: dict[str, list[tuple[str, int]]], delay: float = 0.0) -> Iterator[str]:
    """A moto server in a child process, seeded with ``{bucket: [(prefix, count), ...]}``.

    With ``delay``, the endpoint given is a delaying proxy in that process; a GET of
    ``/__bench/replay`` switches it from recording moto's answers to replaying them.
    """
    child = subprocess.Popen(
        [sys.executable, str(_CHILD), json.dumps(seed), str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError("moto did not start")
        yield f"http://127.0.0.1:{line[2] if delay else line[1]}"
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the child exits when its stdin closes
        child.wait(timeout=30)


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.replay = False
        self.recorded: dict[tuple[str, str], tuple[int, list[tuple[str, str]], bytes]] = {}
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Proxy

    def _forward(self) -> None:
        if self.path == "/__bench/replay":
            self.server.replay = True
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = (self.command, self.path)
        time.sleep(self.server.delay)  # the round trip being modelled
        answer = self.server.recorded.get(key) if self.server.replay else None
        if answer is None:
            conn = http.client.HTTPConnection(*self.server.upstream, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            answer = (response.status, response.getheaders(), response.read())
            conn.close()
            with self.server.lock:
                self.server.recorded[key] = answer
        status, headers, payload = answer
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in (
                "connection",
                "transfer-encoding",
                "content-length",
                "date",
                "server",
            ):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def delaying_proxy(upstream: str, delay: float) -> Iterator[_Proxy]:
    """A proxy in front of ``upstream`` adding ``delay`` seconds to every request."""
    proxy = _Proxy(upstream, delay)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()


def endpoint_of(proxy: _Proxy) -> str:
    return f"http://127.0.0.1:{proxy.server_address[1]}"
