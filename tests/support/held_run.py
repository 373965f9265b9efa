"""A run held mid-listing: moto behind the fault proxy, the listing of b/ waits for the test."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.s3 import S3

BUCKET = "held-bucket"
FILES = {"a/1.txt": b"one", "a/2.txt": b"two", "b/1.txt": b"three"}
MANIFEST = f"""\
version: 1
defaults: {{bucket: {BUCKET}, region: eu-west-1, expires_in: 1h}}
jobs:
  - name: share
    prefixes: [a/]
    recipients: [{{id: alice}}, {{id: bob, prefixes: [b/]}}, {{id: carol}}]
"""


@contextmanager
def held_s3(s3: S3) -> Iterator[FaultProxy]:
    """moto behind the proxy; every listing of b/ waits until the test releases it."""
    s3.bucket(BUCKET, FILES)
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("hold", "b/", times=None)
        yield proxy


def _default_sigint() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and sharebatch
    # (rightly) keeps an ignored SIGINT ignored; Ctrl-C from a terminal is what is tested.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_run(manifest: Path, out: Path, endpoint: str, run_id: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "sharebatch", "run", str(manifest), "--out", str(out)]
    command += ["--endpoint-url", endpoint, "--run-id", run_id]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
