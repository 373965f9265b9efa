"""An inventory data file's rows as a listing would give them (``Row``s).

CSV files are gzip-compressed, without a header line; their columns are the manifest's
``fileSchema`` in order (Amazon S3 User Guide, "Amazon S3 Inventory list",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-inventory.html#storage-inventory-contents).
The same page says of ``Key``: "When you're using the CSV file format, the key name is
URL-encoded and must be decoded before you can use it". S3 writes the form encoding there, as
in its event notifications: a space becomes ``+`` and a literal ``+`` ``%2B``, so
``unquote_plus`` gives the key back (a ``%20`` decodes to a space too). Parquet (and ORC)
columns are typed and keys are not encoded. Parquet files name their columns in the file
(``key``, ``size``, ``last_modified_date``, ``e_tag``, ``is_latest``, ``is_delete_marker`` as
AWS writes them; the CSV header names ``Key``, ``Size``... are matched too, ignoring case and
underscores).

What a listing would not show is skipped: delete markers (``IsDeleteMarker`` true),
versions that are not the current one (``IsLatest`` false: a report "including all
versions"), and the console's folder markers (a key ending in '/' of size 0, as
``s3/listparse.files_only``).
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from sharebatch.errors import InventoryError

REQUIRED = ("Key", "Size", "LastModifiedDate", "ETag")
"""Without these a row cannot be what a listing gives (a bundle's key, size, date, ETag)."""


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


@dataclass(frozen=True, slots=True)
class Columns:
    key: int
    size: int
    modified: int
    etag: int
    latest: int | None
    delete_marker: int | None

    @classmethod
    def of(cls, names: tuple[str, ...] | list[str], where: str) -> Columns:
        index = {_norm(n): i for i, n in enumerate(names)}
        missing = [n for n in REQUIRED if _norm(n) not in index]
        if missing:
            raise InventoryError(
                "BadSchema",
                f"{where}: the schema has no {', '.join(missing)} column ({', '.join(names)});"
                " the inventory configuration must include Size, LastModifiedDate and ETag",
            )
        return cls(
            index["key"],
            index["size"],
            index["lastmodifieddate"],
            index["etag"],
            index.get("islatest"),
            index.get("isdeletemarker"),
        )


Row = tuple[str, int, str, datetime]
"""An object of a report as a listing would show it: key, size, ETag, last modified. A plain
tuple, the bucket left out (the report's, one for all): a million rows are made, held, sorted
and spilled, and the ``ObjectRef`` a page needs is made once, when the page is (``sort``).
Key first, so tuples compare by key, and in C: Python's sort compares the first items with
its string fast path when every tuple's differ."""

Accept = Callable[[list[Row]], None]
"""Where the rows that a listing would show go, a batch at a time."""


class CsvGzRows:
    """A CSV.gz data file fed in chunks as they arrive: rows out as soon as their line is
    whole, never the file in memory."""

    def __init__(self, columns: Columns, accept: Accept, where: str) -> None:
        self._columns = columns
        self._accept = accept
        self._where = where
        self._inflate = zlib.decompressobj(wbits=31)  # gzip framing
        self._rest = b""
        self._line = 0
        self._moments: dict[str, datetime] = {}

    def feed(self, chunk: bytes) -> None:
        try:
            data = self._rest + self._inflate.decompress(chunk)
            # A gzip file may hold several members (concatenated streams).
            while self._inflate.eof and self._inflate.unused_data:
                unused = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                data += self._inflate.decompress(unused)
        except zlib.error as exc:
            raise InventoryError("CorruptFile", f"{self._where}: not gzip data ({exc})") from None
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        if cut:
            self._lines(self._text(data[:cut]).splitlines())

    def finish(self) -> None:
        if not self._inflate.eof:
            raise InventoryError("TruncatedFile", f"{self._where}: the gzip stream is cut short")
        if self._rest:
            self._lines([self._text(self._rest)])
            self._rest = b""

    def _text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8", "strict")
        except UnicodeDecodeError as exc:
            raise InventoryError(
                "BadRow", f"{self._where}: not UTF-8 text ({exc.reason})"
            ) from None

    def _lines(self, lines: list[str]) -> None:
        c = self._columns
        accept = self._accept
        key_at, size_at, modified_at, etag_at = c.key, c.size, c.modified, c.etag
        latest_at, marker_at = c.latest, c.delete_marker
        width = max(key_at, size_at, modified_at, etag_at, latest_at or 0, marker_at or 0)
        # Objects written together share their second: each distinct moment parsed once.
        moments = self._moments
        line = self._line
        found: list[Row] = []
        add = found.append
        try:
            for fields in csv.reader(lines):
                line += 1
                if len(fields) <= width:
                    if not fields:
                        continue
                    raise InventoryError(
                        "BadRow", f"{self._where}: line {line} has {len(fields)} columns"
                    )
                if marker_at is not None and fields[marker_at] == "true":
                    continue
                if latest_at is not None and fields[latest_at] == "false":
                    continue
                key = fields[key_at]
                if "%" in key or "+" in key:
                    key = unquote_plus(key, errors="strict")
                size = int(fields[size_at])
                text = fields[modified_at]
                modified = moments.get(text)
                if modified is None:
                    if len(moments) > 4096:
                        moments.clear()
                    modified = moments[text] = datetime.fromisoformat(text)
                if size == 0 and key[-1:] == "/":
                    continue
                add((key, size, fields[etag_at], modified))
        except ValueError as exc:  # UnicodeDecodeError is one: a key's bytes are not UTF-8
            raise InventoryError("BadRow", f"{self._where}: line {line}: {exc}") from None
        finally:
            self._line = line
        accept(found)


def parquet_rows(path: Path, accept: Accept, where: str) -> int:
    """Every row of a Parquet data file (a local copy), batch by batch."""
    try:
        import pyarrow.parquet as pq  # an optional extra
    except ImportError:
        raise InventoryError(
            "ParquetUnavailable",
            f"{where} is Parquet: install sharebatch[parquet] (pyarrow) to read it",
        ) from None
    try:
        parquet = pq.ParquetFile(path)
        names = list(parquet.schema_arrow.names)
        c = Columns.of(names, where)
        wanted = [names[i] for i in (c.key, c.size, c.modified, c.etag)]
        flags = [names[i] for i in (c.latest, c.delete_marker) if i is not None]
        rows = 0
        for batch in parquet.iter_batches(batch_size=8192, columns=wanted + flags):
            rows += _batch(batch.to_pydict(), wanted, c, names, accept)
        return rows
    except InventoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors have no common base
        raise InventoryError(
            "CorruptFile", f"{where}: not a readable Parquet file ({exc})"
        ) from None


def _batch(
    data: dict[str, list[Any]],
    wanted: list[str],
    c: Columns,
    names: list[str],
    accept: Accept,
) -> int:
    keys, sizes, modified, etags = (data[n] for n in wanted)
    latest = data[names[c.latest]] if c.latest is not None else None
    marker = data[names[c.delete_marker]] if c.delete_marker is not None else None
    found: list[Row] = []
    for i, key in enumerate(keys):
        if (marker is not None and marker[i]) or (latest is not None and latest[i] is False):
            continue
        size = sizes[i]
        if key is None or size is None or (size == 0 and key.endswith("/")):
            continue
        when = modified[i]
        if isinstance(when, datetime):
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        found.append((key, int(size), etags[i] or "", when))
    accept(found)
    return len(found)
