"""The clamd client: INSTREAM against a real clamd, and every misbehaviour through a fake one.

Fail closed is the point: only clamd's exact ``stream: OK`` is clean. The fake clamd
(``tests/support/fake_clamd.py``) hangs, drops the connection, answers garbage; each of those
must come back as an error, within the step timeout (asyncio's, on the monotonic clock).
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sharebatch.scanning.clamd import MAX_CHUNK, Clamd, ClamdError, ClamdVerdict, parse_answer
from tests.support.clamd import (
    SIGNATURE,
    STREAM_MAX,
    ClamdServer,
    clamd_server,
    eicar,
    require_tools,
)
from tests.support.fake_clamd import Mode, fake_clamd


async def chunks(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def zeros(total: int, size: int) -> AsyncIterator[bytes]:
    """``total`` bytes in pieces of ``size``, made as they are asked for (never all at once)."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        yield bytes(piece)
        sent += piece


@pytest.fixture(params=["unix", "tcp"])
def address(request: pytest.FixtureRequest, clamd: ClamdServer) -> str:
    """The real clamd by its unix socket, then by loopback TCP."""
    return clamd.unix_url if request.param == "unix" else clamd.tcp_url


@pytest.mark.asyncio
async def test_a_clean_file_is_clean(address: str) -> None:
    """A plain text file streamed to the real clamd: ``stream: OK``, clean."""
    verdict = await Clamd(address, timeout=30).instream(chunks(b"quarterly figures\n" * 100))
    assert verdict == ClamdVerdict("clean")


@pytest.mark.asyncio
async def test_eicar_is_infected_with_the_signature_our_database_names(address: str) -> None:
    """The EICAR file, in pieces smaller than itself: infected, named by our .hdb signature
    (clamd adds .UNOFFICIAL to signatures outside its signed databases)."""
    verdict = await Clamd(address, timeout=30).instream(chunks(eicar(), size=10))
    assert verdict.outcome == "infected"
    assert verdict.signature is not None and verdict.signature.startswith(SIGNATURE)


@pytest.mark.asyncio
async def test_eicar_one_byte_per_chunk_is_still_found(address: str) -> None:
    """68 chunks of one byte each: clamd judges the stream reassembled, whatever the
    chunking, so the hash signature still matches."""
    whole = await Clamd(address, timeout=30).instream(chunks(eicar(), size=1))
    assert whole.outcome == "infected"


@pytest.mark.asyncio
@pytest.mark.parametrize(("total", "piece"), [(STREAM_MAX + 1, 1 << 16), (3 << 20, 3 << 20)])
async def test_a_stream_over_stream_max_length_is_too_large_never_clean(
    address: str, total: int, piece: int
) -> None:
    """Past clamd's StreamMaxLength: clamd answers "INSTREAM size limit exceeded" and closes;
    the client keeps that answer (not a broken pipe): too_large. Whether the last chunk is one
    byte over, or a whole MAX_CHUNK clamd refuses by its length while its bytes are still
    being sent."""
    verdict = await Clamd(address, timeout=30).instream(zeros(total, piece))
    assert verdict.outcome == "too_large"


@pytest.mark.asyncio
async def test_a_much_larger_stream_is_refused_without_being_read_whole(address: str) -> None:
    """A 5 GiB object stands for itself here by a generator of zeros: clamd's refusal ends
    the stream early, and the generator is not run to its end."""
    given = 0

    async def sparse() -> AsyncIterator[bytes]:
        nonlocal given
        async for piece in zeros(5 * 1024**3, 1 << 20):
            given += len(piece)
            yield piece

    verdict = await Clamd(address, timeout=30).instream(sparse())
    assert verdict.outcome == "too_large"
    assert given < 64 * 1024**2


@pytest.mark.asyncio
async def test_ping_and_version_answer(address: str) -> None:
    """PING -> PONG; VERSION names ClamAV's engine."""
    scanner = Clamd(address, timeout=30)
    assert await scanner.ping() == "PONG"
    assert (await scanner.version()).startswith("ClamAV ")


@pytest.mark.asyncio
async def test_a_file_larger_than_a_chunk_flows_through_in_bounded_pieces() -> None:
    """5 MiB given in 2.5 MiB pieces reaches clamd whole and unchanged, each piece split into
    chunks of at most MAX_CHUNK; a chunk is larger than the socket takes at once, so the part
    a first ``sendmsg`` leaves is sent after it, in order."""
    pattern = bytes(range(251)) * ((5 << 20) // 251 + 1)
    data = pattern[: 5 << 20]
    async with fake_clamd("ok") as fake:
        verdict = await Clamd(fake.url, timeout=30).instream(chunks(data, 5 << 19))
    assert verdict == ClamdVerdict("clean")
    assert fake.streamed == [5 << 20]
    assert fake.digests == [hashlib.sha256(data).hexdigest()]
    assert fake.largest_piece == MAX_CHUNK


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("drop", "clamd"),
        ("drop_mid_stream", "clamd"),
        ("stall", "did not answer within 0.3s"),
        ("garbage", "unexpected answer"),
        ("two_answers", "more than one answer"),
    ],
)
async def test_a_misbehaving_clamd_is_an_error_never_clean(mode: Mode, said: str) -> None:
    """Dropped before or during the stream, never answering (the step timeout), an answer
    that is not one of clamd's, or two answers: each an error naming what happened."""
    async with fake_clamd(mode) as fake:
        verdict = await Clamd(fake.url, timeout=0.3).instream(chunks(b"x" * 300_000, 1 << 16))
    assert verdict.outcome == "error"
    assert verdict.detail is not None and said in verdict.detail


