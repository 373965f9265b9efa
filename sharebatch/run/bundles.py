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
import io
import json
import os
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol, cast, get_args

from sharebatch.files import HashingWriter, atomic_writer, copy_range, private_dir
from sharebatch.models import (
    AddressingStyle,
    BucketTarget,
    CloudFrontHash,
    CloudFrontLinks,
    Expiry,
    KeySource,
    Link,
    LinkKind,
    ObjectRef,
    ShortCredentials,
    UploadSlot,
)
from sharebatch.times import iso, parse_iso
from sharebatch.visible import escaped, unescaped, visible

COLUMNS = (
    "recipient",
    "bucket",
    "key",
    "size",
    "etag",
    "last_modified",
    "method",
    "expires_at",
    "link_id",
    "url",
)
OPTIONAL_COLUMNS = frozenset({"link_id"})
"""Columns a bundle written before them lacks: readers take them as empty."""


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
        "link_id": link.link_id,
        "url": link.url,
    }


# plain_row's tests: ASCII text that JSON or a CSV cell would change (controls, DEL, quote,
# backslash) or the csv module would quote (a comma) becomes a comma, so that a plain row
# counts exactly its 9 separators; a cell starting like a formula (or with ') follows one.
_AS_COMMA = bytes(44 if b < 32 or b in b'\x7f"\\,' else b for b in range(256))
_FORMULA_CELL = re.compile(",[-=+@']")


def plain_row(link: Link) -> tuple[str, str] | None:
    """``link``'s staged JSON line and CSV row, built as text; None when a value needs care.

    Byte for byte what ``json.dumps(link_row(link), ensure_ascii=False)`` and the csv
    module's row of ``csv_cell`` values make, for the common row: every value printable (no
    control, format, separator or surrogate character, which JSON or ``csv_cell`` would
    escape), no quote or backslash (escaped by JSON, doubled by ``csv_cell``), no comma (the
    csv module would quote the cell), no cell starting like a formula or with ``'``. A few
    C-level passes over the CSV row say so; any other row goes through the encoders
    themselves. Tests compare both over arbitrary keys.
    """
    obj = link.obj
    return _plain(
        link.recipient,
        obj,
        iso(obj.last_modified),
        link.method,
        iso(link.expires_at),
        link.link_id,
        link.url,
    )


def _plain(
    recipient: str,
    obj: ObjectRef,
    last_modified: str,
    method: str,
    expires_at: str,
    link_id: str | None,
    url: str,
) -> tuple[str, str] | None:
    """``plain_row`` of a link given by its values, the times as text already."""
    size = obj.size
    if type(size) is not int:
        return None
    row = (
        f"{recipient},{obj.bucket},{obj.key},{size},{obj.etag},{last_modified},"
        f"{method},{expires_at},{link_id or ''},{url}"
    )
    if row.isascii():
        if row.encode().translate(_AS_COMMA).count(44) != 9:
            return None
    elif not row.isprintable() or row.count(",") != 9 or '"' in row or "\\" in row:
        return None
    # The URL is the last cell: only its first character can start one.
    if row[0] in _QUOTED_STARTS or _FORMULA_CELL.search(row, 0, len(row) - len(url) + 1):
        return None
    shown_id = "null" if link_id is None else f'"{link_id}"'
    line = (
        f'{{"recipient": "{recipient}", "bucket": "{obj.bucket}", "key": "{obj.key}", '
        f'"size": {size}, "etag": "{obj.etag}", "last_modified": "{last_modified}", '
        f'"method": "{method}", "expires_at": "{expires_at}", "link_id": {shown_id}, '
        f'"url": "{url}"}}\n'
    )
    return line, row + "\r\n"


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


