"""The merge's k-way joins of the shards' key-ordered streams, over their staged bytes.

Each shard read its share of an S3 Inventory report's data files, so every shard holds some
of a prefix's rows, each shard's in key order; ``JoinedPart`` reads them as one part in
key order, exactly the rows and text the shards staged (the audit logs are merged by time the
same way, ``merged``). Nothing is decoded or encoded again: a JSON line's key is cut from the line
(``PartFile`` writes ``"key"`` third, as ``json.dumps`` or its plain twin made it) and
compared as UTF-8 bytes, whose order is code point order (``str``'s, and S3's); only a key
written with an escape (a quote, a backslash, a control character) is decoded by ``json``.
CSV rows move as lines; a row is one line unless a quoted cell holds a line break (an odd
count of ``"`` so far: read on).

``merged`` works in blocks of rows: the rows of every source below the least of the sources'
last keys read are sure to come first, so they are ordered by one stable ``sorted`` (a merge
of sorted runs, in C) rather than a heap step per row. Its order is ``heapq.merge``'s: by key,
rows of equal keys in the order of the sources, then of the rows; a source found out of key
order hands what is left to ``heapq.merge`` itself.
"""

from __future__ import annotations

import contextlib
import heapq
import json
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import chain, islice
from operator import itemgetter
from typing import IO, Any

from sharebatch.run.bundles import PartFile

Block = tuple[list[bytes], list[list[bytes]]]
"""Rows of a source: their keys, and their columns (lists as long as the keys)."""

ROWS = 4096
"""Rows read from each source at a time."""

READ_BUFFER = 1 << 20
"""Bytes a source file is read by: the default 8 KiB made one system call every dozen rows."""

_KEY = b', "key": "'


def line_key(line: bytes) -> bytes:
    """The ``key`` of a staged JSON line, as UTF-8 bytes.

    Inside a JSON string every ``"`` follows a backslash, so ``, "key": "`` (a quote after a
    space) can only be the field's own name, and the value ends at the next quote unless the
    value holds an escape, which always starts with a backslash: then ``json`` decodes it.
    """
    start = line.find(_KEY)
    if start >= 0:
        start += len(_KEY)
        end = line.find(b'"', start)
        if end >= 0 and line.find(b"\\", start, end) < 0:
            return line[start:end]
    # surrogatepass keeps code point order for any str json can give.
    key: str = json.loads(line)["key"]
    return key.encode("utf-8", "surrogatepass")


def line_keys(lines: list[bytes]) -> list[bytes]:
    """``line_key`` of each line: when no line holds a backslash (no key is escaped) and
    each holds its key field once, each key is cut by ``find``s, without a call; by one
    ``find`` a line when every line starts alike up to its key (a part's rows share their
    recipient and nearly always their bucket)."""
    block = b"".join(lines)
    if b"\\" in block:
        return [line_key(line) for line in lines]
    start = lines[0].find(_KEY) + len(_KEY)
    head = lines[0][:start]
    if (
        start >= len(_KEY)
        and block.startswith(head)
        and block.count(b"\n" + head) == len(lines) - 1
    ):
        # Each line after a line break starts with ``head``, which ends with the first key
        # field of the first line and holds no other: every line's key field is at ``start``.
        return [line[start : line.find(b'"', start)] for line in lines]
    if block.count(_KEY) != len(lines):
        return [line_key(line) for line in lines]
    skip = len(_KEY)
    return [line[(start := line.find(_KEY) + skip) : line.find(b'"', start)] for line in lines]


def csv_rows(lines: Iterator[bytes]) -> Iterator[bytes]:
    """Each CSV row of ``lines`` (split at ``\\n``) as its bytes, line break included. The csv
    module doubles every quote inside a quoted cell, so a row whose count of ``"`` is odd has
    a quoted cell still open: its line break is the cell's, and the row goes on."""
    for line in lines:
        row = line
        while row.count(b'"') % 2:
            more = next(lines, b"")
            if not more:
                break  # cut short: the row as it stands
            row += more
        yield row


def read_rows(handle: IO[bytes], count: int) -> list[bytes]:
    """The next ``count`` CSV rows of ``handle`` (fewer at its end)."""
    lines = list(islice(handle, count))
    if b'"' not in b"".join(lines):
        return lines  # no quoted cell: a row a line
    return list(islice(csv_rows(chain(lines, handle)), count))


