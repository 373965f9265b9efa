"""A clamd of the tests' own, on 127.0.0.1, that misbehaves on request.

Real clamd cannot be made to hang, drop a stream or answer garbage; this server speaks just
enough of the protocol (``zPING``, ``zVERSION``, ``zINSTREAM`` with its length-prefixed
chunks) and then does what ``mode`` says. It counts connections and the bytes of each stream
(and their SHA-256), so a test can prove an object was (or was not) sent, and sent whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal[
    "ok",
    "found",
    "limits",
    "drop",
    "drop_mid_stream",
    "ok_mid_stream",
    "stall",
    "stall_commands",
    "garbage",
    "two_answers",
]

# A gathering fake answers anyway after this long, so a client that never opens enough
# connections at once gets its answers (and a failing ``peak``) instead of hanging the test.
GATHER_BOUND = 10.0


@dataclass
class FakeClamd:
    """What the fake saw; ``mode`` may be changed between requests."""

    mode: Mode = "ok"
    signature: str = "Fake.Signature"
    connections: int = 0
    streamed: list[int] = field(default_factory=list)  # bytes of each whole INSTREAM
    digests: list[str] = field(default_factory=list)  # SHA-256 of each whole INSTREAM
    largest_piece: int = 0  # the largest INSTREAM chunk seen
    active: int = 0
    peak: int = 0  # the most connections open at once
    port: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)  # ends every stall
    # Hold each INSTREAM answer until this many connections were open at once (0: never
    # hold): a client that scans N at once then meets a peak of exactly N, however the
    # scheduler orders its connects, instead of one that merely happened to overlap.
    gather: int = 0
    gathered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.gather and self.active >= self.gather:
            self.gathered.set()
        try:
            command = await reader.readuntil(b"\0")
            if self.mode == "drop":
                return
            if self.mode == "stall_commands":
                await self.released.wait()
                return
            if command == b"zPING\0":
                writer.write(b"PONG\0")
            elif command == b"zVERSION\0":
                writer.write(b"ClamAV 0.0.0-fake/1/Thu Jan  1 00:00:00 2026\0")
            elif command == b"zINSTREAM\0":
                await self._instream(reader, writer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _instream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        total = 0
        digest = hashlib.sha256()
        while True:
            (size,) = struct.unpack(">I", await reader.readexactly(4))
            if size == 0:
                break
            digest.update(await reader.readexactly(size))
            total += size
            self.largest_piece = max(self.largest_piece, size)
            if self.mode == "drop_mid_stream":
                return
            if self.mode == "ok_mid_stream":
                # Answers as if all was well, then closes with the rest unread (a reset): a
                # client that trusted this would call a half-sent file clean.
                writer.write(b"stream: OK\0")
                await writer.drain()
                return
        self.streamed.append(total)
        self.digests.append(digest.hexdigest())
        if self.mode == "stall":
            await self.released.wait()  # answers nothing, until the server stops
            return
        if self.gather:
            await self._wait_for_company()
        answers = {
            "ok": b"stream: OK\0",
            "found": f"stream: {self.signature} FOUND\0".encode(),
            "limits": b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0",
            "garbage": b"stream: maybe fine?\0",
            "two_answers": b"stream: OK\0stream: OK\0",
        }
        writer.write(answers[self.mode])

    async def _wait_for_company(self) -> None:
        """Until ``gather`` connections were open at once, the server stops, or the bound."""
        waits = [
            asyncio.ensure_future(self.gathered.wait()),
            asyncio.ensure_future(self.released.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=GATHER_BOUND, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()


@asynccontextmanager
async def fake_clamd(mode: Mode = "ok", *, gather: int = 0) -> AsyncIterator[FakeClamd]:
    """A ``FakeClamd`` listening on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeClamd(mode, gather=gather)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        fake.released.set()
        server.close()
        await server.wait_closed()


@contextmanager
def fake_clamd_in_thread(mode: Mode = "ok", *, gather: int = 0) -> Iterator[FakeClamd]:
    """``fake_clamd`` for a synchronous test (the CLI runs its own event loop): served by a
    thread with a loop of its own for the block's duration, then stopped and joined."""
    started = threading.Event()
    box: list[FakeClamd | BaseException] = []
    loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            async with fake_clamd(mode, gather=gather) as fake:
                box.append(fake)
                loop_box.append((asyncio.get_running_loop(), stop))
                started.set()
                await stop.wait()
        except BaseException as exc:
            if started.is_set():
                raise
            box.append(exc)  # could not listen: raised in the test's thread, not lost here
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    started.wait()
    if isinstance(box[0], BaseException):
        thread.join()
        raise box[0]
    try:
        yield box[0]
    finally:
        loop, stop = loop_box[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join()
