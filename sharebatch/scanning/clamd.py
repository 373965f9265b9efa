"""A client of ClamAV's daemon: ``PING``, ``VERSION`` and ``INSTREAM``, over asyncio.

clamd listens on a unix socket or on TCP (loopback only: ``manifest/upload.clamd_address``).
Commands are sent in their ``z`` form (NUL-terminated, answers NUL-terminated). ``INSTREAM``
takes the file as chunks, each preceded by its length in 4 bytes big-endian, and a zero
length to end; clamd answers ``stream: OK``, ``stream: <signature> FOUND``, or, when the
stream passes its ``StreamMaxLength``, ``INSTREAM size limit exceeded. ERROR`` (then closes).

Fail closed: only those exact answers mean something. Any other answer, a timeout, a dropped
connection or a stream that ended early is an ``error`` verdict, never ``clean``. A file past
one of clamd's scan limits (MaxFileSize, MaxScanSize, MaxRecursion...) is reported, with
``AlertExceedsMax``, as ``stream: Heuristics.Limits.Exceeded[.<limit>] FOUND``: that is a file
clamd did not scan whole, so ``too_large``, not ``infected``. When a send fails (clamd closed
the socket mid-stream), only the size-limit answer may still be taken from the socket: any
other text there, even ``stream: OK``, speaks of a stream clamd never had whole. Every step
(connecting, each chunk written, the answer) is bounded by ``timeout`` seconds of asyncio
time, so a clamd that hangs costs at most that.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Literal

from sharebatch.manifest.upload import clamd_address

MAX_CHUNK = 1 << 20
"""Bytes per INSTREAM chunk at most: larger pieces of the source are split. clamd's only rule
for a chunk is its remaining StreamMaxLength (it writes each chunk to a temporary file as it
reads it, through a buffer of its own size), so a piece is sent as one chunk as it came from
the source, without copying it into smaller ones; the source's own pieces bound our memory."""
MAX_ANSWER = 4096
"""The longest answer read from clamd; anything longer is garbage."""
DEFAULT_TIMEOUT = 60.0

Outcome = Literal["clean", "infected", "too_large", "error"]

_LENGTH = struct.Struct(">I")
_FOUND = re.compile(r"stream: (?P<name>[^\x00\r\n]{1,512}) FOUND")
_SIZE_LIMIT = "INSTREAM size limit exceeded. ERROR"
# ClamAV names its limit alerts Heuristics.Limits.Exceeded, alone or with the limit after a dot
# (.MaxFileSize, .MaxScanSize, .MaxFiles, .MaxRecursion, .MaxScanTime, ...).
_LIMITS = re.compile(r"Heuristics\.Limits\.Exceeded(?:\.[A-Za-z0-9_]+)*")


@dataclass(frozen=True, slots=True)
class ClamdVerdict:
    """What clamd said of one stream: ``signature`` when infected, ``detail`` on error."""

    outcome: Outcome
    signature: str | None = None
    detail: str | None = None


class ClamdError(Exception):
    """clamd could not be reached, or did not answer as the protocol says (internal: the
    scanner turns it into an ``error`` verdict, the doctor into a FAIL)."""


def parse_answer(answer: bytes) -> ClamdVerdict:
    """An INSTREAM answer (without its NUL), strictly: anything unexpected is an error."""
    try:
        text = answer.decode("utf-8")
    except UnicodeDecodeError:
        return ClamdVerdict("error", detail=f"unreadable answer from clamd: {answer[:80]!r}")
    if text == "stream: OK":
        return ClamdVerdict("clean")
    if text == _SIZE_LIMIT:
        return ClamdVerdict("too_large", detail="over clamd's StreamMaxLength")
    found = _FOUND.fullmatch(text)
    if found and _LIMITS.fullmatch(found["name"]):
        return ClamdVerdict("too_large", detail=f"past a clamd scan limit ({found['name']})")
    if found:
        return ClamdVerdict("infected", signature=found["name"])
    return ClamdVerdict("error", detail=f"unexpected answer from clamd: {text[:200]!r}")