class _Texts:
    """An in-memory part's text, kept as the pieces written. A ``StringIO`` emptied with
    ``seek``/``truncate`` leaves its fast appending mode, and each later write copied the
    chunk again: 3 us a link in a signing worker."""

    def __init__(self) -> None:
        self._pieces: list[str] = []

    def write(self, text: str) -> int:
        self._pieces.append(text)
        return len(text)

    def take(self) -> str:
        text, self._pieces = "".join(self._pieces), []
        return text

    def close(self) -> None:
        self._pieces = []


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
        self._handles: list[IO[str] | _Texts] = []
        self._table: Any = None
        self._csv_buffer = io.StringIO(newline="")

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        for path in (self.path, self.csv_path):
            if path is not None:
                # newline="": the CSV rows carry their own "\r\n", written as they are.
                fd = os.open(path, flags, 0o600)
                self._handles.append(os.fdopen(fd, "w", encoding="utf-8", newline=""))
        if self.csv_path is not None:
            # Rows that need the csv module's quoting pass through this buffer (see write).
            self._table = csv.writer(self._csv_buffer, lineterminator="\r\n")

    def in_memory(self) -> PartFile:
        """Stage into memory instead of the files (a signing worker's part: ``take`` hands
        the text to its parent, whose own part ``append``s it)."""
        self._handles = [_Texts()]
        if self.csv_path is not None:
            self._handles.append(_Texts())
            self._table = csv.writer(self._csv_buffer, lineterminator="\r\n")
        return self

    def take(self) -> tuple[str, str]:
        """What an ``in_memory`` part staged since the last call: (JSON lines, CSV rows)."""
        found = []
        for handle in self._handles:
            assert isinstance(handle, _Texts)
            found.append(handle.take())
        return found[0], found[1] if len(found) > 1 else ""

    def copy_in(
        self,
        spool: int,
        offset: int,
        sizes: tuple[int, int],
        count: int,
        earliest: datetime | None,
    ) -> None:
        """``count`` rows a signing worker staged (its ``in_memory`` part's text, UTF-8, in
        its spool file ``spool`` from ``offset`` on: ``sizes`` bytes of JSON lines, then of CSV
        rows), copied as they are, after what this part holds already."""
        if not self._handles:
            self._open()
        for handle, size in zip(self._handles, sizes, strict=False):
            assert not isinstance(handle, _Texts)
            # Rows this process wrote before (pages signed here before the workers started)
            # are on the disk before the copied ones.
            handle.flush()
            copy_range(spool, offset, handle.fileno(), size)
            offset += size
        self.rows += count
        if earliest is not None and (
            self.earliest_expiry is None or earliest < self.earliest_expiry
        ):
            self.earliest_expiry = earliest

    def write(self, links: Iterable[Link]) -> None:
        if not self._handles:
            self._open()
        lines, table = self._handles[0], self._table
        json_text: list[str] = []
        csv_text: list[str] = []
        for link in links:
            plain = plain_row(link)
            if plain is not None:
                json_text.append(plain[0])
                csv_text.append(plain[1])
            else:
                row = link_row(link)
                json_text.append(json.dumps(row, ensure_ascii=False) + "\n")
                if table is not None:
                    # The csv module's own quoting, for the rare row that needs it.
                    table.writerow([csv_cell(row[name]) for name in COLUMNS])
                    csv_text.append(self._csv_buffer.getvalue())
                    self._csv_buffer.seek(0)
                    self._csv_buffer.truncate()
            self.rows += 1
            if self.earliest_expiry is None or link.expires_at < self.earliest_expiry:
                self.earliest_expiry = link.expires_at
        # One write per batch and file: the rows' text is the same, written in fewer calls.
        lines.write("".join(json_text))
        if table is not None:
            self._handles[1].write("".join(csv_text))

    def write_columns(
        self,
        job: str,
        recipient: str,
        objects: Sequence[ObjectRef],
        urls: Sequence[str],
        ids: Sequence[str] | None,
        signed_at: datetime,
        expires_at: datetime,
    ) -> None:
        """``write`` of the GET links a chunk's columns describe (``sign.Signer.sign_columns``),
        the same text, with no ``Link`` made for a plain row: the expiry's text is made once,
        an object time's once per chunk."""
        if not objects:
            return
        if not self._handles:
            self._open()
        expires = iso(expires_at)
        times: dict[int, str] = {}  # the objects live through the call: their ids stay theirs
        shown = []
        for obj in objects:
            moment = obj.last_modified
            text = times.get(id(moment))
            if text is None:
                text = times[id(moment)] = iso(moment)
            shown.append(text)
        given = ids if ids is not None else [None] * len(objects)
        if self._plain_chunk(recipient, objects, urls, given, shown, expires):
            return self._at(expires_at)
        json_text: list[str] = []
        csv_text: list[str] = []
        for obj, url, link_id, last_modified in zip(objects, urls, given, shown, strict=True):
            plain = _plain(recipient, obj, last_modified, "GET", expires, link_id, url)
            if plain is None:
                # A row that needs the encoders: written through ``write`` in its place.
                self._flush_text(json_text, csv_text)
                json_text, csv_text = [], []
                self.write([Link(job, recipient, obj, "GET", signed_at, expires_at, url, link_id)])
                continue
            json_text.append(plain[0])
            csv_text.append(plain[1])
        self._flush_text(json_text, csv_text)
        self._at(expires_at)

    def _at(self, expires_at: datetime) -> None:
        if self.earliest_expiry is None or expires_at < self.earliest_expiry:
            self.earliest_expiry = expires_at

    def _plain_chunk(
        self,
        recipient: str,
        objects: Sequence[ObjectRef],
        urls: Sequence[str],
        ids: Sequence[str | None],
        shown: list[str],
        expires: str,
    ) -> bool:
        """Stage the whole chunk when every row of it is plain (``plain_row``'s tests, run
        once over the chunk's CSV text: ASCII, exactly 9 separators and a CR LF a row, no
        cell starting like a formula); False, nothing staged, when any row is not."""
        if recipient[:1] in _QUOTED_STARTS or not all(type(o.size) is int for o in objects):
            return False
        bucket = objects[0].bucket
        if any(o.bucket != bucket for o in objects):
            return False
        head = f"{recipient},{bucket},"
        middle = f",GET,{expires},"
        rows = "".join(
            [
                f"{head}{o.key},{o.size},{o.etag},{last_modified}{middle}{link_id or ''},{url}\r\n"
                for o, url, link_id, last_modified in zip(objects, urls, ids, shown, strict=True)
            ]
        )
        # Each row holds 9 separators, CR and LF (both counted as commas by _AS_COMMA): a
        # total of 11 a row means no value holds one, so only a cell start follows a comma.
        if not rows.isascii() or rows.encode().translate(_AS_COMMA).count(44) != 11 * len(objects):
            return False
        if _FORMULA_CELL.search(rows):
            return False
        head = f'{{"recipient": "{recipient}", "bucket": "{bucket}", "key": "'
        middle = f'"method": "GET", "expires_at": "{expires}", "link_id": '
        # A chunk's ids are all drawn or all None (the manifest's link_ids).
        quoted = ['"' + i + '"' if i is not None else "null" for i in ids]
        lines = "".join(
            [
                f'{head}{o.key}", "size": {o.size}, "etag": "{o.etag}", "last_modified": '
                f'"{last_modified}", {middle}{link_id}, "url": "{url}"}}\n'
                for o, url, link_id, last_modified in zip(objects, urls, quoted, shown, strict=True)
            ]
        )
        self._handles[0].write(lines)
        if self._table is not None:
            self._handles[1].write(rows)
        self.rows += len(objects)
        return True

    def _flush_text(self, json_text: list[str], csv_text: list[str]) -> None:
        self.rows += len(json_text)
        if json_text:
            self._handles[0].write("".join(json_text))
            if self._table is not None:
                self._handles[1].write("".join(csv_text))

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

    def json_chunks(self) -> Iterator[bytes]:
        """The rows' JSON as the bundle's array holds them (rows joined by ``,\n    ``), in
        blocks of UTF-8, copied as bytes: a part can hold a million rows, and memory must not,
        and text that is only copied need not be decoded and encoded again."""
        pending = b""
        for chunk in _blocks(self.path):
            if pending:
                yield pending.replace(b"\n", _ROW_BREAK_BYTES)
            pending = chunk
        # No JSON text holds a raw newline, so every line break is a row break.
        yield pending.rstrip(b"\n").replace(b"\n", _ROW_BREAK_BYTES)

    def csv_chunks(self) -> Iterator[bytes]:
        """The rows as CSV lines (UTF-8), cells already made safe for spreadsheets, in blocks."""
        if self.csv_path is None:
            raise ValueError(f"{self.path.name} was staged without CSV rows")
        return _blocks(self.csv_path)


