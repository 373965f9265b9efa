"""Where access logs are read from: a local folder of log files, or ``s3://bucket/prefix/``.

``read_logs`` turns a source into records and bad lines, file by file in sorted order and line
by line, in bounded memory: files are read in chunks (local ones in a worker thread, so the
event loop is never held up for long), S3 objects are listed and streamed through
``S3Gateway``. Nothing is dropped silently: whatever is not a record is a ``BadLine`` naming
the file and line (line 0: the file as a whole).

A file that is not a plain access log says so once, not once per line: gzip and other
compressed files (S3 writes its logs uncompressed, so such a file is someone's archive, and
inflating archives here would let a small file stand for gigabytes of lines: decompress them
first), binary files, JSON files such as CloudTrail's, and W3C logs such as CloudFront's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sharebatch.errors import S3ListingError, S3ReadError, UsageError
from sharebatch.models import BucketTarget
from sharebatch.receipts.accesslog import (
    AccessRecord,
    BadLine,
    ScanRows,
    parse_lines,
    scan_rows,
    scan_rows_of,
    scan_text,
)
from sharebatch.s3.gateway import S3Gateway
from sharebatch.visible import visible

CHUNK = 1 << 20
# S3 records run to a few kilobytes (an 8 KiB Request-URI at most): anything far longer is
# not one, and holding it whole would let one endless line fill the memory.
MAX_LINE = 1 << 16
_TOO_LONG = f"longer than {MAX_LINE} bytes: not a record"
# Lines parsed, and items held, at a time: a chunk of one-byte lines is half a million bad
# lines, and held at once they would take hundreds of megabytes.
BATCH = 4096
_SNIFF = 512
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)


Items = list[AccessRecord | BadLine]
B = TypeVar("B", Items, ScanRows)


@dataclass(frozen=True, slots=True)
class _Form(Generic[B]):
    """What a batch of lines becomes: ``parse`` (file, first line's number, lines) makes one
    from lines, ``of`` from ``parse_lines``' items (the odd line and the whole-file problems
    are read the one exact way, then given this form); ``text``, when there is one, makes
    one from a decoded chunk's lines where they lie (``accesslog.scan_text``'s arguments and
    answer), without splitting the chunk."""

    parse: Callable[[str, int, list[str]], B]
    of: Callable[[Iterable[AccessRecord | BadLine]], B]
    text: Callable[[str, int, str, int, int], tuple[B, int, int]] | None = None


_ITEMS: _Form[Items] = _Form(parse_lines, list)
_SCANS: _Form[ScanRows] = _Form(scan_rows, scan_rows_of, scan_text)


@dataclass(frozen=True, slots=True)
class LogSource:
    """An access log source as given (``text``): a local ``folder``, or a ``bucket`` and
    ``prefix`` (every object whose key starts with it)."""

    text: str
    folder: Path | None = None
    bucket: str | None = None
    prefix: str = ""

    def __str__(self) -> str:
        return self.text


def parse_source(text: str) -> LogSource:
    """A source from the command line; ``UsageError`` (exit 2) naming ``text`` otherwise."""
    shown = visible(text)
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket or any(c.isspace() or not c.isprintable() for c in bucket):
            raise UsageError(f"access log source {shown}: no bucket name after s3://")
        return LogSource(text, bucket=bucket, prefix=prefix)
    if "://" in text:
        raise UsageError(
            f"access log source {shown}: neither a folder nor s3://bucket/prefix/ "
            "(only local folders and S3 are read)"
        )
    if not text or not Path(text).is_dir():
        raise UsageError(f"access log source {shown}: not a folder, nor s3://bucket/prefix/")
    return LogSource(text, folder=Path(text))


async def read_logs(
    source: LogSource,
    gateway: S3Gateway | None,
    *,
    on_file: Callable[[str], None] | None = None,
) -> AsyncIterator[AccessRecord | BadLine]:
    """Every record and bad line of ``source``, in file order and line order.

    ``gateway`` reads S3 sources (it may be None for a folder). ``on_file`` is told the name
    of each file as its reading starts (to count them; an empty source names none).
    Raises ``CredentialsError`` when S3 refuses the credentials; a prefix that cannot be
    listed, an object or file that cannot be read, is a ``BadLine`` and the rest goes on.
    """
    async with contextlib.aclosing(read_batches(source, gateway, on_file=on_file)) as batches:
        async for batch in batches:
            for item in batch:
                yield item


async def read_batches(
    source: LogSource,
    gateway: S3Gateway | None,
    *,
    on_file: Callable[[str], None] | None = None,
) -> AsyncGenerator[list[AccessRecord | BadLine], None]:
    """``read_logs``' items a list at a time (at most a chunk's lines, ``BATCH``): what a
    caller that sees every line takes, one step per list, not per line."""
    async with contextlib.aclosing(_read(source, gateway, on_file, _ITEMS)) as batches:
        async for batch in batches:
            yield batch


async def read_scans(
    source: LogSource,
    gateway: S3Gateway | None,
    *,
    on_file: Callable[[str], None] | None = None,
) -> AsyncGenerator[ScanRows, None]:
    """``read_batches``' lines as ``usage`` counts them (``accesslog.scan_rows``): per batch
    the records with a link id as plain tuples, how many carry none, and the bad lines."""
    async with contextlib.aclosing(_read(source, gateway, on_file, _SCANS)) as batches:
        async for batch in batches:
            yield batch


async def _read(
    source: LogSource,
    gateway: S3Gateway | None,
    on_file: Callable[[str], None] | None,
    form: _Form[B],
) -> AsyncGenerator[B, None]:
    if source.folder is not None:
        files = _local_files(source.folder, on_file)
    elif source.bucket is not None:
        if gateway is None:
            raise ValueError(f"reading {source.text} needs an S3Gateway")
        files = _s3_files(source.bucket, source.prefix, gateway, on_file)
    else:
        raise ValueError(f"{source!r} names neither a folder nor a bucket")
    async with contextlib.aclosing(files):
        async for name, chunks in files:
            async with contextlib.aclosing(_batches(name, chunks, form)) as batches:
                async for batch in batches:
                    yield batch


async def _s3_files(
    bucket: str, prefix: str, gateway: S3Gateway, on_file: Callable[[str], None] | None
) -> AsyncGenerator[tuple[str, AsyncGenerator[bytes, None]], None]:
    target = gateway.effective(BucketTarget(bucket, None, None))
    try:
        async for found in gateway.list_objects(target, prefix):
            name = f"s3://{bucket}/{found.key}"
            if on_file is not None:
                on_file(name)
            yield name, gateway.read_object(target, found.key, chunk_size=CHUNK)
    except S3ListingError as exc:
        yield f"s3://{bucket}/{prefix}", _failing(f"cannot list: {exc}")


async def _failing(problem: str) -> AsyncGenerator[bytes, None]:
    raise _Unreadable(problem)
    yield b""  # pragma: no cover - makes this an async generator


class _Unreadable(Exception):
    """A file or listing that cannot be read at all; its message is the bad line's problem."""


