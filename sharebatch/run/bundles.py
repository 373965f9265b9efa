"""The bundle format: part files, joining them into bundles, CSV cells, the columns.

Links are bearer secrets, so every file is created 0600 and every folder 0700. Rows reach the
disk as they are signed, into one *part* file per (route, prefix) under the run's staging
folder; when a route's prefixes have all been listed, its parts are joined in manifest order
into ``links.csv`` and ``links.json`` through ``files.atomic_writer``. Memory never holds
more than one page of links, and no reader ever sees a half-written bundle.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sharebatch.files import HashingWriter, atomic_writer, private_dir
from sharebatch.models import Link
from sharebatch.times import iso
from sharebatch.visible import escaped, unescaped

COLUMNS = (
    "recipient",
    "bucket",
    "key",
    "size",
    "etag",
    "last_modified",
    "method",
    "expires_at",
    "url",
)


def link_row(link: Link) -> dict[str, Any]:
    return {
        "recipient": link.recipient,
        "bucket": link.obj.bucket,
        "key": link.obj.key,
        "size": link.obj.size,
        "etag": link.obj.etag,
        "last_modified": iso(link.obj.last_modified),
        "method": link.method,
        "expires_at": iso(link.expires_at),
        "url": link.url,
    }


# Spreadsheets run a cell starting with one of these as a formula (=HYPERLINK(...) in a key
# uploaded by a stranger), and a control character can rewrite a terminal or split a row for a
# naive reader. CSV cells are neutralised for people; links.json keeps every value exactly.
# A leading tab or CR (also formula triggers) is escaped with the other controls first.
_FORMULA_STARTS = ("=", "+", "-", "@")
_QUOTED_STARTS = (*_FORMULA_STARTS, "'")


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text and ``csv_value`` reverses exactly.

    Text goes through ``visible.escaped`` (controls, bidi and invisible characters as
    ``\\xNN``/``\\uNNNN``, a backslash doubled); a formula gets a leading ``'``, and a value
    that starts with ``'`` itself has it written ``\\x27``, so the quote stays unambiguous.
    """
    if not isinstance(value, str):
        return value
    # Nearly every cell has nothing to escape, and str.isprintable (a C loop, False for every
    # character escaped would touch) says so faster than escaped's own search: searching
    # first spares the substitution (a test checks the shortcut over every code point).
    text = value if value.isprintable() and "\\" not in value else escaped(value)
    if text.startswith(_QUOTED_STARTS):
        return "\\x27" + text[1:] if text[0] == "'" else "'" + text
    return text


def csv_value(cell: str) -> str:
    """The value ``csv_cell`` wrote as ``cell``."""
    return unescaped(cell[1:] if cell.startswith("'") else cell)


