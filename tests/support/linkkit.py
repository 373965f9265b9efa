"""Helpers for the link lifecycle tests: temporary credentials, small HTTP servers, runs."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app

SESSION_KEY = "ASIATESTTESTTESTTEST"
SESSION_TOKEN = "session-token-that-must-never-be-logged"


def invoke(*args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)
    audit.reset()  # the CLI configured stderr logging; the next invocation starts clean
    return result


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on 127.0.0.1 (a random port) for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _credential_handler(expiry: datetime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """The container credential endpoint (ECS/EKS): temporary keys with an expiry."""

        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "AccessKeyId": SESSION_KEY,
                    "SecretAccessKey": "temporary/secret",
                    "Token": SESSION_TOKEN,
                    "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def container_credentials(
    monkeypatch: pytest.MonkeyPatch, lifetime: timedelta = timedelta(hours=1)
) -> Iterator[datetime]:
    """botocore's container provider pointed at a local endpoint; yields the expiry it serves.

    An hour is well outside botocore's refresh windows (15 and 10 minutes), so it is used as
    served and botocore reports exactly this expiry.
    """
    expiry = (datetime.now(UTC) + lifetime).replace(microsecond=0)
    with serve(_credential_handler(expiry)) as base:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{base}/credentials")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        yield expiry


def run_dir_of(result: Any) -> Path:
    assert result.exit_code == 0, result.stderr
    return Path(result.stdout.strip())


def audit_events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def on_terminal(*args: str, stdin: bytes = b"") -> tuple[int, bytes]:
    """Run ``python -m sharebatch ARGS`` with stdout and stderr on one pseudo-terminal, as a
    person at a terminal runs it; ``stdin`` comes through a pipe. Returns the exit code and
    every byte the terminal received, escape sequences included."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "sharebatch", *args],
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    assert process.stdin is not None
    process.stdin.write(stdin)
    process.stdin.close()
    received = drain(master)
    return process.wait(), received


def drain(master: int, quiet_for: float = 60) -> bytes:
    """Every byte the master side of a pseudo-terminal receives until the child's side closes
    (it fails when nothing comes for ``quiet_for`` seconds); closes ``master``."""
    received = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], quiet_for)
            assert ready, f"nothing reached the terminal for {quiet_for:.0f} s"
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child is gone and its side of the terminal closed
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
    return bytes(received)