async def _local_files(
    root: Path, on_file: Callable[[str], None] | None
) -> AsyncGenerator[tuple[str, AsyncGenerator[bytes, None]], None]:
    # Depth first, each folder's names sorted, so the order is the same on every file system.
    # Listing is blocking I/O over possibly many entries: done in a thread, a folder at a time.
    real_root = await asyncio.to_thread(os.path.realpath, root)
    entries, problem = await asyncio.to_thread(_entries, root, real_root)
    if problem is not None:
        yield str(root), _failing(problem)
    stack = [iter(entries)]
    while stack:
        found = next(stack[-1], None)
        if found is None:
            stack.pop()
            continue
        path, kind = found
        if kind == "folder":
            entries, problem = await asyncio.to_thread(_entries, path, real_root)
            if problem is not None:
                yield str(path), _failing(problem)
            stack.append(iter(entries))
        elif kind == "file":
            if on_file is not None:
                on_file(str(path))
            yield str(path), _file_chunks(path)
        elif kind != "inside":
            yield str(path), _failing(kind)


def _entries(folder: Path, real_root: str) -> tuple[list[tuple[Path, str]], str | None]:
    """(path, kind) for each entry of ``folder``, sorted by name: ``folder``, ``file``,
    ``inside`` (a symlink to what is read where it points), or the problem of an entry that
    is not read."""
    try:
        with os.scandir(folder) as scan:
            found = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        return [], f"cannot list the folder: {exc.strerror or exc}"
    entries = []
    for entry in found:
        path = folder / entry.name
        try:
            if entry.is_symlink():
                entries.append((path, _symlink_kind(entry.path, real_root)))
            elif entry.is_dir(follow_symlinks=False):
                entries.append((path, "folder"))
            elif entry.is_file(follow_symlinks=False):
                entries.append((path, "file"))
            else:
                entries.append((path, "not a regular file (a pipe, socket or device): not read"))
        except OSError as exc:
            entries.append((path, f"cannot read: {exc.strerror or exc}"))
    return entries, None


def _symlink_kind(path: str, real_root: str) -> str:
    # Symlinks are never followed: one into the folder is read where it points, one out of it
    # is reported, so a link cannot pull a file from elsewhere nor count one twice.
    target = os.path.realpath(path)
    if not os.path.exists(target):
        return "dangling symlink: not read"
    if os.path.commonpath([target, real_root]) != real_root:
        return "symlink out of the folder: not followed"
    return "inside"