class JoinedRows(Protocol):
    """Rows a bundle takes from several staged parts at once, joined as they are read (a
    merge's inventory prefix, each shard's part in key order: ``shards/join.JoinedPart``),
    so that they reach the disk once, in the bundle, rather than as a part copied again."""

    rows: int
    earliest_expiry: datetime | None

    def blocks(self) -> Iterator[tuple[bytes, bytes]]:
        """The rows in order, a block at a time: its JSON lines (each ending with its line
        break) and its CSV rows (empty when the parts hold none), UTF-8."""
        ...

    def rows_in_order(self) -> Iterator[dict[str, Any]]:
        """Each row as its JSON line decodes."""
        ...


Part = PartFile | JoinedRows
"""What a bundle is joined from, in order: staged parts, and rows joined as they are read."""


_THREADED_JOIN = 20_000
"""Rows from which a bundle's files are written by threads of their own: starting one costs
about 0.1 ms, which a run of many small bundles would pay many times over for nothing."""


def _csv_of(part: PartFile) -> Iterator[bytes]:
    """A part's CSV rows, read by whoever writes them (in a ``_Writer``'s thread, the thread)."""
    yield from part.csv_chunks()


class _Writer:
    """One bundle file's rows, written in order: by a thread of its own (``threaded``), which
    takes them through a short queue (memory holds a few blocks), or at once by the caller.

    An error of the thread is raised by the next ``put`` or by ``close``; the thread then
    takes (and drops) what is still put, so the caller never waits on a full queue. Leaving
    the ``with`` block without ``close`` (the caller failed) stops the thread, its error
    dropped: the caller's own is the one that propagates.
    """

    _DEPTH = 4

    def __init__(self, out: HashingWriter | _Discard, threaded: bool) -> None:
        self._out = out
        self._error: BaseException | None = None
        self._queue: queue.Queue[Iterable[bytes] | None] = queue.Queue(self._DEPTH)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="bundle-writer", daemon=True)
            self._thread.start()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def put(self, chunks: Iterable[bytes]) -> None:
        """Write ``chunks`` after what was put before."""
        if self._thread is None:
            for chunk in chunks:
                self._out.write_bytes(chunk)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(chunks)

    def close(self) -> None:
        """Wait until everything put is written; raise the thread's error, if any."""
        self._stop()
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (chunks := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                for chunk in chunks:
                    self._out.write_bytes(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc


_ROW_BREAK = ",\n    "
_ROW_BREAK_BYTES = _ROW_BREAK.encode()


def _blocks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
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

    def write_bytes(self, data: bytes) -> None:
        pass


@dataclass(frozen=True, slots=True)
class SignedBy:
    """The credentials that signed a bundle's links, as its header records them."""

    source: str
    kind: str
    expires_at: str | None


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """What renewal needs to re-sign a bundle's links as they were first signed."""

    expiry: Expiry
    on_short_credentials: ShortCredentials
    credentials: SignedBy
    clamped_to: str | None
    target: BucketTarget
    download_name: str | None
    content_type: str | None
    # The manifest's ``link_ids``: whether each link carries an x-sharebatch-id. Written to
    # the header only when false, so a bundle from before ids reads (and renews) as before.
    link_ids: bool = True
    # The kind of every link of the bundle (one grant, one kind) and, for CloudFront, how they
    # were signed (never the key: where it is read from). Written only for ``cloudfront``, so
    # every S3 bundle stays as it was.
    link: LinkKind = "s3"
    cloudfront: CloudFrontLinks | None = None
    # Networks the links should work from (written only when there are some, both kinds).
    allow_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RenewedFrom:
    """The bundle a renewal was made from, and the run that first wrote it."""

    path: str
    sha256: str
    run_id: str
    generated_at: str


@dataclass(frozen=True, slots=True)
class BundleHeader:
    """The ``header`` object of ``links.json``: who the links are for, and how they were made.

    Its JSON form (``to_json``) keeps the order bundles have always had. The groups that later
    versions added are None in a bundle written before them, and then left out of the JSON:
    ``policy`` (its keys sit at the top level: ``expiry`` to ``content_type``), ``prefixes``
    and the slot's ``uploads`` count and ``upload`` policy. ``renewed_from`` and ``renewed``
    are a renewal's; ``page_url`` the recipient page's link (``delivery: page``) and
    ``page_link_id`` that link's id.
    """

    run_id: str
    job: str
    recipient: str
    recipient_name: str | None
    recipient_email: str | None
    generated_at: str
    signer_access_key_id: str | None
    expires_at: str | None
    links: int
    # What renewal may never go beyond: every row lies under one of these.
    prefixes: tuple[str, ...] | None = None
    policy: LinkPolicy | None = None
    uploads: int | None = None
    upload: UploadSlot | None = None
    renewed_from: RenewedFrom | None = None
    renewed: int | None = None
    # The recipient page's presigned GET (``delivery: page``): a bearer secret, like the links.
    page_url: str | None = field(default=None, repr=False)
    page_link_id: str | None = None
    # When the page's own S3 link ends before the bundle's links (CloudFront links that
    # outlive what SigV4 or the credentials allow it); absent otherwise.
    page_expires_at: str | None = None
    # The S3 Inventory report the links were made from (``source``, ``manifest``,
    # ``created_at``): they show the bucket as it was then. Absent for a listing.
    inventory: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "job": self.job,
            "recipient": self.recipient,
            "recipient_name": self.recipient_name,
            "recipient_email": self.recipient_email,
            "generated_at": self.generated_at,
            "signer_access_key_id": self.signer_access_key_id,
            "expires_at": self.expires_at,
            "links": self.links,
        }
        if self.prefixes is not None:
            data["prefixes"] = list(self.prefixes)
        if self.policy is not None:
            policy, expiry = self.policy, self.policy.expiry
            data |= {
                "expiry": {"expires_at": iso(expiry.at)}
                if expiry.at is not None
                else {"expires_in": expiry.seconds},
                "on_short_credentials": policy.on_short_credentials,
                "credentials": asdict(policy.credentials),
                "clamped_to": policy.clamped_to,
                "target": asdict(policy.target),
                "download_name": policy.download_name,
                "content_type": policy.content_type,
            }
            if not policy.link_ids:
                data["link_ids"] = False
            if policy.link != "s3":
                data["link"] = policy.link
            if policy.cloudfront is not None:
                data["cloudfront"] = _cloudfront_json(policy.cloudfront, policy.allow_ips)
            if policy.allow_ips:
                data["allow_ips"] = list(policy.allow_ips)
        if self.uploads is not None:
            data["uploads"] = self.uploads
        if self.upload is not None:
            data["upload"] = asdict(self.upload)
        if self.renewed_from is not None:
            data["renewed_from"] = asdict(self.renewed_from)
        if self.renewed is not None:
            data["renewed"] = self.renewed
        if self.page_url is not None:
            data["page_url"] = self.page_url
        if self.page_link_id is not None:
            data["page_link_id"] = self.page_link_id
        if self.page_expires_at is not None:
            data["page_expires_at"] = self.page_expires_at
        if self.inventory is not None:
            data["inventory"] = dict(self.inventory)
        return data

    @classmethod
    def from_json(cls, data: object) -> BundleHeader:
        """The header ``to_json`` wrote, every field checked: ``ValueError`` names the first
        that is not as sharebatch writes it (``field: problem``)."""
        header = _Fields(data)
        prefixes = header.texts("prefixes", "expected a list of prefixes")
        upload = header.object("upload")
        renewed_from = header.object("renewed_from")
        return cls(
            run_id=header.text("run_id"),
            job=header.text("job"),
            recipient=header.text("recipient"),
            recipient_name=header.text_or_none("recipient_name"),
            recipient_email=header.text_or_none("recipient_email"),
            generated_at=header.text("generated_at"),
            signer_access_key_id=header.text_or_none("signer_access_key_id"),
            expires_at=header.text_or_none("expires_at"),
            links=header.count("links"),
            prefixes=None if prefixes is None else tuple(prefixes),
            # Both or neither: the first bundles had no policy, and renewing needs both.
            policy=_policy(header) if header.has("expiry") and header.has("target") else None,
            uploads=header.count("uploads") if header.has("uploads") else None,
            upload=None
            if upload is None
            else UploadSlot(
                prefix=upload.text("prefix"),
                max_size=upload.count("max_size"),
                expires_in=upload.count("expires_in"),
                content_types=tuple(upload.texts("content_types") or ()),
                keys=tuple(upload.texts("keys") or ()),
            ),
            renewed_from=None
            if renewed_from is None
            else RenewedFrom(*(renewed_from.text(f.name) for f in fields(RenewedFrom))),
            renewed=header.count("renewed") if header.has("renewed") else None,
            page_url=header.text("page_url") if header.has("page_url") else None,
            page_link_id=header.text("page_link_id") if header.has("page_link_id") else None,
            page_expires_at=header.moment_text("page_expires_at")
            if header.has("page_expires_at")
            else None,
            inventory=_inventory(header),
        )


def _inventory(header: _Fields) -> dict[str, str] | None:
    found = header.object("inventory")
    if found is None:
        return None
    if sorted(found.keys()) != ["created_at", "manifest", "source"]:
        raise ValueError("inventory: expected source, manifest and created_at")
    return {
        "source": found.text("source"),
        "manifest": found.text("manifest"),
        "created_at": found.moment_text("created_at"),
    }


def cloudfront_policy(
    settings: CloudFrontLinks, allow_ips: tuple[str, ...]
) -> Literal["canned", "custom"]:
    """Which CloudFront policy the links carry: custom as soon as it holds a start or a
    network (``cloudfront.sign`` decides the same way), canned otherwise."""
    return "custom" if settings.not_before is not None or allow_ips else "canned"


def _cloudfront_json(settings: CloudFrontLinks, allow_ips: tuple[str, ...]) -> dict[str, Any]:
    source = settings.private_key
    return {
        "domain": settings.domain,
        "key_pair_id": settings.key_pair_id,
        "hash": settings.hash,
        "private_key": {"file": source.file} if source.file is not None else {"env": source.env},
        "not_before": iso(settings.not_before) if settings.not_before is not None else None,
        "max_expires_in": settings.max_expires_in,
        "policy": cloudfront_policy(settings, allow_ips),
    }


def _cloudfront(
    header: _Fields, link: object, allow_ips: tuple[str, ...]
) -> CloudFrontLinks | None:
    # The manifest's own checks, imported when a header is read: a signing worker, which
    # stages rows and reads no header, stays without pydantic and cryptography.
    from sharebatch.manifest.cloudfront import check_domain, check_key_pair_id
    from sharebatch.manifest.fields import MAX_CLOUDFRONT_EXPIRES_IN

    settings = header.object("cloudfront")
    if link == "s3":
        if settings is not None:
            raise ValueError("cloudfront: given for S3 links")
        return None
    if settings is None:
        raise ValueError("cloudfront: missing for link cloudfront")
    key = settings.object("private_key")
    if key is None:
        raise ValueError("cloudfront.private_key: missing")
    file, env = key.text_or_none("file"), key.text_or_none("env")
    if (file is None) == (env is None) or not (file or env) or len(key.keys()) != 1:
        raise ValueError("cloudfront.private_key: expected {file: path} or {env: NAME}")
    digest = settings.get("hash", "sha256")
    if digest not in get_args(CloudFrontHash):
        raise ValueError(f"cloudfront.hash: {digest!r} is not sha256 or sha1")
    result = CloudFrontLinks(
        domain=_as_written(settings.text("domain"), check_domain, "cloudfront.domain"),
        key_pair_id=_as_written(
            settings.text("key_pair_id"), check_key_pair_id, "cloudfront.key_pair_id"
        ),
        private_key=KeySource(file=file, env=env),
        max_expires_in=settings.count("max_expires_in"),
        hash=cast(CloudFrontHash, digest),  # one of them, checked above
        not_before=None if settings.get("not_before") is None else settings.moment("not_before"),
    )
    if len(allow_ips) > 1:
        raise ValueError("allow_ips: a CloudFront policy takes one network")
    if any(":" in network for network in allow_ips):
        # What the manifest refuses: CloudFront's AWS:SourceIp matches IPv4 only.
        raise ValueError("allow_ips: a CloudFront policy takes an IPv4 network only")
    if not 0 < result.max_expires_in <= MAX_CLOUDFRONT_EXPIRES_IN:
        # Renewal signs up to it: a header raised past the manifest's cap must not widen it.
        raise ValueError(
            "cloudfront.max_expires_in: expected 1 to "
            f"{MAX_CLOUDFRONT_EXPIRES_IN} seconds, as the manifest allows"
        )
    policy = settings.get("policy")
    if policy != _cloudfront_json(result, allow_ips)["policy"]:
        raise ValueError(f"cloudfront.policy: {policy!r} does not match not_before and allow_ips")
    return result


def _as_written(value: str, check: Callable[[str], str], name: str) -> str:
    """``value`` when the manifest's own ``check`` takes it unchanged (as the run wrote it):
    a header edited to something the manifest would refuse or rewrite is not trusted."""
    try:
        normal = check(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if normal != value:
        raise ValueError(f"{name}: {visible(value)} is not as sharebatch writes it ({normal})")
    return value


def _policy(header: _Fields) -> LinkPolicy:
    expiry, target = header.object("expiry"), header.object("target")
    credentials = header.object("credentials")
    if expiry is None or target is None or credentials is None:
        raise ValueError("expiry, target and credentials: expected objects")
    policy = header.get("on_short_credentials", "fail")
    if policy not in get_args(ShortCredentials):
        raise ValueError(f"on_short_credentials: {policy!r} is not fail, clamp or warn")
    link_ids = header.get("link_ids", True)
    if not isinstance(link_ids, bool):
        raise ValueError(f"link_ids: {link_ids!r} is not true or false")
    link = header.get("link", "s3")
    if link not in get_args(LinkKind):
        raise ValueError(f"link: {link!r} is not s3 or cloudfront")
    from sharebatch.manifest.cloudfront import check_cidr  # see _cloudfront

    allow_ips = tuple(
        _as_written(network, check_cidr, f"allow_ips[{n}]")
        for n, network in enumerate(header.texts("allow_ips") or ())
    )
    style = target.get("addressing_style") or "auto"
    if style not in get_args(AddressingStyle):
        raise ValueError(f"target.addressing_style: {style!r} is not auto, virtual or path")
    return LinkPolicy(
        expiry=Expiry(at=expiry.moment("expires_at"))
        if expiry.has("expires_at")
        else Expiry(seconds=expiry.count("expires_in")),
        on_short_credentials=cast(ShortCredentials, policy),  # one of them, checked above
        credentials=SignedBy(
            source=credentials.text("source"),
            kind=credentials.text("kind"),
            expires_at=credentials.text_or_none("expires_at"),
        ),
        clamped_to=header.text_or_none("clamped_to"),
        target=BucketTarget(
            bucket=target.text("bucket"),
            region=target.text_or_none("region"),
            endpoint_url=target.text_or_none("endpoint_url"),
            addressing_style=cast(AddressingStyle, style),  # checked above
        ),
        download_name=header.text_or_none("download_name"),
        content_type=header.text_or_none("content_type"),
        link_ids=link_ids,
        link=cast(LinkKind, link),  # checked above
        cloudfront=_cloudfront(header, link, allow_ips),
        allow_ips=allow_ips,
    )


class _Fields:
    """One JSON object of a header, read field by field; ``name`` is its field's (none for
    the header itself), which errors name before the field's own."""

    def __init__(self, data: object, name: str = "") -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{name}: expected an object" if name else "expected an object")
        self._data: dict[str, object] = data
        self._where = f"{name}." if name else ""

    def has(self, name: str) -> bool:
        return name in self._data

    def get(self, name: str, default: object = None) -> object:
        return self._data.get(name, default)

    def _fail(self, name: str, problem: str) -> ValueError:
        return ValueError(f"{self._where}{name}: {problem}")

    def text(self, name: str) -> str:
        value = self._data.get(name)
        if not isinstance(value, str) or not value:
            raise self._fail(name, "missing" if value in (None, "") else "expected text")
        return value

    def text_or_none(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is not None and not isinstance(value, str):
            raise self._fail(name, "expected text or null")
        return value

    def count(self, name: str) -> int:
        value = self._data.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(name, "expected a whole number")
        return value

    def texts(self, name: str, problem: str = "expected a list of text") -> list[str] | None:
        value = self._data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(name, problem)
        return value

    def object(self, name: str) -> _Fields | None:
        value = self._data.get(name)
        return None if value is None else _Fields(value, self._where + name)

    def keys(self) -> list[str]:
        return list(self._data)

    def moment_text(self, name: str) -> str:
        """A moment as the header writes it (``times.iso``), checked but kept as text."""
        self.moment(name)
        return self.text(name)

    def moment(self, name: str) -> datetime:
        text = self.text(name)
        try:
            return parse_iso(text)
        except ValueError:
            raise self._fail(name, "not a moment with a time zone") from None


def write_bundle(
    dest: Path,
    header: BundleHeader,
    parts: Sequence[Part],
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
    ours = [path for path in (csv_path, json_path, dest / uploads_name) if not path.exists()]
    try:
        with ExitStack() as stack:
            csv_out: HashingWriter | _Discard = _Discard()
            json_out: HashingWriter | _Discard = _Discard()
            if "csv" in formats:
                csv_out = stack.enter_context(atomic_writer(csv_path, replace=replace))
            if "json" in formats:
                json_out = stack.enter_context(atomic_writer(json_path, replace=replace))
            table = csv.writer(csv_out, lineterminator="\r\n")
            table.writerow(COLUMNS)
            head = json.dumps(header.to_json(), indent=2, ensure_ascii=False).replace("\n", "\n  ")
            json_out.write('{\n  "header": ' + head + ',\n  "links": [')
            threaded = rows >= _THREADED_JOIN
            # Each file's bytes are hashed and written in a thread of its own while this one
            # reads (or joins) the rows: sha256 and writes release the GIL, so on two cores
            # the join takes about the time of its longest part.
            json_rows = stack.enter_context(_Writer(json_out, threaded and "json" in formats))
            csv_rows = stack.enter_context(_Writer(csv_out, threaded and "csv" in formats))
            separator = b"\n    "
            for part in parts:
                if not part.rows:
                    continue
                if isinstance(part, PartFile):
                    if "csv" in formats:
                        csv_rows.put(_csv_of(part))
                    if "json" in formats:
                        # Copied as text: each staged JSON line is this row's JSON in the bundle.
                        json_rows.put((separator,))
                        for chunk in part.json_chunks():
                            json_rows.put((chunk,))
                else:
                    json_rows.put((separator,))
                    held = b""
                    for lines, rows_text in part.blocks():
                        csv_rows.put((rows_text,))
                        if held:
                            json_rows.put((held,))
                        # Every line break of JSON lines is a row break (none is a value's).
                        held = lines.replace(b"\n", _ROW_BREAK_BYTES)
                    json_rows.put((held[: -len(_ROW_BREAK_BYTES)],))
                separator = _ROW_BREAK_BYTES
            # Every row is written before the closing text, and a thread's error is raised.
            json_rows.close()
            csv_rows.close()
            json_out.write("\n  ]" if rows else "]")
            uploads_out: HashingWriter | None = None
            if uploads and "csv" in formats:
                uploads_out = stack.enter_context(
                    atomic_writer(dest / uploads_name, replace=replace)
                )
                slots = csv.DictWriter(
                    uploads_out, fieldnames=list(uploads[0]), lineterminator="\r\n"
                )
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
    except BaseException:
        # The files are committed one by one: one a full disk refused must not leave the
        # others standing alone (a renewal's uploads file without its links). Only files this
        # call created go; a run's replaced bundle is the run's to discard.
        for path in ours:
            with suppress(FileNotFoundError):
                path.unlink()
        raise


def _cell(value: object) -> object:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