def merged(sources: Sequence[Iterator[Block]], width: int) -> Iterator[list[list[bytes]]]:
    """The ``width`` columns of every source's rows, in blocks, in ``heapq.merge``'s order of
    their keys (see the module's docstring); each source's blocks in key order."""
    runs = [_Run(source, width) for source in sources]
    ordered = all(run.extend() for run in runs)
    while ordered:
        live = [run for run in runs if not run.done]
        # Every live run holds a row; a row it has not read has a key at least its last.
        bound = min(run.keys[-1] for run in live) if live else None
        counts = [len(run.keys) if bound is None else bisect_left(run.keys, bound) for run in runs]
        total = sum(counts)
        if not total:
            if bound is None:
                return
            # Only rows of the least last key are held: read on past them.
            ordered = all(run.extend() for run in live if run.keys[-1] == bound)
            continue
        taken = [run.take(count) for run, count in zip(runs, counts, strict=True) if count]
        if len(taken) == 1:
            yield taken[0][1]
        else:
            keys = list(chain.from_iterable(found for found, _ in taken))
            # Stable: rows of equal keys stay in the order of the runs, then of the rows.
            pick = itemgetter(*sorted(range(total), key=keys.__getitem__))
            columns = [list(chain.from_iterable(c[n] for _, c in taken)) for n in range(width)]
            yield [list(pick(column)) for column in columns]
        ordered = all(run.extend() for run in runs if not run.keys and not run.done)
    # A source out of key order: what is left, as heapq.merge orders it (key, then source);
    # a run not read yet (``all`` stopped early) is read whole.
    rows = heapq.merge(*(run.rest(index) for index, run in enumerate(runs)))
    while block := list(islice(rows, ROWS)):
        yield [[row[2][n] for row in block] for n in range(width)]


class _Run:
    """One source's rows read and not yet merged, and what is left of it."""

    def __init__(self, source: Iterator[Block], width: int) -> None:
        self._source = source
        self.keys: list[bytes] = []
        self._columns: list[list[bytes]] = [[] for _ in range(width)]
        self.done = False

    def extend(self) -> bool:
        """Read the next block (``done`` at the end); False when it breaks key order."""
        for keys, columns in self._source:
            if not keys:
                continue
            ordered = (not self.keys or self.keys[-1] <= keys[0]) and keys == sorted(keys)
            self.keys += keys
            for mine, more in zip(self._columns, columns, strict=True):
                mine += more
            return ordered
        self.done = True
        return True

    def take(self, count: int) -> tuple[list[bytes], list[list[bytes]]]:
        """The first ``count`` rows held, no longer held."""
        keys = self.keys[:count]
        del self.keys[:count]
        columns = []
        for column in self._columns:
            columns.append(column[:count])
            del column[:count]
        return keys, columns

    def rest(self, index: int) -> Iterator[tuple[bytes, int, tuple[bytes, ...]]]:
        """(key, ``index``, columns) of each row held, then of the rest of the source."""
        for keys, columns in chain([(self.keys, self._columns)], self._source):
            for key, row in zip(keys, zip(*columns, strict=True), strict=True):
                yield key, index, row


class JoinedPart:
    """The parts of one prefix from several shards, each in key order, as one part in key
    order, joined as it is read (``bundles.JoinedRows``): every JSON line and CSV row as the
    shards staged it, written once, into the bundle itself; a block of each part in memory."""

    def __init__(self, parts: list[PartFile]) -> None:
        self.parts = parts
        self.rows = sum(part.rows for part in parts)
        ends = [part.earliest_expiry for part in parts if part.earliest_expiry is not None]
        self.earliest_expiry: datetime | None = min(ends, default=None)

    def blocks(self) -> Iterator[tuple[bytes, bytes]]:
        with_csv = all(part.csv_path is not None for part in self.parts)
        for columns in self._columns(2 if with_csv else 1):
            yield b"".join(columns[0]), b"".join(columns[1]) if with_csv else b""

    def rows_in_order(self) -> Iterator[dict[str, Any]]:
        for columns in self._columns(1):
            for line in columns[0]:
                yield json.loads(line)

    def _columns(self, width: int) -> Iterator[list[list[bytes]]]:
        """The JSON lines (and with ``width`` 2, the CSV rows) in order, in blocks."""
        with contextlib.ExitStack() as stack:
            yield from merged([_blocks(part, stack, width) for part in self.parts], width)


def _blocks(part: PartFile, stack: contextlib.ExitStack, width: int) -> Iterator[Block]:
    lines = stack.enter_context(part.path.open("rb", buffering=READ_BUFFER))
    rows = None
    if part.csv_path is not None and width > 1:
        rows = stack.enter_context(part.csv_path.open("rb", buffering=READ_BUFFER))
    while found := list(islice(lines, ROWS)):
        columns = [found]
        if rows is not None:
            columns.append(read_rows(rows, len(found)))
            if len(columns[1]) != len(found):
                raise ValueError(f"{part.csv_path}: fewer CSV rows than {part.path.name} has")
        yield line_keys(found), columns
