"""The k-way join of an S3 Inventory prefix's parts, one from each shard, by key.

Each shard read its share of the report's data files, so every shard holds some of a prefix's
rows, each shard's in key order; the merge joins them into one part in key order, exactly the
rows and text the shards staged. It works on the staged bytes: a JSON line's key is cut from
the line (``PartFile`` writes ``"key"`` third, as ``json.dumps`` or its plain twin made it)
and compared as UTF-8 bytes, whose order is code point order (``str``'s, and S3's); only a
key written with an escape (a quote, a backslash, a control character) is decoded by
``json``. CSV rows move as lines; a row is one line unless a quoted cell holds a line break
(an odd count of ``"`` so far: read on). Nothing is decoded or encoded again.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
from collections.abc import Iterator
from typing import IO

from sharebatch.run.bundles import PartFile

_KEY = b', "key": "'
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


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


def csv_rows(handle: IO[bytes]) -> Iterator[bytes]:
    """Each CSV row of ``handle`` as its bytes, line break included. The csv module doubles
    every quote inside a quoted cell, so a row whose count of ``"`` is odd has a quoted cell
    still open: its line break is the cell's, and the row goes on."""
    for line in handle:
        row = line
        while row.count(b'"') % 2:
            more = handle.readline()
            if not more:
                break  # cut short: the row as it stands
            row += more
        yield row


def join(parts: list[PartFile], into: PartFile) -> PartFile:
    """``parts``, each in key order, as the part ``into`` in key order: every JSON line and
    CSV row as staged, a row of each part in memory. Rows of equal keys keep the order of
    ``parts`` (``heapq.merge``'s, the exact join's)."""
    into.path.parent.mkdir(mode=0o700, exist_ok=True)
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(os.fdopen(os.open(into.path, _WRITE, 0o600), "wb"))
        rows = None
        if into.csv_path is not None:
            rows = stack.enter_context(os.fdopen(os.open(into.csv_path, _WRITE, 0o600), "wb"))
        streams = [_keyed(index, part, stack) for index, part in enumerate(parts)]
        # (key, part's index, line, row): tuples compare by key, then by part, never further.
        if rows is None:
            lines.writelines(found[2] for found in heapq.merge(*streams))
        else:
            write_line, write_row = lines.write, rows.write
            for _, _, line, row in heapq.merge(*streams):
                write_line(line)
                write_row(row)
    into.rows = sum(part.rows for part in parts)
    ends = [part.earliest_expiry for part in parts if part.earliest_expiry is not None]
    into.earliest_expiry = min(ends, default=None)
    return into


def _keyed(
    index: int, part: PartFile, stack: contextlib.ExitStack
) -> Iterator[tuple[bytes, int, bytes, bytes]]:
    lines = stack.enter_context(part.path.open("rb"))
    if part.csv_path is None:
        for line in lines:
            yield line_key(line), index, line, b""
        return
    rows = csv_rows(stack.enter_context(part.csv_path.open("rb")))
    for line, row in zip(lines, rows, strict=True):
        yield line_key(line), index, line, row
