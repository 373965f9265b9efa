"""The merge's byte-level join and audit merge against the exact ways they replaced."""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.models import Link, ObjectRef
from sharebatch.run.bundles import PartFile
from sharebatch.shards import join as joins
from sharebatch.shards import merge
from sharebatch.shards.join import (
    Block,
    JoinedPart,
    csv_rows,
    line_key,
    line_keys,
    merged,
    read_rows,
)
from sharebatch.shards.record import ShardRecord
from sharebatch.shards.spec import ShardSpec
from tests.support import tricky

WHEN = datetime(2026, 11, 28, 20, 15, tzinfo=UTC)
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


def _exact_join(parts: list[PartFile], into: PartFile) -> None:
    """The join as the merge made it before: keys by ``json.loads``, CSV rows read and
    written back by the csv module, ``heapq.merge`` keyed on the str key."""
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(
            os.fdopen(os.open(into.path, FLAGS, 0o600), "w", encoding="utf-8", newline="")
        )
        rows = None
        if into.csv_path is not None:
            rows = stack.enter_context(
                os.fdopen(os.open(into.csv_path, FLAGS, 0o600), "w", encoding="utf-8", newline="")
            )
        streams = [_exact_keyed(part, stack) for part in parts]
        for _, line, row in heapq.merge(*streams, key=lambda found: found[0]):
            lines.write(line)
            if rows is not None:
                rows.write(row)


def _exact_keyed(part: PartFile, stack: contextlib.ExitStack) -> Iterator[tuple[str, str, str]]:
    lines = stack.enter_context(part.path.open(encoding="utf-8", newline=""))
    rows: Iterator[list[str]] = iter(())
    if part.csv_path is not None:
        rows = csv.reader(stack.enter_context(part.csv_path.open(encoding="utf-8", newline="")))
    buffer = io.StringIO(newline="")
    table = csv.writer(buffer, lineterminator="\r\n")
    for line in lines:
        text = ""
        if part.csv_path is not None:
            table.writerow(next(rows))
            text = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield json.loads(line)["key"], line, text


def _link(recipient: str, key: str, n: int) -> Link:
    obj = ObjectRef("bkt", key, n, f"etag{n}", WHEN)
    return Link("job", recipient, obj, "GET", WHEN, WHEN, f"https://x/{n}?X-Amz-Signature=s")


def _staged(
    folder: Path, recipient: str, groups: list[list[str]], with_csv: bool
) -> list[PartFile]:
    folder.mkdir()
    parts = []
    for index, keys in enumerate(groups):
        part = PartFile(folder / f"{index}.jsonl", csv=with_csv)
        # Each shard's rows of a prefix are in key order; a key may be in several shards.
        part.write(_link(recipient, key, n) for n, key in enumerate(sorted(keys)))
        part.close()
        part.path.touch()  # a shard with no row of the prefix still has its (empty) part
        if part.csv_path is not None:
            part.csv_path.touch()
        parts.append(part)
    return parts


_KEYS = st.one_of(tricky.texts(surrogates=False), tricky.plain(), st.sampled_from(["a", "a/b"]))
_RECIPIENTS = st.one_of(
    st.just("alice"), st.just('x", "key": "zz'), tricky.texts(surrogates=False, min_size=1)
)


@given(
    _RECIPIENTS,
    st.lists(st.lists(_KEYS, max_size=12), min_size=2, max_size=4),
    st.booleans(),
    st.integers(1, 5),
)
@settings(max_examples=200, deadline=None)
def test_join_is_the_exact_join(
    recipient: str, groups: list[list[str]], with_csv: bool, rows: int
) -> None:
    """Keys with quotes, backslashes, controls, unicode, commas and line breaks, equal keys
    across parts, a recipient that spells a key field, blocks of a few rows: the byte join
    gives the very bytes the csv/json join wrote, rows of equal keys in the order of the
    parts."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(joins, "ROWS", rows):
        folder = Path(tmp)
        parts = _staged(folder / "parts", recipient, groups, with_csv)
        fast = JoinedPart(parts)
        blocks = list(fast.blocks())
        exact = PartFile(folder / "p.jsonl", csv=with_csv)
        _exact_join(parts, exact)
        assert b"".join(lines for lines, _ in blocks) == exact.path.read_bytes()
        if with_csv:
            assert exact.csv_path is not None
            assert b"".join(rows for _, rows in blocks) == exact.csv_path.read_bytes()
        assert fast.rows == sum(len(g) for g in groups)


@given(_RECIPIENTS, tricky.texts(surrogates=False))
@settings(max_examples=300, deadline=None)
def test_line_key_is_the_json_key(recipient: str, key: str) -> None:
    """The key cut from a staged line (escaped or not) is json's, as UTF-8 bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        part = PartFile(Path(tmp) / "p.jsonl", csv=False)
        part.write([_link(recipient, key, 1)])
        part.close()
        line = part.path.read_bytes()
    assert line_key(line) == json.loads(line)["key"].encode()
    assert line_keys([line, line]) == [line_key(line)] * 2


@given(
    st.lists(
        st.lists(st.one_of(tricky.texts(surrogates=False), st.integers()), min_size=1, max_size=5),
        max_size=6,
    ),
    st.integers(1, 7),
)
@settings(max_examples=200, deadline=None)
def test_read_rows_reads_whole_rows(table: list[list[object]], count: int) -> None:
    """``count`` rows at a time, a quoted line break inside its row, till the end."""
    written = []
    for cells in table:
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        written.append(buffer.getvalue().encode())
    handle = io.BytesIO(b"".join(written))
    found = []
    while rows := read_rows(handle, count):
        assert len(rows) == min(count, len(written) - len(found))
        found += rows
    assert found == written