def write_csv(dest: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Write ``rows`` as CSV with cells safe for spreadsheets, atomically and 0600."""
    with atomic_writer(dest) as out:
        table = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
        table.writeheader()
        for row in rows:
            table.writerow({name: csv_cell(value) for name, value in row.items()})
    return out.sha256.hexdigest()


class PartFile:
    """The links of one route from one prefix, staged as JSON lines and (with ``csv``, for a
    route whose bundles include CSV) as CSV rows.

    Both forms are made when the links are signed, while the run mostly waits for S3; the
    bundles are then joined from them by copying text, not by re-encoding every row.
    """

    def __init__(self, path: Path, *, csv: bool = True) -> None:
        self.path = path
        self.csv_path = path.with_suffix(".csv") if csv else None
        self.rows = 0
        self.earliest_expiry: datetime | None = None
        self._handles: list[IO[str]] = []
        self._table: Any = None

    def write(self, links: Iterable[Link]) -> None:
        if not self._handles:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            for path in (self.path, self.csv_path):
                if path is not None:
                    # newline="": the CSV rows carry their own "\r\n", written as they are.
                    fd = os.open(path, flags, 0o600)
                    self._handles.append(os.fdopen(fd, "w", encoding="utf-8", newline=""))
            if self.csv_path is not None:
                self._table = csv.writer(self._handles[1], lineterminator="\r\n")
        lines, table = self._handles[0], self._table
        for link in links:
            row = link_row(link)
            lines.write(json.dumps(row, ensure_ascii=False) + "\n")
            if table is not None:
                table.writerow([csv_cell(row[name]) for name in COLUMNS])
            self.rows += 1
            if self.earliest_expiry is None or link.expires_at < self.earliest_expiry:
                self.earliest_expiry = link.expires_at

    def close(self) -> None:
        # Every handle is closed even when one fails to flush (a full disk): an open file
        # would keep the run's disk busy after the run is over.
        handles, self._handles = self._handles, []
        with ExitStack() as stack:
            for handle in handles:
                stack.callback(handle.close)

    def rows_in_order(self) -> Iterator[dict[str, Any]]:
        for line in self.lines_in_order():
            yield json.loads(line)

    def lines_in_order(self) -> Iterator[str]:
        """Each row as the JSON text it was staged as (the bundle's own JSON for that row)."""
        if self.rows == 0:
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")

    def json_chunks(self) -> Iterator[str]:
        """The rows' JSON as the bundle's array holds them (rows joined by ``,\n    ``), in
        blocks: a part can hold a million rows, and memory must not."""
        pending = ""
        for chunk in _blocks(self.path):
            if pending:
                yield pending.replace("\n", _ROW_BREAK)
            pending = chunk
        # No JSON text holds a raw newline, so every line break is a row break.
        yield pending.rstrip("\n").replace("\n", _ROW_BREAK)

    def csv_chunks(self) -> Iterator[str]:
        """The rows as CSV lines, cells already made safe for spreadsheets, in blocks."""
        if self.csv_path is None:
            raise ValueError(f"{self.path.name} was staged without CSV rows")
        return _blocks(self.csv_path)


_ROW_BREAK = ",\n    "


def _blocks(path: Path, size: int = 1 << 20) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        while chunk := handle.read(size):
            yield chunk


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    rows: int
    sha256: str


class _Discard:
    """Stands in for a format that was not asked for, so one loop serves every choice."""

    sha256 = hashlib.sha256()

    def write(self, text: str) -> int:
        return len(text)


def write_bundle(
    dest: Path,
    header: Mapping[str, Any],
    parts: list[PartFile],
    formats: Sequence[str] = ("csv", "json"),
    stem: str = "links",
    replace: bool = True,
    uploads: Sequence[Mapping[str, Any]] = (),
    uploads_name: str = "uploads.csv",
) -> list[WrittenFile]:
    """Join ``parts`` in order into ``dest/<stem>.csv`` and/or ``dest/<stem>.json``.

    ``uploads`` (rows of ``uploads.upload_row``) go into ``dest/<uploads_name>`` and an
    ``uploads`` section of the JSON, when the recipient has an upload slot.

    ``replace=False`` (renewals) refuses to overwrite either file: ``FileExistsError``.
    """
    private_dir(dest)
    rows = sum(p.rows for p in parts)
    csv_path, json_path = dest / f"{stem}.csv", dest / f"{stem}.json"
    with ExitStack() as stack:
        csv_out: HashingWriter | _Discard = _Discard()
        json_out: HashingWriter | _Discard = _Discard()
        if "csv" in formats:
            csv_out = stack.enter_context(atomic_writer(csv_path, replace=replace))
        if "json" in formats:
            json_out = stack.enter_context(atomic_writer(json_path, replace=replace))
        table = csv.writer(csv_out, lineterminator="\r\n")
        table.writerow(COLUMNS)
        head = json.dumps(dict(header), indent=2, ensure_ascii=False).replace("\n", "\n  ")
        json_out.write('{\n  "header": ' + head + ',\n  "links": [')
        separator = "\n    "
        for part in parts:
            # Copied as text: each staged JSON line is this row's JSON in the bundle.
            if not part.rows:
                continue
            if "csv" in formats:
                for chunk in part.csv_chunks():
                    csv_out.write(chunk)
            if "json" in formats:
                json_out.write(separator)
                for chunk in part.json_chunks():
                    json_out.write(chunk)
                separator = _ROW_BREAK
        json_out.write("\n  ]" if rows else "]")
        uploads_out: HashingWriter | None = None
        if uploads and "csv" in formats:
            uploads_out = stack.enter_context(atomic_writer(dest / uploads_name, replace=replace))
            slots = csv.DictWriter(uploads_out, fieldnames=list(uploads[0]), lineterminator="\r\n")
            slots.writeheader()
            for upload in uploads:
                # Form fields and headers stay JSON objects in one cell each.
                slots.writerow({k: csv_cell(_cell(v)) for k, v in upload.items()})
        if uploads:
            section = json.dumps(list(uploads), indent=2, ensure_ascii=False)
            json_out.write(',\n  "uploads": ' + section.replace("\n", "\n  "))
        json_out.write("\n}\n")
    written = []
    if "csv" in formats:
        written.append(WrittenFile(csv_path, rows, csv_out.sha256.hexdigest()))
    if "json" in formats:
        written.append(WrittenFile(json_path, rows, json_out.sha256.hexdigest()))
    if uploads_out is not None:
        written.append(
            WrittenFile(dest / uploads_name, len(uploads), uploads_out.sha256.hexdigest())
        )
    return written


def _cell(value: object) -> object:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
