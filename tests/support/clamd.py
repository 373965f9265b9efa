"""A real clamd (Debian's clamav-daemon) for the scanning tests, on a database of our own.

There is no freshclam here (no internet), and official signature names are not ours to
assert on: the database is one MD5 signature of the EICAR test file, made with ``sigtool
--md5`` at test time. The EICAR string is assembled from parts, so no file in the repository
is itself a test virus a developer's scanner would quarantine.

clamd listens on a unix socket in a short temporary folder and on a free 127.0.0.1 port,
with a small ``StreamMaxLength`` so the size limit can be hit with a small file. Without clamd
or sigtool the tests skip saying why, unless ``SHAREBATCH_REQUIRE_CLAMD=1`` (``.ci/run``).
clamd is started with ``PR_SET_PDEATHSIG``: the kernel kills it when the process that
started it dies, so a test run killed with ``kill -9`` leaves no clamd behind.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

SIGNATURE = "Sharebatch.Test.EICAR"
STREAM_MAX = 1 << 20  # clamd's StreamMaxLength here: 1 MiB
START_LIMIT = 60.0  # seconds clamd may take to load its database and answer PING


def eicar() -> bytes:
    """The 68-byte EICAR anti-virus test file, assembled here from its parts."""
    parts = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*")
    data = "".join(parts).encode("ascii")
    assert len(data) == 68
    return data


@dataclass(frozen=True)
class ClamdServer:
    """A running clamd: its two addresses as a manifest writes them, and its config."""

    socket_path: str
    port: int
    folder: Path
    pid: int = 0  # clamd's process id, once started

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def find_tools() -> tuple[str, str] | None:
    """(clamd, sigtool) paths, or None when either is missing."""
    clamd = os.environ.get("SHAREBATCH_CLAMD") or shutil.which("clamd")
    if clamd is None and os.access("/usr/sbin/clamd", os.X_OK):
        clamd = "/usr/sbin/clamd"
    sigtool = shutil.which("sigtool")
    return (clamd, sigtool) if clamd and sigtool else None


def require_tools(test: str) -> tuple[str, str]:
    """clamd and sigtool for ``test``: skipped without them, failed where CI requires them."""
    found = find_tools()
    if found is None:
        message = (
            f"clamd or sigtool is not installed, so {test} did not run (apt-get install"
            " clamav-daemon clamav, or set SHAREBATCH_CLAMD; .ci/run installs them)"
        )
        if os.environ.get("SHAREBATCH_REQUIRE_CLAMD") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to SIGKILL the child when ``parent`` dies.

    libc is loaded here, before the fork: the child only calls into it. A parent that died
    between the fork and the prctl is caught by comparing the parent's id afterwards.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)

    return preexec


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _pong(socket_path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(0.5)
            conn.connect(socket_path)
            conn.sendall(b"zPING\0")
            return conn.recv(16) == b"PONG\0"
    except OSError:
        return False


@contextmanager
def clamd_server(
    clamd: str,
    sigtool: str,
    *,
    stream_max: int = STREAM_MAX,
    threads: int = 8,
    settings: Sequence[str] = (),
) -> Iterator[ClamdServer]:
    """Start clamd on a database made here; wait for PONG; stop it at the end.

    ``stream_max`` is its StreamMaxLength in bytes, ``threads`` its MaxThreads (the
    benchmark raises both); ``settings`` are more clamd.conf lines (scan limits)."""
    # A unix socket path must fit in 108 bytes: a short folder of its own, not pytest's.
    folder = Path(tempfile.mkdtemp(prefix="sb-clamd-", dir="/tmp"))
    try:
        sample = folder / "eicar.bin"
        sample.write_bytes(eicar())
        made = subprocess.run(
            [sigtool, "--md5", str(sample)], capture_output=True, text=True, check=True
        )
        digest, size, _name = made.stdout.strip().split(":", 2)
        (folder / "db").mkdir()
        (folder / "db" / "sharebatch-test.hdb").write_text(f"{digest}:{size}:{SIGNATURE}\n")
        sample.unlink()
        server = ClamdServer(str(folder / "clamd.sock"), _free_port(), folder)
        conf = folder / "clamd.conf"
        conf.write_text(
            "\n".join(
                (
                    f"LocalSocket {server.socket_path}",
                    f"TCPSocket {server.port}",
                    "TCPAddr 127.0.0.1",
                    f"DatabaseDirectory {folder / 'db'}",
                    "Foreground yes",
                    f"StreamMaxLength {stream_max // 1024}K",
                    f"MaxThreads {threads}",
                    "LogSyslog no",
                    f"LogFile {folder / 'clamd.log'}",
                    f"TemporaryDirectory {folder}",
                    "Bytecode no",
                    "SelfCheck 3600",
                    *settings,
                    "",
                )
            )
        )
        proc = subprocess.Popen(
            [clamd, "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        server = replace(server, pid=proc.pid)
        try:
            deadline = time.monotonic() + START_LIMIT
            while not _pong(server.socket_path):
                try:
                    # Waits on the process: returns at once if clamd died, so we say why.
                    code = proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    code = None
                log = folder / "clamd.log"
                if code is not None or time.monotonic() > deadline:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    raise RuntimeError(f"clamd did not start (exit {code}):\n{text[-2000:]}")
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