async def _file_chunks(path: Path) -> AsyncGenerator[bytes, None]:
    try:
        # O_NOFOLLOW: a file swapped for a symlink since the walk is refused, not followed;
        # O_NONBLOCK: a pipe swapped in cannot hang the open.
        fd = await asyncio.to_thread(
            os.open, path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        )
    except OSError as exc:
        raise _Unreadable(f"cannot open: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Unreadable("not a regular file: not read")
        while chunk := await asyncio.to_thread(os.read, fd, CHUNK):
            yield chunk
    except OSError as exc:
        raise _Unreadable(f"reading stopped: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _kind_of(head: bytes) -> str | None:
    """Why a file that starts with ``head`` is not an access log, or None when it may be."""
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            return f"{kind}-compressed; S3 writes access logs uncompressed: decompress it first"
    if b"\x00" in head:
        return "binary data (NUL bytes), not an S3 server access log"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON (as CloudTrail writes its logs), not an S3 server access log"
    if head.startswith((b"#Version:", b"#Fields:")):
        return "a W3C extended log (as CloudFront writes), not an S3 server access log"
    return None


async def _batches(
    name: str, chunks: AsyncGenerator[bytes, None], form: _Form[B]
) -> AsyncGenerator[B, None]:
    """The records of one file's ``chunks``, a chunk's worth at a time; its problems as bad
    lines."""
    lines = _Lines(name, form)
    head = b""
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if len(head) < _SNIFF:
                    head += chunk
                    if len(head) < _SNIFF:
                        continue
                    problem = _kind_of(head)
                    if problem is not None:
                        yield form.of([BadLine(name, 0, problem)])
                        return
                    chunk = head
                for batch in lines.feed(chunk):
                    yield batch
    except (_Unreadable, S3ReadError) as exc:
        yield lines.broken(str(exc))
        return
    if 0 < len(head) < _SNIFF:
        problem = _kind_of(head)
        if problem is not None:
            yield form.of([BadLine(name, 0, problem)])
            return
        for batch in lines.feed(head):
            yield batch
    yield lines.finish()


class _Lines(Generic[B]):
    """One file's bytes cut into numbered lines and parsed, a chunk at a time."""

    def __init__(self, name: str, form: _Form[B]) -> None:
        self.name = name
        self.form: _Form[B] = form
        self.number = 0
        self.rest = b""
        self.skipping = False  # inside a line too long to be a record, until its newline

    def feed(self, chunk: bytes) -> Iterator[B]:
        """The items of the lines ``chunk`` completes, ``BATCH`` lines at a time; its
        unfinished end is kept."""
        data = self.rest + chunk if self.rest else chunk
        last = data.rfind(b"\n")
        if last >= 0:
            self.rest = data[last + 1 :]
            begin = 0
            if self.skipping:
                # The end of a line already reported as too long: not read, not counted again.
                self.skipping = False
                begin = data.find(b"\n") + 1
            if begin <= last:
                yield from self._items(data[begin:last])
        else:
            self.rest = data
        if len(self.rest) > MAX_LINE:
            if not self.skipping:
                self.number += 1
                yield self.form.of([BadLine(self.name, self.number, _TOO_LONG)])
            self.skipping, self.rest = True, b""

    def _items(self, body: bytes) -> Iterator[B]:
        """The items of ``body``'s lines (itself without its last newline)."""
        if not _has_long_line(body):
            # Decoded a chunk at a time, after the cut: a character split across chunks is
            # whole here. A byte that is not UTF-8 becomes a visible \xNN, never an error.
            text = body.decode("utf-8", "backslashreplace")
            if self.form.text is None:
                yield from self._parsed(text.split("\n"))
                return
            scan, at, size = self.form.text, 0, len(text)
            while at <= size:
                items, at, read = scan(self.name, self.number + 1, text, at, BATCH)
                self.number += read
                yield items
            return
        pieces = body.split(b"\n")
        begin = 0
        for end, piece in enumerate(pieces):
            if len(piece) > MAX_LINE:
                if end > begin:
                    yield from self._items(b"\n".join(pieces[begin:end]))
                self.number += 1
                yield self.form.of([BadLine(self.name, self.number, _TOO_LONG)])
                begin = end + 1
        if begin < len(pieces):
            yield from self._items(b"\n".join(pieces[begin:]))

    def _parsed(self, texts: list[str]) -> Iterator[B]:
        parse = self.form.parse
        for begin in range(0, len(texts), BATCH):
            part = texts[begin : begin + BATCH]
            items = parse(self.name, self.number + 1, part)
            self.number += len(part)
            if items:
                yield items

    def finish(self) -> B:
        """The last line, when the file does not end with a newline: whole, or truncated."""
        if not self.rest or self.skipping:
            return self.form.of([])
        self.number += 1
        text = self.rest.decode("utf-8", "backslashreplace")
        return self.form.of(
            [
                BadLine(
                    item.file,
                    item.line,
                    f"truncated: the file ends inside this line ({item.problem})",
                )
                if isinstance(item, BadLine)
                else item
                for item in parse_lines(self.name, self.number, [text])
            ]
        )

    def broken(self, problem: str) -> B:
        """The bad line for a file whose reading stopped: the line it stopped in."""
        line = 0 if self.number == 0 else self.number + 1
        return self.form.of([BadLine(self.name, line, problem)])


def _has_long_line(body: bytes) -> bool:
    """Whether a line of ``body`` is longer than ``MAX_LINE`` bytes.

    Window by window: each search looks back from a window's end for its last newline, so a
    megabyte of ordinary lines costs a few dozen searches and no copies.
    """
    begin = 0
    while len(body) - begin > MAX_LINE:
        newline = body.rfind(b"\n", begin, begin + MAX_LINE + 1)
        if newline < 0:
            return True
        begin = newline + 1
    return False