@pytest.mark.asyncio
async def test_a_scan_limit_alert_is_too_large_not_infected() -> None:
    """clamd's "Heuristics.Limits.Exceeded.MaxFileSize FOUND" says it did not scan the file
    whole (AlertExceedsMax): too_large, no signature, never infected (nor clean)."""
    async with fake_clamd("limits") as fake:
        verdict = await Clamd(fake.url, timeout=5).instream(chunks(b"x" * 1000))
    assert (verdict.outcome, verdict.signature) == ("too_large", None)
    assert verdict.detail is not None and "Heuristics.Limits.Exceeded.MaxFileSize" in verdict.detail


@pytest.mark.asyncio
async def test_a_real_clamd_past_its_max_file_size_is_too_large_not_infected() -> None:
    """Debian's clamd with MaxFileSize 100K and AlertExceedsMax: a 300 KB file (well under
    StreamMaxLength) comes back "Heuristics.Limits.Exceeded.MaxFileSize FOUND", which is a
    file not scanned whole: too_large, never infected or clean."""
    limits = ("MaxFileSize 100K", "MaxScanSize 100K", "AlertExceedsMax yes")
    with clamd_server(*require_tools("the scan-limit test"), settings=limits) as limited:
        verdict = await Clamd(limited.unix_url, timeout=30).instream(zeros(300_000, 1 << 16))
    assert (verdict.outcome, verdict.signature) == ("too_large", None)
    assert verdict.detail is not None and "Heuristics.Limits.Exceeded" in verdict.detail


@pytest.mark.asyncio
async def test_stream_ok_after_a_broken_send_is_an_error_never_clean() -> None:
    """clamd answers "stream: OK" after the first chunk and closes with the rest unsent: the
    send breaks, and only the size-limit answer may be read after that; this one is an error
    that quotes what clamd said."""
    async with fake_clamd("ok_mid_stream") as fake:
        verdict = await Clamd(fake.url, timeout=5).instream(zeros(256 << 20, 1 << 16))
    assert verdict.outcome == "error"
    assert verdict.detail is not None and "stream: OK" in verdict.detail


@pytest.mark.asyncio
async def test_nobody_listening_is_an_error() -> None:
    """A closed port: the verdict is an error naming the address."""
    async with fake_clamd("ok") as fake:
        url = fake.url
    verdict = await Clamd(url, timeout=1).instream(chunks(b"data"))
    assert verdict.outcome == "error" and verdict.detail and url in verdict.detail


@pytest.mark.asyncio
async def test_a_stalled_ping_raises_within_the_timeout() -> None:
    """PING to a clamd that accepts but never answers: ClamdError, not a hang."""
    async with fake_clamd("stall_commands") as fake:
        with pytest.raises(ClamdError, match="did not answer"):
            await Clamd(fake.url, timeout=0.3).ping()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"stream: OK", ClamdVerdict("clean")),
        (b"stream: Win.Test.EICAR_HDB-1 FOUND", ClamdVerdict("infected", "Win.Test.EICAR_HDB-1")),
        (b"INSTREAM size limit exceeded. ERROR", ClamdVerdict("too_large", detail=None)),
        (b"stream: Heuristics.Limits.Exceeded FOUND", ClamdVerdict("too_large")),
        (b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", ClamdVerdict("too_large")),
        (b"stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND", ClamdVerdict("too_large")),
        (b"stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND", ClamdVerdict("too_large")),
        (
            b"stream: Heuristics.Limits.ExceededX FOUND",
            ClamdVerdict("infected", "Heuristics.Limits.ExceededX"),
        ),
        (b"stream: OK ", None),
        (b"stream: ok", None),
        (b"OK", None),
        (b"stream:  FOUND", None),
        (b"stream: a\nstream: OK FOUND", None),
        (b"\xff\xfe", None),
        (b"", None),
    ],
)
def test_answers_are_parsed_strictly(answer: bytes, expected: ClamdVerdict | None) -> None:
    """Only clamd's exact answers mean clean, infected or too large; near misses are errors."""
    verdict = parse_answer(answer)
    if expected is None:
        assert verdict.outcome == "error"
    else:
        assert (verdict.outcome, verdict.signature) == (expected.outcome, expected.signature)


_HOLD_CLAMD = """
import sys
from tests.support.clamd import clamd_server
with clamd_server(sys.argv[1], sys.argv[2]) as server:
    print(server.pid, server.folder, flush=True)
    sys.stdin.read()
"""


def test_a_clamd_the_tests_start_dies_with_the_process_that_started_it() -> None:
    """A test process holding clamd is killed with SIGKILL (no fixture teardown runs): the
    kernel's parent-death signal ends clamd too, so no clamd outlives a killed test run.
    Its exit is awaited on a pidfd, an event, not a sleep."""
    clamd, sigtool = require_tools("the parent-death test of the clamd fixture")
    root = Path(__file__).resolve().parents[2]
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_CLAMD, clamd, sigtool],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            pid_text, folder = holder.stdout.readline().split(maxsplit=1)
            pidfd = os.pidfd_open(int(pid_text))
        finally:
            holder.kill()
            holder.wait()
    try:
        exited = select.poll()
        exited.register(pidfd, select.POLLIN)
        gone = bool(exited.poll(60_000))
        if not gone:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert gone, "clamd outlived the killed process that started it"
    finally:
        os.close(pidfd)
        shutil.rmtree(folder.strip(), ignore_errors=True)
