"""Ctrl-C mid-run: exit 130, the audit log says so, and no bundle or staging file remains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.s3 import write_manifest


class _Stalled:
    """A fake S3 whose listings hang until the test lets them go."""

    def __init__(self) -> None:
        self.request_seen = threading.Event()
        self.release = threading.Event()


@pytest.fixture
def stalled_s3() -> Iterator[tuple[str, _Stalled]]:
    state = _Stalled()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.request_seen.set()
            state.release.wait(timeout=60)
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.usefixtures("credentials")
def test_sigint_exits_130_and_leaves_no_bundle(
    tmp_path: Path, stalled_s3: tuple[str, _Stalled]
) -> None:
    """SIGINT while listing: exit 130, summary and audit say 'interrupted', nothing half-written."""
    endpoint, state = stalled_s3
    manifest = write_manifest(
        tmp_path / "m.yml",
        "version: 1\njobs:\n  - name: j\n    bucket: slow-bucket\n    region: eu-west-1\n"
        "    expires_in: 1h\n    prefixes: [a/, b/]\n    recipients: [{id: r}]\n",
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sharebatch",
            "run",
            str(manifest),
            "--out",
            str(out),
            "--endpoint-url",
            endpoint,
            "--run-id",
            "interrupted-run",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and the
        # child would inherit that; Ctrl-C from a terminal is what this test stands for.
        preexec_fn=_default_sigint,
    )
    try:
        assert state.request_seen.wait(timeout=60), "the run never reached S3"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted" in stderr
    run_dir = out / "interrupted-run"
    assert sorted(p.name for p in run_dir.iterdir()) == ["audit.jsonl", "summary.json"]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    last = json.loads((run_dir / "audit.jsonl").read_text().splitlines()[-1])
    assert (last["event"], last["status"]) == ("run_finished", "interrupted")