_SOURCE = st.lists(st.lists(st.sampled_from([b"", b"a", b"a/b", b"b", b"\xc3\xa9", b"z"])))


@given(st.lists(_SOURCE, max_size=4), st.booleans())
@settings(max_examples=300, deadline=None)
def test_merged_is_heapq_merge(sources: list[list[list[bytes]]], ordered: bool) -> None:
    """Sources in blocks of any size (empty ones too), equal keys within and across them,
    sources in key order or not: ``merged`` gives ``heapq.merge``'s rows in its order."""
    if ordered:
        flat = [sorted(key for block in source for key in block) for source in sources]
        sizes = [[len(block) for block in source] for source in sources]
        sources = [
            [flat[n][sum(size[:i]) : sum(size[: i + 1])] for i in range(len(size))]
            for n, size in enumerate(sizes)
        ]
    tagged = [
        [[key + b"|%d.%d" % (n, i) for i, key in enumerate(block)] for block in source]
        for n, source in enumerate(sources)
    ]

    def blocks(source: list[list[bytes]], rows: list[list[bytes]]) -> Iterator[Block]:
        for keys, block in zip(source, rows, strict=True):
            yield keys, [block]

    found = [
        row
        for block in merged([blocks(s, t) for s, t in zip(sources, tagged, strict=True)], 1)
        for row in block[0]
    ]
    streams = [
        list(zip(chain.from_iterable(s), repeat(n), chain.from_iterable(t), strict=False))
        for n, (s, t) in enumerate(zip(sources, tagged, strict=True))
    ]
    assert found == [row for _, _, row in heapq.merge(*streams)]


@given(
    st.lists(
        st.lists(st.one_of(tricky.texts(surrogates=False), st.integers()), min_size=1, max_size=5),
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_csv_rows_are_the_csv_modules_rows(table: list[list[object]]) -> None:
    """Cells with quotes, commas, CR, LF and U+2028: each row read back as the bytes the csv
    module wrote for it, a quoted line break kept inside its row."""
    written = []
    for cells in table:
        buffer = io.StringIO(newline="")
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        written.append(buffer.getvalue().encode())
    assert list(csv_rows(io.BytesIO(b"".join(written)))) == written


_EXACT_STAMP = re.compile(r'"timestamp": "([^"]*)"')


def _exact_events(shard: ShardRecord) -> Iterator[tuple[str, int, str]]:
    """The audit merge's events as read before (text, a regex for the time)."""
    named = '"shard": ' + json.dumps(shard.spec.name)
    field = "{" + named + ", "
    with (shard.path / "audit.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.startswith("{") or not line.endswith("\n"):
                continue
            stamp = _EXACT_STAMP.search(line)
            text = line if named in line else field + line[1:].lstrip()
            yield (stamp[1] if stamp else "", shard.spec.index, text)


_STAMPS = st.sampled_from(
    ["2026-12-03T10:00:00.000001Z", "2026-12-03T10:00:00Z", "2026-12-03T10:00:01.5Z", ""]
)


@st.composite
def _audit_line(draw: st.DrawFn) -> str:
    fields: dict[str, object] = {"event": draw(st.sampled_from(["link_issued", "run_started"]))}
    if draw(st.booleans()):
        fields["key"] = draw(tricky.texts(surrogates=False))
    if draw(st.booleans()):
        fields["shard"] = draw(st.sampled_from(["0-of-2", "1-of-2"]))
    if draw(st.booleans()):
        fields["nested"] = {"timestamp": draw(_STAMPS)}
    if draw(st.booleans()):
        fields["timestamp"] = draw(_STAMPS)
    line = json.dumps(fields, ensure_ascii=False)
    shape = draw(st.sampled_from(["json", "spaced", "cut", "odd"]))
    if shape == "spaced":
        line = "{ \u3000" + line[1:]  # whitespace str.lstrip takes and bytes.lstrip leaves
    elif shape == "cut":
        return line[: draw(st.integers(0, len(line)))]
    elif shape == "odd":
        line = draw(st.sampled_from(["{}", '{"timestamp": "x', "[1]", "{" + line]))
    return line + "\n"


@given(
    st.lists(st.lists(_audit_line(), max_size=8), min_size=1, max_size=3),
    st.integers(1, 5),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_audit_merge_is_the_exact_merge(logs: list[list[str]], rows: int, ordered: bool) -> None:
    """Lines with and without a time, a nested ``timestamp``, a ``shard`` already named,
    odd whitespace, lines cut short, logs in time order or not, blocks of a few lines: the
    byte merge writes the regex merge's log."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(merge, "ROWS", rows),
        mock.patch.object(joins, "ROWS", rows),
    ):
        shards = []
        for index, lines in enumerate(logs):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            # A shard writes its log in time order; a clock set back would break it.
            if ordered:
                lines = sorted(lines, key=_exact_stamp)
            (folder / "audit.jsonl").write_text("".join(lines), encoding="utf-8")
            spec = ShardSpec(index, len(logs))
            shards.append(ShardRecord(spec, folder, {}, "ok", ""))
        merged = Path(tmp) / "audit.jsonl"
        merge._merge_audit(merged, shards)
        exact = heapq.merge(*(_exact_events(s) for s in shards), key=lambda e: (e[0], e[1]))
        assert merged.read_bytes() == "".join(e[2] for e in exact).encode()


def _exact_stamp(line: str) -> str:
    found = _EXACT_STAMP.search(line)
    return found[1] if found else ""
