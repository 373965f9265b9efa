"""The merged run's audit log: every shard's events, merged by time, each with its ``shard``.

Each line of a shard's ``audit.jsonl`` gets the field ``"shard": "K-of-N"`` first (a line that
names its shard already keeps its own), and the lines of all shards are merged as
``heapq.merge`` merges them keyed on (time, shard): the time is the line's first
``"timestamp": "..."`` value (empty without one), and a line cut short by a kill (no line
break, or not an object) is left out.

A shard writes its events in time order, with many lines of one time (a chunk of
``link_issued`` events shares its stamp), and two shards' events interleave in long runs:
two shards of 1M links switch about 2,400 times. So the lines are handled in blocks: the
``shard`` field is spliced into every line of a block by one ``bytes.replace``, each line's
time is cut by ``bytes.find``, and a block found in time order is merged by ``bisect``, run
by run, each run written as one slice of its block. A
block out of time order (a clock set back) is merged line by line, as ``heapq.merge`` takes
its lines: the result is the same.

``serve`` is the same merge in a child process (``child``): the merge writes the bundles
meanwhile, on the other core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate, islice
from operator import le
from pathlib import Path
from typing import IO

from sharebatch import child
from sharebatch.errors import RunCrashed
from sharebatch.shards.join import READ_BUFFER, ROWS
from sharebatch.visible import visible

_STAMP = b'"timestamp": "'
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


def merge_logs(path: Path, logs: Sequence[tuple[Path, str]], rows: int = ROWS) -> None:
    """Write ``path`` (0600, never through a symbolic link: the audit log's own rule) with
    the events of ``logs``, each (a shard's ``audit.jsonl``, the shard's name), merged; a
    log that does not exist has none. ``rows``: lines read at a time."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(os.fdopen(os.open(path, _FLAGS, 0o600), "wb"))
        found = []
        for index, (log, name) in enumerate(logs):
            if log.is_file():
                handle = stack.enter_context(log.open("rb", buffering=READ_BUFFER))
                found.append(_Log(handle, name, index, rows))
        _merge([log for log in found if log.next_block()], out)


def _merge(logs: list[_Log], out: IO[bytes]) -> None:
    """``heapq.merge``'s order: at each step, the head line with the least (time, log index)
    among the logs' head lines; here a run of a log's lines at a time, all those before the
    least head line of the other logs."""
    while len(logs) > 1:
        head = min(logs, key=_Log.head)
        stamp, index = min(log.head() for log in logs if log is not head)
        # The head's lines before (stamp, index): up to it, or through it when the head's
        # log comes first among equal times.
        through = head.index < index
        if head.ordered:
            find = bisect_right if through else bisect_left
            end = find(head.stamps, stamp, head.at)
        else:
            end = head.at
            stamps = head.stamps
            while end < len(stamps) and (stamps[end] < stamp or (through and stamps[end] == stamp)):
                end += 1
        out.write(head.lines(end))
        if end == len(head.stamps) and not head.next_block():
            logs.remove(head)
    for log in logs:
        out.write(log.lines(len(log.stamps)))
        while log.next_block():
            out.write(log.lines(len(log.stamps)))


class _Log:
    """One shard's log, a block of whole lines at a time: the lines with their ``shard``
    field as one ``bytes``, each line's time, and the next line to merge (``at``)."""

    def __init__(self, handle: IO[bytes], name: str, index: int, rows: int) -> None:
        self.index = index
        self._handle = handle
        self._rows = rows
        self._named = ('"shard": ' + json.dumps(name)).encode()
        self._field = b"{" + self._named + b", "
        self.stamps: list[bytes] = []
        self.ordered = True
        self.at = 0
        self._text = memoryview(b"")
        self._ends: list[int] = []
        self._grown = 0

    def head(self) -> tuple[bytes, int]:
        return self.stamps[self.at], self.index

    def lines(self, end: int) -> memoryview:
        """The lines from ``at`` to ``end`` (line breaks included), no longer to merge."""
        start, self.at = self._offset(self.at), end
        return self._text[start : self._offset(end)]

    def _offset(self, line: int) -> int:
        # ``_ends`` adds up the lines' lengths as read; each grew by its field since.
        return self._ends[line - 1] + line * self._grown if line else 0

    def next_block(self) -> bool:
        """Read the next block holding a line to merge; False at the end of the log."""
        while lines := list(islice(self._handle, self._rows)):
            if self._load(lines):
                return True
        return False

    def _load(self, lines: list[bytes]) -> bool:
        block = b"".join(lines)
        named, field = self._named, self._field
        if (
            named not in block
            and block.startswith(b'{"')
            and block.count(b"\n") == len(lines)
            and block.count(b'\n{"') == len(lines) - 1
        ):
            # Each line whole, an object of the common shape, none naming its shard: each
            # given its field by one pass.
            self._text = memoryview(field + block[1:].replace(b'\n{"', b"\n" + field + b'"'))
            self._grown = len(field) - 1
        else:
            lines = [kept for line in lines if (kept := _event(line, named, field)) is not None]
            if not lines:
                return False
            self._text = memoryview(b"".join(lines))
            self._grown = 0
        skip = len(_STAMP)
        self.stamps = [
            line[start:end]
            if (start := line.find(_STAMP) + skip) >= skip and (end := line.find(b'"', start)) >= 0
            else b""
            for line in lines
        ]
        self.ordered = all(map(le, self.stamps, islice(self.stamps, 1, None)))
        self._ends = list(accumulate(map(len, lines)))
        self.at = 0
        return True


def _event(line: bytes, named: bytes, field: bytes) -> bytes | None:
    """One logged line with its ``shard`` field; None for a line cut short by a kill (never
    part of the merged log)."""
    if not line.startswith(b"{") or not line.endswith(b"\n"):
        return None
    if named in line:
        # The shard's own events that name it already keep their one field.
        return line
    if line[1:2] == b'"':
        return field + line[1:]
    # Another shape: str.lstrip's own whitespace, as the log was always merged.
    return field + line.decode("utf-8")[1:].lstrip().encode("utf-8")


class Merging:
    """``merge_logs`` in a child process (``serve``), while the merge writes the bundles."""

    def __init__(self, process: asyncio.subprocess.Process, path: Path) -> None:
        self._process = process
        self._path = path

    @classmethod
    async def start(cls, path: Path, logs: Sequence[tuple[Path, str]]) -> Merging:
        args = [str(path), *(text for log, name in logs for text in (str(log), name))]
        process = await child.start(
            "sharebatch.shards.events", "serve", *args, stderr=asyncio.subprocess.PIPE
        )
        return cls(process, path)

    async def finished(self) -> None:
        """Wait until the log is written; ``RunCrashed`` when the child failed or was killed."""
        _, errors = await self._process.communicate()
        code = self._process.returncode
        if code:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            said = errors.decode("utf-8", "replace").strip().splitlines()[-1:]
            raise RunCrashed(
                f"the audit log's merge (process {self._process.pid}) ended with {how}"
                + (f": {visible(said[0])}" if said else "")
            )

    async def stop(self) -> None:
        """Kill the child if it still runs, and wait for it; a line it was writing is cut
        off the log (the merge's own lines follow whole ones)."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.communicate()
        if self._process.returncode:
            _whole_lines(self._path)


def _whole_lines(path: Path) -> None:
    """Cut ``path`` after its last line break (all of it without one); nothing if absent."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        end = os.fstat(fd).st_size
        while end > 0:
            start = max(0, end - (1 << 16))
            found = os.pread(fd, end - start, start).rfind(b"\n")
            if found >= 0:
                end = start + found + 1
                break
            end = start
        os.ftruncate(fd, end)
    finally:
        os.close(fd)


def serve() -> None:
    """The child's program: ``merge_logs`` of ``sys.argv[2:]`` (the log to write, then each
    shard's log and name)."""
    child.as_child()
    path, *rest = sys.argv[2:]
    merge_logs(
        Path(path), [(Path(log), name) for log, name in zip(rest[::2], rest[1::2], strict=True)]
    )