class Clamd:
    """One clamd, by its address (``unix:///path`` or ``tcp://127.0.0.1:3310``); each call
    opens its own connection, so calls may run at once.

    Plain non-blocking sockets on the running loop, not asyncio streams: when clamd refuses a
    stream over its size limit it answers and closes, and our next write fails; a stream
    transport would then drop the answer still waiting in the socket, a socket keeps it.
    """

    def __init__(self, address: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self._where = clamd_address(address)  # ValueError for an address the loader refuses
        self.timeout = timeout

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        if self._where[0] == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = self._where[1]
        else:
            host, port = self._where[1]
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            target = (host, port)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.timeout):
                await loop.sock_connect(sock, target)
        except TimeoutError:
            sock.close()
            raise ClamdError(
                f"clamd at {self.address} did not accept within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            sock.close()
            raise ClamdError(
                f"cannot reach clamd at {self.address}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            # Cancelled mid-connect (a sibling scan ended the whole scan): not left to the GC.
            sock.close()
            raise
        return sock

    async def _send(self, sock: socket.socket, data: bytes) -> None:
        async with asyncio.timeout(self.timeout):
            await asyncio.get_running_loop().sock_sendall(sock, data)

    async def _send_chunk(self, sock: socket.socket, piece: memoryview) -> None:
        """One INSTREAM chunk: its length and its bytes in one ``sendmsg``, without joining
        them (a copy of every byte); what the socket did not take goes by ``sock_sendall``."""
        header = _LENGTH.pack(len(piece))
        try:
            sent = sock.sendmsg((header, piece))
        except (BlockingIOError, InterruptedError):
            sent = 0
        async with asyncio.timeout(self.timeout):
            loop = asyncio.get_running_loop()
            if sent < len(header):
                await loop.sock_sendall(sock, header[sent:])
                sent = len(header)
            if sent - len(header) < len(piece):
                await loop.sock_sendall(sock, piece[sent - len(header) :])

    async def _answer(self, sock: socket.socket) -> bytes:
        """Bytes up to clamd's NUL; the connection's end without one is an error."""
        loop = asyncio.get_running_loop()
        got = b""
        try:
            async with asyncio.timeout(self.timeout):
                while b"\0" not in got:
                    more = await loop.sock_recv(sock, MAX_ANSWER)
                    if not more:
                        shown = f" (sent {got[:80]!r})" if got else ""
                        raise ClamdError(f"clamd closed the connection without an answer{shown}")
                    got += more
                    if len(got) > MAX_ANSWER:
                        raise ClamdError(f"clamd's answer is longer than {MAX_ANSWER} bytes")
        except TimeoutError:
            raise ClamdError(f"clamd did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise ClamdError(f"the connection to clamd broke: {exc.strerror or exc}") from None
        answer, _, rest = got.partition(b"\0")
        if rest:
            raise ClamdError(f"clamd said more than one answer: {got[:120]!r}")
        return answer

    async def command(self, name: str) -> str:
        """A simple command (``PING``, ``VERSION``) and its one-line answer."""
        sock = await self._connect()
        try:
            try:
                await self._send(sock, b"z" + name.encode("ascii") + b"\0")
            except (TimeoutError, OSError) as exc:
                raise ClamdError(f"cannot send {name} to clamd: {exc}") from None
            answer = await self._answer(sock)
        finally:
            sock.close()
        return answer.decode("utf-8", "replace")

    async def ping(self) -> str:
        """clamd's answer to PING: ``PONG`` when it is up."""
        return await self.command("PING")

    async def version(self) -> str:
        """clamd's VERSION: ``ClamAV 1.0.7/27000/...`` (engine, database version, date)."""
        return await self.command("VERSION")

    async def instream(self, chunks: AsyncIterable[bytes]) -> ClamdVerdict:
        """Stream ``chunks`` to clamd and return its verdict; never raises for clamd.

        An exception from ``chunks`` itself (the source broke off) propagates after the
        connection is closed, without the zero-length end: clamd never sees a whole stream,
        and the caller reports the read error.
        """
        try:
            sock = await self._connect()
        except ClamdError as exc:
            return ClamdVerdict("error", detail=str(exc))
        try:
            return await self._stream(sock, chunks)
        finally:
            sock.close()

    async def _stream(self, sock: socket.socket, chunks: AsyncIterable[bytes]) -> ClamdVerdict:
        try:
            await self._send(sock, b"zINSTREAM\0")
            async for chunk in chunks:
                whole = memoryview(chunk)
                for start in range(0, len(whole), MAX_CHUNK):
                    await self._send_chunk(sock, whole[start : start + MAX_CHUNK])
            await self._send(sock, _LENGTH.pack(0))
        except (OSError, TimeoutError) as exc:
            # clamd stops reading (and closes) once the stream passes StreamMaxLength; its
            # answer is then already waiting. Anything else is a broken scan: clamd never had
            # the whole stream, so even "stream: OK" would speak of a part of it.
            kind = "timed out" if isinstance(exc, TimeoutError) else "broke"
            try:
                late = await self._answer(sock)
            except ClamdError:
                return ClamdVerdict("error", detail=f"sending to clamd {kind}: {exc}")
            if late == _SIZE_LIMIT.encode():
                return parse_answer(late)
            shown = late[:80].decode("utf-8", "replace")
            return ClamdVerdict(
                "error", detail=f"sending to clamd {kind} ({exc}); then it said {shown!r}"
            )
        try:
            return parse_answer(await self._answer(sock))
        except ClamdError as exc:
            return ClamdVerdict("error", detail=str(exc))
