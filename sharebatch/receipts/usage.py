"""``usage``: a run's links joined to the S3 access log records that name them.

Every link a run issues carries its own id (``x-sharebatch-id``), and S3 writes that id into
the Request-URI of each request's access log record. This module reads which ids a run issued
(its bundles, renewals included, their upload slots, its recipient pages, and the audit events
that name them), reads the log records of one or more sources, and counts, per link and per
recipient, what happened: full downloads (2xx ``REST.GET.OBJECT``), partial ones (206), bytes
sent, refused requests (403), the first and last request, distinct remote addresses and user
agents, links never used.

A record counts for a link only when its bucket and key (the log's key is URL-encoded: compared
decoded) are the link's: an id is no secret (it is in the URL, and S3 ignores ``x-`` parameters
on any object anyone may read), so the same id on another object is no download of the link.
A GET answered 2xx is a download; a 206, or a 200 that sent fewer bytes than the object holds
(the client broke off), is partial.

Five signals say a link may have leaked, and make the exit code 1:

* ``many_networks``: a link used from more than ``max_networks`` distinct networks (a /24 for
  IPv4, a /48 for IPv6; an address that does not parse counts as a network of its own);
* ``used_after_renewal``: an old link served (2xx) after the renewal that replaced it was
  issued (the recipient was given the new one; someone else still holds the old). A refused
  request (403) on the old link is the recipient clicking the old mail: no signal;
* ``id_misused``: one of the run's ids on a request for another bucket or key (whoever made it
  knows the id: a leaked link, or a forged request);
* ``unknown_id``: a well-formed id (16 lowercase hex) this run never issued, nor any other
  run in the same output folder (those are counted as ``lines.other_runs``, no signal);
* ``malformed_id``: ids that are no id at all (not 16 lowercase hex): one signal counting
  them all, showing the first one cut short.

A record without an id is another client's business (``other``); a line that does not parse
is counted per source and listed with its file and line (exit 2, the rest still reported).
A recipient with a GET row written without an id (``link_ids: false``, bundles from before
ids) is never ``complete``: receipts cannot tell (``without_id`` says how many rows).

What it writes, in the run folder: ``usage.json`` (the contract other commands read),
``usage.csv`` (one row per link and per unknown id, cells made safe for spreadsheets), the
review page's receipts block, and, when asked, Prometheus gauges (``run/metrics``). Memory
holds one tally per link and per distinct address, never the records; each tally lists at
most ``LISTED`` distinct addresses, networks (more when ``max_networks`` asks) and user agents
(cut at ``AGENT_SHOWN`` characters), and says when there were more (``more_*``).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar, overload
from urllib.parse import unquote, unquote_plus

from sharebatch.blocking import blocking
from sharebatch.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, LinkError, UsageError
from sharebatch.files import atomic_writer
from sharebatch.lifecycle.inspect import read_url
from sharebatch.models import Connection
from sharebatch.receipts.accesslog import (
    AccessRecord,
    BadLine,
    Hit,
    Scan,
    ScanRows,
    hit_of_row,
    scan_of,
)
from sharebatch.receipts.page import refresh_receipts
from sharebatch.receipts.sources import LogSource, read_scans
from sharebatch.run.bundles import BundleHeader, csv_cell
from sharebatch.run.metrics import (
    Gauge,
    check_metrics_path,
    labels,
    render_gauges,
    write_exposition,
)
from sharebatch.run.slots import FILENAME
from sharebatch.s3.gateway import S3Gateway
from sharebatch.times import iso, parse_iso
from sharebatch.units import counted
from sharebatch.visible import visible

USAGE_JSON = "usage.json"
USAGE_CSV = "usage.csv"
REVIEW_PAGE = "index.html"
BAD_LINES_LISTED = 1000  # usage.json lists this many; ``lines.bad`` is the true count
UNKNOWN_IDS_KEPT = 1000  # forged ids tallied one by one; the rest are counted together
LISTED = 20  # distinct addresses, networks, agents a tally lists; beyond: "more", uncounted
AGENT_SHOWN = 200  # a user agent is kept (and shown) cut to this many characters
ID_SHOWN = 32  # a malformed id is shown cut to this many characters
ROWS_WRITTEN = 1000  # usage.json and usage.csv rows encoded to one write
_SHARED_QUOTED = 10_000  # jobs, recipients, buckets, expiries, agents quoted once each
_ADDRESSES_CACHED = 100_000
# Address texts looked up as they are: a share's recipients use a few addresses each, and a
# text kept as a key costs twice its address's int (a log with a new address on every line
# is converted line by line past this many, equal values still shared by ``_Join._values``).
_TEXTS_CACHED = 10_000

Kind = Literal["get", "put", "post", "page"]
SignalKind = Literal[
    "many_networks", "used_after_renewal", "id_misused", "unknown_id", "malformed_id"
]
SIGNAL_KINDS: tuple[SignalKind, ...] = (
    "many_networks",
    "used_after_renewal",
    "id_misused",
    "unknown_id",
    "malformed_id",
)
_LINK_ID = re.compile(r"[0-9a-f]{16}")

CSV_COLUMNS = (
    "job",
    "recipient",
    "link_id",
    "kind",
    "bucket",
    "key",
    "expires_at",
    "replaced_by",
    "downloads",
    "partial",
    "uploads",
    "bytes_sent",
    "refused",
    "first",
    "last",
    "remote_ips",
    "networks",
    "user_agents",
    "signals",
)


Address = int | str
"""A remote address as a tally holds it (``address_value``): an int where its text comes back
from the int byte for byte (``address_text``), else the text."""

_V = TypeVar("_V", str, Address)
Held: TypeAlias = _V | tuple[_V, ...] | None
"""Distinct values as a tally holds them: none, one, or a few in a tuple (``_more``)."""


@dataclass(slots=True)
class _Tally:
    """The requests that carried one id."""

    requests: int = 0
    downloads: int = 0
    partial: int = 0
    uploads: int = 0
    bytes_sent: int = 0
    refused: int = 0
    first: datetime | None = None
    last: datetime | None = None
    # Distinct values: one value while there is one (most links are fetched from one place
    # by one program), a tuple of at most ``LISTED`` beyond (no set: a set of ten costs five
    # times a tuple of ten, times 100,000 links); ``distinct`` reads either.
    ips: Held[Address] = None
    # While ``ips`` lists every address, their networks are theirs: None until the join
    # settles and counts them (``_Join.settle``), no tuple of names beside every tuple of
    # addresses. Past ``LISTED`` addresses, the names counted record by record from then on.
    networks: Held[str] | int = None
    agents: Held[str] = None
    # Requests after the link that replaced this one was issued.
    late: int = 0
    late_first: datetime | None = None
    late_networks: Held[str] = None

    def add(
        self,
        record: AccessRecord | Hit,
        ip: Address,
        agent: str | None,
        network: Callable[[Address], str],
        networks_kept: int = LISTED,
    ) -> None:
        """Count ``record``; ``ip`` (``address_value``) and ``agent`` are its shared values
        (equal values, same object while the caches have room: ``is`` tells most apart);
        ``network`` names an address's network (``_Join.network``); ``networks_kept``: how
        many distinct networks to count before saying "more" (``many_networks`` needs one
        past its limit)."""
        self.requests += 1
        status = record.status
        if status is not None and 200 <= status < 300:
            if record.operation == "REST.GET.OBJECT":
                size = record.object_size
                # A 200 that sent less than the object is a transfer the client broke off.
                if status == 206 or (size is not None and record.bytes_sent < size):
                    self.partial += 1
                else:
                    self.downloads += 1
            elif record.operation in _UPLOADS:
                self.uploads += 1
        elif status == 403:
            self.refused += 1
        self.bytes_sent += record.bytes_sent
        moment, last = record.time, self.last
        # Logs come roughly in time order: one comparison of aware times for most records.
        if last is None:
            self.first = self.last = moment
        elif moment >= last:
            self.last = moment
        elif self.first is not None and moment < self.first:
            self.first = moment
        held = self.ips
        if held is not ip:
            if held is None:
                self.ips = ip
            elif not isinstance(held, tuple) or ip not in held:
                self.new_address(ip, network, networks_kept)
        if agent is not None:
            held = self.agents
            if held is not agent:
                self.agents = agent if held is None else _more(held, agent)

    def new_address(self, ip: Address, network: Callable[[Address], str], kept: int) -> None:
        """``ip``, an address ``ips`` may not hold yet: listed while ``ips`` lists fewer than
        ``LISTED``; past that, its network counted in ``networks``."""
        held = self.ips
        if isinstance(held, tuple) and held[-1] is _OVER:
            names = self.networks
            if isinstance(names, str | tuple):  # counted since ``ips`` filled up
                self.networks = _more(names, network(ip), kept)
            return
        listed = self.ips = ip if held is None else _more(held, ip)
        if isinstance(listed, tuple) and listed[-1] is _OVER:
            # The listed addresses no longer name every network: from here on, the names.
            found: Held[str] = None
            for value in (*listed[:-1], ip):
                name = network(value)
                found = name if found is None else _more(found, name, kept)
            self.networks = found


_UPLOADS = frozenset({"REST.PUT.OBJECT", "REST.POST.OBJECT"})


# Ends a tuple that is full: more distinct values came than it keeps (no text S3 writes holds
# a NUL: an address, network or agent never equals it).
_OVER = "\x00more"


@overload
def _more(held: str | tuple[str, ...], value: str, kept: int = LISTED) -> str | tuple[str, ...]: ...


@overload
def _more(
    held: Address | tuple[Address, ...], value: Address, kept: int = LISTED
) -> Address | tuple[Address, ...]: ...


def _more(
    held: Address | tuple[Address, ...], value: Address, kept: int = LISTED
) -> Address | tuple[Address, ...]:
    """``held`` with ``value`` among its distinct values, at most ``kept`` of them listed;
    past that the tuple ends in ``_OVER`` and stays as it is: memory bounded per tally,
    however many addresses or agents a forged or leaked link is fetched with. A tuple, made
    anew for each new value (at most ``kept`` times), not a list: a list of nine holds room
    for sixteen, and a log with a new address on every line fills 100,000 tallies' lists."""
    if not isinstance(held, tuple):
        # Equal values are one object while the caches have room; past that, compared.
        return held if held == value else (held, value)
    if value in held:
        return held
    listed = len(held)
    if listed < kept:
        return (*held, value)
    if listed == kept:
        return (*held, _OVER)
    return held


def distinct(held: Held[_V]) -> set[_V]:
    """The distinct values a tally lists (``_Tally.ips``, ``networks``, ``agents``)."""
    if held is None:
        return set()
    return set(held) - {_OVER} if isinstance(held, tuple) else {held}


def more(held: Held[Any] | int) -> bool:
    """Whether more distinct values were seen than ``held`` lists."""
    return isinstance(held, tuple) and held[-1] is _OVER


def _sorted(held: Held[str]) -> list[str]:
    # A held tuple has no repeats (``_more``): sorted as it is, no set built per link.
    if held is None:
        return []
    if isinstance(held, str):
        return [held]
    return sorted(held[:-1] if held[-1] is _OVER else held)


def _count(held: Held[Any] | int) -> int:
    """How many distinct values ``held`` lists (``more`` says whether there were more); an
    int: the networks a settled tally's addresses name (``_Join.settle``), all of them."""
    if held is None:
        return 0
    if isinstance(held, int):
        return held
    return len(held) - (held[-1] is _OVER) if isinstance(held, tuple) else 1


def address_texts(held: Held[Address]) -> list[str]:
    """The addresses ``held`` lists as the log wrote them, in text order (as when tallies
    held the texts: a value's order is not its text's, 10.0.0.9 after 10.0.0.10)."""
    if held is None:
        return []
    if not isinstance(held, tuple):
        return [address_text(held)]
    return sorted(map(address_text, held[:-1] if held[-1] is _OVER else held))


UNUSED = _Tally()


@dataclass(slots=True)
class _Link:
    """One link the run issued, and what the logs say happened to it."""

    link_id: str
    job: str
    recipient: str
    kind: Kind
    bucket: str
    key: str
    expires_at: str
    issued_at: datetime | None = None
    replaced_by: str | None = None
    # ``UNUSED`` (shared, never changed) until a record names the link: most links of a big
    # run cost no tally of their own until they are used.
    tally: _Tally = field(default_factory=lambda: UNUSED)
    # The names of its leak signals, as usage.csv's cell shows them (``_signals`` sets them).
    signals: str = ""


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What ``usage`` found and wrote; ``usage`` is the content of ``usage.json``."""

    run_dir: Path
    usage: Mapping[str, Any]
    written: tuple[Path, ...]
    # The review page's sha256 after its receipts block was rewritten; None: left as it was.
    review_page_sha256: str | None = None

    @property
    def exit_code(self) -> int:
        """2 when a log line did not parse, else 1 when any leak signal, else 0."""
        if self.usage["lines"]["bad"]:
            return EXIT_USAGE
        return EXIT_FAILED if self.usage["signals"] else EXIT_OK


@dataclass
class RunLinks:
    """The links a run issued, by id, in the order read, and its recipients (``read_run``)."""

    run_id: str
    links: dict[str, _Link]
    recipients: dict[tuple[str, str], None]
    # Rows written without an id (``link_ids: false``, or bundles from before ids): unjoinable.
    without_id: int = 0
    # GET rows without an id per recipient: their receipts cannot say they are complete.
    gets_without_id: dict[tuple[str, str], int] = field(default_factory=dict)
    # One object for equal texts (buckets, expiries, methods, and keys: recipients sent the
    # same file share its key) over every row read.
    texts: dict[object, object] = field(default_factory=dict)


def _not_a_run(run_dir: Path, why: str) -> UsageError:
    return UsageError(f"{visible(str(run_dir))}: not a run folder ({why})")


def read_run(run_dir: Path) -> RunLinks:
    """The links a run issued, by id: bundles first (renewals after their original), then the
    audit events; ``UsageError`` (exit 2) for a folder that is no run, ``LinkError`` naming
    the file and field of a bundle or audit line that cannot be read."""
    if not run_dir.is_dir():
        raise _not_a_run(run_dir, "no such folder")
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        run_id = summary["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _not_a_run(run_dir, "no readable summary.json") from None
    if not isinstance(run_id, str):
        raise _not_a_run(run_dir, "summary.json has no run_id")
    run = RunLinks(run_id, {}, {})
    for path in sorted(run_dir.glob("*/*/links*.json"), key=_bundle_order):
        _read_bundle(path, run)
    audits = [run_dir / "audit.jsonl", *sorted(run_dir.glob("*.audit.jsonl"))]
    audits += sorted(run_dir.glob("*/*/*.audit.jsonl"))
    for path in audits:
        if path.is_file():
            _read_audit(path, run)
    return run


def _bundle_order(path: Path) -> tuple[str, str, bool, str]:
    # links.json before links.renewed-<time>-...: a renewal's replaced_by needs its original.
    return path.parent.parent.name, path.parent.name, path.name != "links.json", path.name


class _Row(NamedTuple):
    """What usage needs of a bundle row (a link or an upload slot)."""

    link_id: object
    bucket: object
    key: object
    expires_at: object
    method: object


def _slim(texts: dict[object, object]) -> Callable[[dict[str, Any]], object]:
    """A JSON object hook keeping only ``_Row``'s fields of each row (an object with a
    ``url`` and a ``key``), equal texts as one object: a bundle of 100,000 rows is read
    without holding its URLs, or the same expiry 100,000 times."""

    def hook(found: dict[str, Any]) -> object:
        if "url" not in found or "key" not in found:
            return found
        get = found.get
        return _Row(
            get("link_id"),
            texts.setdefault(get("bucket"), get("bucket")),
            get("key"),
            texts.setdefault(get("expires_at"), get("expires_at")),
            texts.setdefault(get("method"), get("method")),
        )

    return hook


def _read_bundle(path: Path, run: RunLinks) -> None:
    try:
        data = json.loads(path.read_bytes(), object_hook=_slim(run.texts))
    except (OSError, ValueError, RecursionError) as exc:
        raise LinkError(f"{path}: cannot read the bundle: {exc.__class__.__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("links"), list):
        raise LinkError(f'{path}: not a sharebatch bundle: expected {{"header": ..., "links"}}')
    try:
        header = BundleHeader.from_json(data.get("header"))
    except ValueError as exc:
        raise LinkError(f"{path}: header: {exc}") from None
    job, recipient = header.job, header.recipient
    run.recipients[(job, recipient)] = None
    issued = parse_iso(header.generated_at)
    rows: list[tuple[str, object]] = [(f"links[{n}]", row) for n, row in enumerate(data["links"])]
    uploads = data.get("uploads", [])
    if isinstance(uploads, list):
        rows += [(f"uploads[{n}]", row) for n, row in enumerate(uploads)]
    del data  # the rows are all that is needed now
    for where, row in rows:
        if not isinstance(row, _Row):
            raise LinkError(f"{path}: {where}: expected an object with a url and a key")
        if row.link_id is None:
            run.without_id += 1
            if where.startswith("links["):
                who = (job, recipient)
                run.gets_without_id[who] = run.gets_without_id.get(who, 0) + 1
            continue
        method = str(row.method or "GET").lower()
        kind: Kind = "put" if method == "put" else "post" if method == "post" else "get"
        _add(run, path, where, row.link_id, job, recipient, kind, row, issued)
    page_id = header.page_link_id
    if page_id is not None and header.page_url is not None:
        facts = read_url(header.page_url, f"{path}: header.page_url")
        page = {"bucket": facts.bucket, "key": facts.key, "expires_at": iso(facts.expires_at)}
        _add(run, path, "header.page_link_id", page_id, job, recipient, "page", page, issued)


def _text(run: RunLinks, value: object) -> str:
    text = str(value or "")
    found = run.texts.setdefault(text, text)
    return found if isinstance(found, str) else text


def _add(
    run: RunLinks,
    path: Path,
    where: str,
    link_id: object,
    job: str,
    recipient: str,
    kind: Kind,
    row: Mapping[str, object] | _Row,
    issued: datetime | None,
) -> _Link:
    if not isinstance(link_id, str) or not link_id:
        raise LinkError(f"{path}: {where}: link_id: expected text")
    known = run.links.get(link_id)
    if known is not None:
        return known
    # A bundle's row as its hook read it (``_slim``: no dict made for it, its bucket and
    # expiry already shared), or an event's or a page's dict.
    if isinstance(row, _Row):
        bucket, key, expires_at = row.bucket, row.key, row.expires_at
    else:
        bucket, key, expires_at = row.get("bucket"), row.get("key"), row.get("expires_at")
    link = _Link(
        link_id,
        job,
        recipient,
        kind,
        _text(run, bucket),
        _text(run, key),
        _text(run, expires_at),
        issued,
        None,
        UNUSED,
    )
    run.links[link_id] = link
    run.recipients[(job, recipient)] = None
    return link


_ID_FIELD = re.compile(r'"link_id": "([0-9a-zA-Z_-]*)"')
_EVENT_KINDS: dict[str, Kind] = {"link_issued": "get", "page_stored": "page"}


def _read_audit(path: Path, run: RunLinks) -> None:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            # Most events name no link, and a link_issued the bundles gave already adds
            # nothing: only the others are parsed (a run of 100,000 links logs as many).
            if '"link_id"' not in line:
                continue
            if '"event": "link_issued"' in line:
                known = _ID_FIELD.search(line)
                if known is not None and known[1] in run.links:
                    continue
            try:
                event = json.loads(line)
                name = event["event"]
                stamp = parse_iso(event["timestamp"])
            except (ValueError, KeyError, TypeError):
                if not line.endswith("\n"):
                    continue  # the last line of a run killed while writing it: no event
                raise LinkError(f"{path}:{number}: not an audit event") from None
            if name in ("link_issued", "upload_slot_issued", "page_stored", "link_renewed"):
                _audit_event(run, Path(f"{path}:{number}"), name, event, stamp)


def _audit_event(
    run: RunLinks, where: Path, name: str, event: dict[str, Any], stamp: datetime
) -> None:
    job, recipient = str(event.get("job", "")), str(event.get("recipient", ""))
    if name == "upload_slot_issued":
        kind: Kind = "post" if str(event.get("method", "")).upper() == "POST" else "put"
    else:
        kind = _EVENT_KINDS.get(name, "get")
    link = _add(run, where, "link_id", event["link_id"], job, recipient, kind, event, stamp)
    if name in ("link_renewed", "upload_slot_issued"):
        # The event's own time is when the replacing link was issued, to the millisecond.
        link.issued_at = stamp
        old = event.get("old_link_id") if name == "link_renewed" else event.get("replaces")
        if isinstance(old, str) and old in run.links and old != link.link_id:
            run.links[old].replaced_by = link.link_id


_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
# Set on an IPv6 address's value: above every IPv4 value, so the two never meet.
_V6 = 1 << 128


_T = TypeVar("_T")


def _shared(cache: dict[_T, _T], value: _T, room: int) -> _T:
    """One object for equal values (``value`` the first time), while ``cache`` holds fewer
    than ``room``: equal texts and tuples that many tallies hold are held once."""
    found = cache.get(value)
    if found is None:
        found = value
        if len(cache) < room:
            cache[value] = value
    return found


def address_value(text: str) -> Address:
    """``text`` as a tally holds it: an IPv4 or IPv6 address as an int when ``address_text``
    gives ``text`` back from it byte for byte, anything else (``-``, an address written with
    capitals or leading zeros) as it is. An int takes 32 bytes (48 for IPv6), the text 64 (72):
    a log with a new address on every line holds 850,000 of them."""
    try:
        if ":" in text:
            packed = inet_pton(AF_INET6, text)
            if inet_ntop(AF_INET6, packed) == text:
                return _V6 | int.from_bytes(packed)
        else:
            packed = inet_pton(AF_INET, text)
            # Checked, not assumed: what the C library accepts (leading zeros?) is its own.
            if inet_ntop(AF_INET, packed) == text:
                return int.from_bytes(packed)
    except (OSError, ValueError):  # not an address; ValueError: a NUL in the text
        pass
    return text


def address_text(value: Address) -> str:
    """The address as the log wrote it (``address_value``'s inverse)."""
    if isinstance(value, str):
        return value
    if value < _V6:
        return inet_ntop(AF_INET, value.to_bytes(4))
    return inet_ntop(AF_INET6, (value ^ _V6).to_bytes(16))


def network_of(address: str) -> str:
    """A name for the /24 (IPv4) or /48 (IPv6) network of ``address``, the same for every
    address in it (``a.b.c.0/24``, ``a:b:c::/48``); the text itself when it is no address.

    Text first: the parser has checked the address, and ``ipaddress`` costs 3 to 7 us an
    address, more than reading its line (a log can hold a new address on every line).
    """
    if _IPV4.fullmatch(address):
        return address.rpartition(".")[0] + ".0/24"
    if "." not in address:  # not IPv6 with an IPv4 tail (::ffff:192.0.2.1)
        groups = address.partition("::")[0].split(":", 3)
        if len(groups) >= 3:
            # Each group as ipaddress writes it: lower case, no leading zeros.
            first = [group.lstrip("0").lower() for group in groups[:3]]
            # All zero: maybe an IPv4-mapped address (::ffff:c000:201), which ipaddress knows.
            if any(first) and all(len(group) <= 4 for group in groups[:3]):
                return f"{first[0] or 0}:{first[1] or 0}:{first[2] or 0}::/48"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return network_of(str(ip.ipv4_mapped))
    if ip.version == 4:
        return network_of(str(ip))
    top = int(ip) >> 80  # the first 48 bits (``exploded`` breaks on a zone: fe80::1%eth0)
    return f"{top >> 32:x}:{(top >> 16) & 0xFFFF:x}:{top & 0xFFFF:x}::/48"


@dataclass
class _SourceCount:
    source: str
    files: int = 0
    lines: int = 0
    bad_lines: int = 0


class _Join:
    """Records in, tallies out: the part of ``usage`` that sees every line."""

    def __init__(self, run: RunLinks, max_networks: int = 3) -> None:
        self.run = run
        self.links = run.links
        self.networks_kept = max(LISTED, max_networks + 1)
        self.unknown: dict[str, _Tally] = {}
        self.unknown_more = _Tally()
        # Ids that are no id (not 16 lowercase hex): one tally, the first one cut short.
        self.malformed = _Tally()
        self.malformed_first: str | None = None
        # Our ids on requests for another object, per link: the tally and the first object.
        self.misused: dict[str, tuple[_Tally, str]] = {}
        # Requests with ids that other runs in the same folder issued (``other_runs``).
        self.other_runs = 0
        self.ours = 0
        self.other = 0
        self.bad = 0
        self.bad_lines: list[BadLine] = []
        self.daily: dict[tuple[date, str, str], int] = {}
        # The address only: its network is named when a tally needs the name (past
        # ``LISTED`` addresses, a late request, the settling), not on every line.
        self._addresses: dict[str, Address] = {}
        self._values: dict[Address, Address] = {}
        self._networks: dict[Address, str] = {}
        self._agents: dict[str, str] = {}
        # The few programs a recipient uses, in the order first seen: most links' tuples are
        # equal (a browser, then curl), and 100,000 links held 100,000 copies.
        self._agent_lists: dict[tuple[str, ...], tuple[str, ...]] = {}

    def address(self, text: str) -> Address:
        """One value for equal addresses (``address_value``), however many tallies hold
        them, while the caches have room: past the texts' (a log with a new address on every
        line), each address costs its conversion, not a cache emptied over and over."""
        found = self._addresses.get(text)
        if found is None:
            found = _shared(self._values, address_value(text), _ADDRESSES_CACHED)
            if len(self._addresses) < _TEXTS_CACHED:
                self._addresses[text] = found
        return found

    def network(self, ip: Address) -> str:
        """The name of ``ip``'s network (``network_of`` of its text), one string for equal
        names while the cache has room."""
        key = ip
        if type(ip) is int:
            # What the name depends on: an IPv4 address's first 24 bits, an IPv6 one's first
            # 48 unless they are all zero (IPv4-mapped and the like: the whole address).
            top = ip >> 80
            key = ip >> 8 if ip < _V6 else top if top != _V6 >> 80 else ip
        found = self._networks.get(key)
        if found is None:
            found = network_of(address_text(ip))
            if len(self._networks) < _ADDRESSES_CACHED:
                self._networks[key] = found
        return found

    def _network_count(self, held: Address | tuple[Address, ...]) -> int:
        """How many networks the addresses ``held`` lists (every one it was given) name."""
        values = held if isinstance(held, tuple) else (held,)
        blocks: set[int] = set()
        for value in values:
            if not isinstance(value, int) or value >= _V6:
                # Spellings may meet in one name (192.0.2.1 and ::ffff:192.0.2.7): by names.
                return len({self.network(value) for value in values})
            blocks.add(value >> 8)  # an IPv4 address's /24, without making its name
        return len(blocks)

    def settle(self) -> None:
        """Count each tally's networks from its addresses where they name them all: once a
        tally, after the last record, not once a record (``_Tally.networks``)."""
        tallies = [link.tally for link in self.links.values()]
        tallies += [*self.unknown.values(), self.unknown_more, self.malformed]
        tallies += [tally for tally, _ in self.misused.values()]
        for tally in tallies:
            if tally.networks is None and tally.ips is not None:
                tally.networks = self._network_count(tally.ips)

    def agent(self, text: str) -> str:
        """One string object for equal user agents."""
        return _shared(self._agents, text, _ADDRESSES_CACHED)

    def agent_list(self, held: str | tuple[str, ...]) -> str | tuple[str, ...]:
        """One tuple for equal tuples of user agents, while the cache has room."""
        if isinstance(held, str):
            return held
        return _shared(self._agent_lists, held, _SHARED_QUOTED)

    def add(self, item: AccessRecord | BadLine, count: _SourceCount) -> None:
        """Count one record or bad line (``add_batch`` of one)."""
        self.add_batch([item], count)

    def add_batch(self, items: Sequence[AccessRecord | BadLine], count: _SourceCount) -> None:
        """Count records and bad lines (``add_scan`` of ``accesslog.scan_of(items)``)."""
        self.add_scan(scan_of(items), count)

    def add_scan(self, scan: Scan[Hit] | ScanRows, count: _SourceCount) -> None:
        """Count a batch of lines: its bad lines, its records without an id, and its hits
        in their order (``Hit``s or plain tuples of their fields). One call per batch, and a
        hit of a link's own object counted here inline (``_Tally.add``'s work): this loop
        sees every record of ours, so each call and attribute look-up saved is saved a
        million times."""
        bad = scan.bad
        count.lines += scan.lines
        if bad:
            count.bad_lines += len(bad)
            self.bad += len(bad)
            room = BAD_LINES_LISTED - len(self.bad_lines)
            if room > 0:
                self.bad_lines += bad[:room]
        self.other += scan.other
        hits = scan.hits
        self.ours += len(hits)
        addresses, agents, links = self._addresses, self._agents, self.links
        daily, kept, network = self.daily, self.networks_kept, self.network
        for item in hits:
            (
                link_id,
                bucket,
                key,
                moment,
                remote_ip,
                operation,
                status,
                sent,
                size,
                agent,
            ) = item
            # The caches' hits inline.
            ip = addresses.get(remote_ip)
            if ip is None:
                ip = self.address(remote_ip)
            if agent is not None:
                if len(agent) > AGENT_SHOWN:
                    agent = agent[:AGENT_SHOWN] + "\u2026"
                agent = agents.get(agent) or self.agent(agent)
            link = links.get(link_id)
            if link is None:
                self._stranger(hit_of_row(item), link_id, ip, agent)
                continue
            # The link's own object, or the id sent along to another one (``_same_key`` only
            # when the key is not written as it was issued).
            if bucket != link.bucket or (key != link.key and not _same_key(key, link)):
                self._misused(hit_of_row(item), link, ip, agent)
                continue
            tally = link.tally
            if tally is UNUSED:
                tally = link.tally = _Tally()
            # ``_Tally.add``'s work, inline (a call per record cost more than the counting;
            # a test holds the two to the same figures).
            tally.requests += 1
            served = status is not None and 200 <= status < 300
            if served:
                if operation == "REST.GET.OBJECT":
                    # A 200 that sent less than the object is a transfer the client broke off.
                    if status == 206 or (size is not None and sent < size):
                        tally.partial += 1
                    else:
                        tally.downloads += 1
                        day = (moment.date(), link.job, link.recipient)
                        daily[day] = daily.get(day, 0) + 1
                elif operation in _UPLOADS:
                    tally.uploads += 1
            elif status == 403:
                tally.refused += 1
            tally.bytes_sent += sent
            last = tally.last
            if last is None:
                tally.first = tally.last = moment
            elif moment >= last:
                tally.last = moment
            elif tally.first is not None and moment < tally.first:
                tally.first = moment
            # ``_more`` only for a value the tally may not hold yet: a tuple holding it
            # (equal texts are one object while the caches have room) says so in C.
            held = tally.ips
            if held is not ip:
                if held is None:
                    tally.ips = ip
                elif type(held) is not tuple or ip not in held:
                    tally.new_address(ip, network, kept)
            if agent is not None:
                held = tally.agents
                if held is not agent:
                    if held is None:
                        tally.agents = agent
                    elif type(held) is str or agent not in held:
                        tally.agents = self.agent_list(_more(held, agent))
            # Only a request S3 served: a refused one (the old link clicked in the old mail,
            # expired) gave nobody anything.
            if served and link.replaced_by is not None:
                replacement = links[link.replaced_by].issued_at
                if replacement is not None and moment > replacement:
                    tally.late += 1
                    name = network(ip)
                    held = tally.late_networks
                    if held is None:
                        tally.late_networks = name
                    elif held is not name:
                        tally.late_networks = _more(held, name, kept)
                    if tally.late_first is None or moment < tally.late_first:
                        tally.late_first = moment

    def _stranger(self, item: Hit, link_id: str, ip: Address, agent: str | None) -> None:
        """A record whose id this run never issued: forged, another run's, or no id at all."""
        if not _LINK_ID.fullmatch(link_id):
            # Any text up to a line's length: tallied together, never kept whole.
            if self.malformed_first is None:
                self.malformed_first = link_id[:ID_SHOWN] + (
                    "\u2026" if len(link_id) > ID_SHOWN else ""
                )
            self.malformed.add(item, ip, agent, self.network)
            return
        tally = self.unknown.get(link_id)
        if tally is None:
            if len(self.unknown) < UNKNOWN_IDS_KEPT:
                tally = self.unknown[link_id] = _Tally()
            else:
                tally = self.unknown_more
        tally.add(item, ip, agent, self.network)

    def _misused(self, item: Hit, link: _Link, ip: Address, agent: str | None) -> None:
        """One of our ids on a request for another object: not the link's use, a leak."""
        found = self.misused.get(link.link_id)
        if found is None:
            where = f"{item.bucket}/{unquote(item.key or '-')}"
            if len(where) > AGENT_SHOWN:
                where = where[:AGENT_SHOWN] + "\u2026"
            found = self.misused[link.link_id] = (_Tally(), where)
        found[0].add(item, ip, agent, self.network)

    def resolve_other_runs(self, run_dir: Path) -> None:
        """Unknown ids that sibling runs (other folders of the same output folder, sharing
        the log source) issued: counted as ``other_runs``, no signal."""
        if not self.unknown:
            return
        theirs = other_runs_ids(run_dir, set(self.unknown))
        for link_id in theirs:
            requests = self.unknown.pop(link_id).requests
            self.other_runs += requests
            self.ours -= requests
            self.other += requests


def _same_key(logged: str | None, link: _Link) -> bool:
    """Whether the log's key (URL-encoded) names ``link``'s object; a POST slot's key ends in
    ``${filename}`` (the uploaded file's name)."""
    if logged is None:
        # A POST form's action URL is the bucket's: a request S3 refused before reading the
        # form (an expired policy) names no key, and is still the slot's.
        return link.kind == "post"
    if logged == link.key:
        return True
    # S3 writes %20 for a space in some logs and + in others: either decoding may be meant.
    names = {unquote(logged), unquote_plus(logged)}
    if link.kind == "post":
        folder = link.key.removesuffix(FILENAME)
        return any(name.startswith(folder) for name in names)
    return link.key in names


_QUOTED_ID = re.compile(r'"([0-9a-f]{16})"')
_ID_FIELDS = ("link_id", "old_link_id", "replaces")


def other_runs_ids(run_dir: Path, wanted: set[str]) -> set[str]:
    """Which of ``wanted`` the other runs next to ``run_dir`` issued, by their audit logs
    (streamed: a cheap substring test first, JSON parsed only for a line naming one)."""
    found: set[str] = set()
    here = run_dir.resolve()  # "." or "OUT/run/" names the same folder: its parent is OUT
    try:
        siblings = sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)
    except OSError:
        return found
    for sibling in siblings:
        if not (sibling / "summary.json").is_file():
            continue  # not a run folder
        audits = [sibling / "audit.jsonl", *sorted(sibling.glob("*.audit.jsonl"))]
        audits += sorted(sibling.glob("*/*/*.audit.jsonl"))
        for path in audits:
            if found == wanted:
                return found
            try:
                with path.open(encoding="utf-8", errors="replace") as handle:
                    for line in handle:
                        if '"link_id"' not in line:
                            continue
                        named = wanted.intersection(_QUOTED_ID.findall(line)) - found
                        if not named:
                            continue
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue  # another run's broken line resolves nothing
                        if isinstance(event, dict):
                            ids = {event.get(name) for name in _ID_FIELDS}
                            found |= {i for i in named if i in ids}
            except OSError:
                continue  # unreadable: those ids stay unknown (a signal), never lost
    return found


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # The access log's times are UTC to the second, and nearly each link's differs (``iso``'s
    # cache misses): their ``iso`` text is isoformat's without its "+00:00", a third the cost.
    if moment.tzinfo is UTC and not moment.microsecond:
        return moment.isoformat()[:-6] + "Z"
    return iso(moment)


def _link_json(link: _Link) -> dict[str, Any]:
    t = link.tally
    return {
        "link_id": link.link_id,
        "job": link.job,
        "recipient": link.recipient,
        "kind": link.kind,
        "bucket": link.bucket,
        "key": link.key,
        "expires_at": link.expires_at,
        "replaced_by": link.replaced_by,
        "downloads": t.downloads,
        "partial": t.partial,
        "uploads": t.uploads,
        "bytes_sent": t.bytes_sent,
        "refused": t.refused,
        "first": _when(t.first),
        "last": _when(t.last),
        "remote_ips": address_texts(t.ips),
        "networks": _count(t.networks),
        "user_agents": _sorted(t.agents),
        "more_remote_ips": more(t.ips),
        "more_networks": more(t.networks),
        "more_user_agents": more(t.agents),
    }


# The function ``json.JSONEncoder(ensure_ascii=False)`` quotes every string with (json's own
# C function): a link's row written as text calls it, not the encoder, per string.
_quoted: Callable[[str], str] = json.encoder.encode_basestring


def _link_text(
    link: _Link,
    shared: Callable[[str], str],
    first: str | None,
    last: str | None,
    ips: list[str],
) -> str:
    """``_link_json(link)`` as ``JSONEncoder(ensure_ascii=False).encode`` writes it, byte for
    byte, without the dict: usage.json's rows took a second for 100,000 links, most of it
    building and walking dicts. ``shared`` quotes the texts most links share, once each;
    ``first``, ``last`` and ``ips`` are the tally's as ``_when`` and ``address_texts`` give them,
    made once for both files (``_Table``)."""
    t = link.tally
    replaced = link.replaced_by
    agents = t.agents
    return (
        f'{{"link_id": {_quoted(link.link_id)}, "job": {shared(link.job)},'
        f' "recipient": {shared(link.recipient)}, "kind": "{link.kind}",'
        f' "bucket": {shared(link.bucket)}, "key": {_quoted(link.key)},'
        f' "expires_at": {shared(link.expires_at)},'
        f' "replaced_by": {"null" if replaced is None else _quoted(replaced)},'
        f' "downloads": {t.downloads:d}, "partial": {t.partial:d}, "uploads": {t.uploads:d},'
        f' "bytes_sent": {t.bytes_sent:d}, "refused": {t.refused:d},'
        f' "first": {"null" if first is None else _quoted(first)},'
        f' "last": {"null" if last is None else _quoted(last)},'
        f' "remote_ips": [{", ".join(map(_quoted, ips))}], "networks": {_count(t.networks):d},'
        f' "user_agents": [{"" if agents is None else ", ".join(map(shared, _sorted(agents)))}],'
        f' "more_remote_ips": {"true" if more(t.ips) else "false"},'
        f' "more_networks": {"true" if more(t.networks) else "false"},'
        f' "more_user_agents": {"true" if more(agents) else "false"}}}'
    )


class _Table:
    """usage.csv's link rows, made beside usage.json's (``LinkRows.texts``): a link's times
    and addresses are put in words once for both files, not once for each (``isoformat``
    four times a link, 100,000 links). ``kinds``: the strangers' signal names by id;
    ``rows``: the rows made since the caller last took them."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds
        self.rows: list[list[Any]] = []
        self.safe: dict[str, object] = {}

    def shared(self, text: str) -> object:
        """``csv_cell`` of a text most rows share (job, recipient, bucket, expiry), once."""
        cell = self.safe.get(text)
        if cell is None:
            cell = self.safe[text] = csv_cell(text)
        return cell

    def add(self, link: _Link, first: str | None, last: str | None, ips: list[str]) -> None:
        """``link``'s row, cells in ``CSV_COLUMNS`` order, made safe (``csv_cell``); cells
        that cannot hold an outsider's text (counts, times, kinds, signal names) skip it,
        which would give them back unchanged."""
        t = link.tally
        replaced = link.replaced_by
        kinds = self.kinds
        shared = self.safe.get
        self.rows.append(
            [
                shared(link.job) or self.shared(link.job),
                shared(link.recipient) or self.shared(link.recipient),
                csv_cell(link.link_id),
                link.kind,
                shared(link.bucket) or self.shared(link.bucket),
                csv_cell(link.key),
                shared(link.expires_at) or self.shared(link.expires_at),
                None if replaced is None else csv_cell(replaced),
                t.downloads,
                t.partial,
                t.uploads,
                t.bytes_sent,
                t.refused,
                first,
                last,
                csv_cell(" ".join(ips)),
                _count(t.networks),
                _count(t.agents),
                " ".join(filter(None, (link.signals, kinds.get(link.link_id))))
                if kinds
                else link.signals,
            ]
        )


class LinkRows(Sequence[dict[str, Any]]):
    """``usage.json``'s ``links``, each row made when it is read: a run of 100,000 links
    keeps its tallies, not a second copy of every figure as a dict."""

    def __init__(self, links: Sequence[_Link]) -> None:
        self._links = links

    def __len__(self) -> int:
        return len(self._links)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [_link_json(link) for link in self._links[index]]
        return _link_json(self._links[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def texts(self, table: _Table | None = None) -> Iterator[str]:
        """Each row as usage.json writes it (``_link_text``); with ``table``, each link's
        usage.csv row made beside it."""
        cache: dict[str, str] = {}

        def shared(text: str) -> str:
            found = cache.get(text)
            if found is None:
                found = _quoted(text)
                if len(cache) < _SHARED_QUOTED:
                    cache[text] = found
            return found

        add = None if table is None else table.add
        for link in self._links:
            t = link.tally
            first = _when(t.first)
            last = _when(t.last)
            ips = address_texts(t.ips)
            if add is not None:
                add(link, first, last, ips)
            yield _link_text(link, shared, first, last, ips)


def _signal(
    kind: SignalKind,
    link_id: str,
    link: _Link | None,
    requests: int,
    networks: int,
    first: datetime | None,
    detail: str,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "link_id": link_id,
        "job": None if link is None else link.job,
        "recipient": None if link is None else link.recipient,
        "key": None if link is None else link.key,
        "requests": requests,
        "networks": networks,
        "first": _when(first),
        "detail": detail,
    }


def _at_least(held: Held[Any] | int) -> str:
    return f"{_count(held)}{'+' if more(held) else ''}"


def _signals(join: _Join, max_networks: int) -> SignalRows:
    """The leak signals: a link's, in the links' order, then the strangers'."""
    found: list[tuple[SignalKind, _Link] | dict[str, Any]] = []
    for link in join.links.values():
        t = link.tally
        kinds: list[SignalKind] = []
        if _count(t.networks) > max_networks:
            kinds.append("many_networks")
        if t.late and link.replaced_by is not None:
            kinds.append("used_after_renewal")
        if link.link_id in join.misused:
            kinds.append("id_misused")
        if kinds:
            found += [(kind, link) for kind in kinds]
            link.signals = " ".join(kinds)
    for link_id, t in join.unknown.items():
        detail = "an id this run never issued: a forged link, or another run's"
        found.append(
            _signal("unknown_id", link_id, None, t.requests, _count(t.networks), t.first, detail)
        )
    rest = join.unknown_more
    if rest.requests:
        detail = (
            f"{rest.requests} requests with ids this run never issued, beyond the first"
            f" {UNKNOWN_IDS_KEPT} such ids (tallied together)"
        )
        found.append(
            _signal(
                "unknown_id",
                "*",
                None,
                rest.requests,
                _count(rest.networks),
                rest.first,
                detail,
            )
        )
    bad = join.malformed
    if bad.requests:
        detail = (
            f"{counted(bad.requests, 'request')} with malformed ids (not 16 lowercase hex"
            " characters): forged links"
        )
        found.append(
            _signal(
                "malformed_id",
                join.malformed_first or "",
                None,
                bad.requests,
                _count(bad.networks),
                bad.first,
                detail,
            )
        )
    return SignalRows(found, join, max_networks)


def _link_signal(kind: SignalKind, link: _Link, join: _Join, max_networks: int) -> dict[str, Any]:
    """A link's signal of ``kind`` (``_signals`` found it) as ``usage.json`` writes it."""
    t = link.tally
    if kind == "many_networks":
        detail = f"used from {_at_least(t.networks)} networks, more than {max_networks}"
        return _signal(kind, link.link_id, link, t.requests, _count(t.networks), t.first, detail)
    if kind == "used_after_renewal":
        replacing = str(link.replaced_by)
        detail = (
            f"used {counted(t.late, 'time')} after {replacing} replaced it"
            f" at {_when(join.links[replacing].issued_at)}"
        )
        return _signal(
            kind, link.link_id, link, t.late, _count(t.late_networks), t.late_first, detail
        )
    t, where = join.misused[link.link_id]
    detail = (
        f"its id used on another object, {where}"
        f" ({counted(t.requests, 'request')}): whoever sent it knows the id"
    )
    return _signal(kind, link.link_id, link, t.requests, _count(t.networks), t.first, detail)


class SignalRows(Sequence[dict[str, Any]]):
    """``usage.json``'s ``signals``; a link's made when it is read (``LinkRows``' reason: a
    log that has every link fetched from many networks raises 100,000 signals, and their
    dicts and texts held at once took 40 MB)."""

    def __init__(
        self,
        found: list[tuple[SignalKind, _Link] | dict[str, Any]],
        join: _Join,
        max_networks: int,
    ) -> None:
        self._found = found
        self._join = join
        self._max_networks = max_networks

    def __len__(self) -> int:
        return len(self._found)

    def strangers(self) -> list[dict[str, Any]]:
        """The signals of ids the run never issued (``unknown_id``, ``malformed_id``)."""
        return [item for item in self._found if isinstance(item, dict)]

    def _row(self, item: tuple[SignalKind, _Link] | dict[str, Any]) -> dict[str, Any]:
        if isinstance(item, dict):
            return item
        return _link_signal(item[0], item[1], self._join, self._max_networks)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._row(item) for item in self._found[index]]
        return self._row(self._found[index])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def _recipients(run: RunLinks) -> list[dict[str, Any]]:
    """Per recipient: their links' tallies summed, distinct addresses and agents counted."""
    mine: dict[tuple[str, str], list[_Link]] = {who: [] for who in run.recipients}
    for link in run.links.values():
        mine.setdefault((link.job, link.recipient), []).append(link)
    older = {link.replaced_by: link for link in run.links.values() if link.replaced_by}
    rows = []
    for (job, recipient), links in sorted(mine.items()):
        tallies = [link.tally for link in links]
        firsts = [t.first for t in tallies if t.first is not None]
        lasts = [t.last for t in tallies if t.last is not None]
        used = sum(1 for t in tallies if t.requests)
        rows.append(
            {
                "job": job,
                "recipient": recipient,
                "links": len(links),
                "used": used,
                "unused": len(links) - used,
                "downloads": sum(t.downloads for t in tallies),
                "partial": sum(t.partial for t in tallies),
                "uploads": sum(t.uploads for t in tallies),
                "bytes_sent": sum(t.bytes_sent for t in tallies),
                "refused": sum(t.refused for t in tallies),
                "first": _when(min(firsts, default=None)),
                "last": _when(max(lasts, default=None)),
                "remote_ips": len(set().union(*(distinct(t.ips) for t in tallies))),
                "user_agents": len(set().union(*(distinct(t.agents) for t in tallies))),
                # Rows without an id: receipts cannot tell, so never complete (remind them).
                "complete": not run.gets_without_id.get((job, recipient))
                and _complete(links, older),
                "without_id": run.gets_without_id.get((job, recipient), 0),
            }
        )
    return rows


def _complete(links: Sequence[_Link], older: Mapping[str, _Link]) -> bool:
    """Every GET link had a full download, itself or a link of its renewal chain."""
    for link in links:
        if link.kind != "get" or link.replaced_by is not None:
            continue  # a chain is judged once, from its newest link looking back
        member: _Link | None = link
        seen: set[str] = set()
        downloaded = False
        while member is not None and member.link_id not in seen and not downloaded:
            seen.add(member.link_id)
            downloaded = member.tally.downloads > 0
            member = older.get(member.link_id)
        if not downloaded:
            return False
    return True


def _write_files(json_path: Path, csv_path: Path, usage: Mapping[str, Any]) -> None:
    """``usage.json`` (``_write_usage``) and ``usage.csv`` as ``bundles.write_csv`` writes a
    table (same dialect, same bytes), the CSV's link rows made beside the JSON's.

    usage.csv's rows come straight from the tallies, not through usage.json's rows: a
    link's row is not built twice, and its times and addresses are put in words once. A
    link's signal names are its own (``_Link.signals``, in signal order): no table of
    100,000 links' names when every link raised one. A stranger's signal is named under its
    id, after the link's own should a link bear the same id (as usage.json lists them), and
    its row comes after the links'. usage.json is complete (renamed into place) before
    usage.csv, as when they were written one after the other.
    """
    signals: SignalRows = usage["signals"]
    strangers = signals.strangers()
    kinds: dict[str, str] = {}
    for signal in strangers:
        link_id, kind = signal["link_id"], signal["kind"]
        kinds[link_id] = f"{kinds[link_id]} {kind}" if link_id in kinds else kind
    table = _Table(kinds)
    with atomic_writer(csv_path) as out:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)

        def flush() -> None:
            # ``ROWS_WRITTEN`` rows to a write: each write is encoded and hashed.
            writer.writerows(table.rows)
            table.rows.clear()
            out.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()

        _write_usage(json_path, usage, table, flush)
        for signal in strangers:
            row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
            row |= {
                "link_id": signal["link_id"],
                "kind": "unknown" if signal["kind"] == "unknown_id" else "malformed",
                "first": signal["first"],
                "networks": signal["networks"],
                "signals": signal["kind"],
            }
            table.rows.append([csv_cell(row[name]) for name in CSV_COLUMNS])
        flush()


def _gauges(usage: Mapping[str, Any], exit_code: int) -> list[Gauge]:
    run = labels(run_id=usage["run_id"])
    people = {
        labels(run_id=usage["run_id"], job=r["job"], recipient=r["recipient"]): r
        for r in usage["recipients"]
    }

    def each(name: str) -> dict[str, float]:
        return {key: float(r[name]) for key, r in people.items()}

    counts: dict[str, int] = dict.fromkeys(SIGNAL_KINDS, 0)
    for signal in usage["signals"]:
        counts[signal["kind"]] += 1
    lines = usage["lines"]
    stamp = parse_iso(usage["generated_at"]).timestamp()
    return [
        ("usage_timestamp_seconds", "Unix time usage last read the access logs.", {run: stamp}),
        ("usage_exit_code", "Exit code of the last usage.", {run: exit_code}),
        (
            "usage_log_lines",
            "Access log lines read: ours (with a link id), other, bad (did not parse).",
            {f'{run},kind="{k}"': lines[k] for k in ("ours", "other", "bad")},
        ),
        ("usage_links", "Links the run issued (renewals included).", each("links")),
        ("usage_links_unused", "Links no request used.", each("unused")),
        ("usage_downloads", "Full downloads (2xx GET, not 206).", each("downloads")),
        ("usage_partial_downloads", "Partial downloads (206).", each("partial")),
        ("usage_bytes_sent", "Bytes S3 sent for the recipient's links.", each("bytes_sent")),
        ("usage_refused", "Requests S3 refused (403).", each("refused")),
        (
            "usage_complete",
            "1 when every file of the recipient was downloaded in full.",
            {key: float(r["complete"]) for key, r in people.items()},
        ),
        (
            "usage_signals",
            "Leak signals by kind (" + ", ".join(SIGNAL_KINDS) + ").",
            {f'{run},kind="{k}"': n for k, n in counts.items()},
        ),
    ]


def _write_usage(
    path: Path,
    usage: Mapping[str, Any],
    table: _Table | None = None,
    flush: Callable[[], None] | None = None,
) -> None:
    """``usage.json``: the top level indented, each row of a list on a line of its own.
    With ``table``, usage.csv's link rows are made beside the links' (``LinkRows.texts``),
    and ``flush`` is called after each write of them.

    Rows are encoded one by one (by the C encoder; ``indent`` would choose the Python one,
    ten times slower), so writing costs no copy of the whole text either. One encoder for
    every row (``json.dumps`` with an option makes one per call), and ``ROWS_WRITTEN`` rows
    to a write (each write is encoded and hashed: a call per row cost as much as a row).
    """
    encode = json.JSONEncoder(ensure_ascii=False).encode
    with atomic_writer(path) as out:
        separator = "{\n  "
        for name, value in usage.items():
            out.write(f"{separator}{json.dumps(name)}: ")
            separator = ",\n  "
            if not isinstance(value, Sequence) or isinstance(value, str):
                out.write(encode(value))
                continue
            if not value:
                out.write("[]")  # a row sequence of our own (LinkRows) is no list to encode
                continue
            links = isinstance(value, LinkRows)
            rows: Iterator[str] = (
                value.texts(table) if isinstance(value, LinkRows) else map(encode, value)
            )
            row_break = "[\n    "
            # With usage.csv's rows made beside them, a quarter as many at a time: both
            # files' rows are held at once, and the worst case's peak RSS is near its limit.
            while part := list(
                islice(rows, ROWS_WRITTEN // 4 if links and table else ROWS_WRITTEN)
            ):
                out.write(row_break + ",\n    ".join(part))
                row_break = ",\n    "
                if links and flush is not None:
                    flush()
            out.write("\n  ]")
        out.write("\n}\n")


def refresh_review_page(run_dir: Path, usage: Mapping[str, Any]) -> str | None:
    """The review page's receipts block, rewritten from ``usage``; the page's new sha256, or
    None when there is no review page to refresh (``page.refresh_receipts``)."""
    page = run_dir / REVIEW_PAGE
    # A run always writes its page, but ops may have removed it: receipts need none.
    return refresh_receipts(page, usage) if page.is_file() else None


async def usage_async(
    run_dir: Path,
    sources: Sequence[LogSource],
    *,
    max_networks: int = 3,
    metrics_file: Path | None = None,
    connection: Connection | None = None,
    now: datetime | None = None,
) -> UsageReport:
    """Join the access log records of ``sources`` to the links of the run in ``run_dir``.

    Writes ``usage.json`` and ``usage.csv`` in the run folder (0600, atomically), refreshes
    the review page's receipts block and, with ``metrics_file``, writes Prometheus gauges.
    Bad input (not a run folder, an unreadable bundle, no source, a source without log files,
    ``max_networks`` below 1, a metrics file whose folder is missing) is a ``UsageError``
    (exit 2) before anything is written; S3 refusing the credentials a source needs, a
    ``CredentialsError`` (exit 3). A log line that does not parse is counted and listed with
    its file and line, and the rest is reported (``UsageReport.exit_code`` 2).
    """
    if max_networks < 1:
        raise UsageError(f"--max-networks must be at least 1, not {max_networks}")
    if not sources:
        raise UsageError("no --access-logs source given")
    if metrics_file is not None:
        check_metrics_path(metrics_file)
    _refuse_overlaps(sources)
    run = read_run(run_dir)
    join = _Join(run, max_networks)
    counts = []
    async with AsyncExitStack() as stack:
        gateway = None
        if any(source.bucket is not None for source in sources):
            gateway = await stack.enter_async_context(S3Gateway(connection or Connection()))
            await gateway.credentials()  # exit 3 before any log is read, when refused
        for source in sources:
            count = _SourceCount(source.text)

            def counted(_: str, count: _SourceCount = count) -> None:
                count.files += 1

            async for scan in read_scans(source, gateway, on_file=counted):
                join.add_scan(scan, count)
            if not count.files:
                raise UsageError(f"--access-logs {visible(source.text)}: no log files there")
            counts.append(count)
    join.resolve_other_runs(run_dir)
    join.settle()
    links = list(run.links.values())
    signals = _signals(join, max_networks)
    usage = {
        "run_id": run.run_id,
        "generated_at": iso(now or datetime.now(UTC)),
        "max_networks": max_networks,
        "sources": [
            {"source": c.source, "files": c.files, "lines": c.lines, "bad_lines": c.bad_lines}
            for c in counts
        ],
        "lines": {
            "total": join.ours + join.other + join.bad,
            "ours": join.ours,
            "other": join.other,
            "bad": join.bad,
            "other_runs": join.other_runs,
        },
        "bad_lines": [
            {"file": b.file, "line": b.line, "problem": b.problem} for b in join.bad_lines
        ],
        "links_without_id": run.without_id,
        "recipients": _recipients(run),
        "links": LinkRows(links),
        "daily": [
            {"day": day.isoformat(), "job": job, "recipient": recipient, "downloads": n}
            for (day, job, recipient), n in sorted(join.daily.items())
        ],
        "signals": signals,
    }
    written = (run_dir / USAGE_JSON, run_dir / USAGE_CSV)
    _write_files(written[0], written[1], usage)
    page = refresh_review_page(run_dir, usage)
    report = UsageReport(run_dir, usage, written, page)
    if metrics_file is not None:
        write_exposition(metrics_file, render_gauges(_gauges(usage, report.exit_code)))
    return report


usage = blocking(usage_async)


def _refuse_overlaps(sources: Sequence[LogSource]) -> None:
    """``UsageError`` (exit 2) for two sources of which one holds the other (a folder and a
    sub-folder of it, the same or nested s3:// prefixes): their records would count twice."""
    seen: list[tuple[LogSource, tuple[str, ...]]] = []
    for source in sources:
        if source.folder is not None:
            place = ("file", *source.folder.resolve().parts)
        else:
            place = ("s3", str(source.bucket), source.prefix)
        for other, there in seen:
            if there[0] != place[0]:
                continue
            if place[0] == "file":
                short, long = sorted((there, place), key=len)
                nested = long[: len(short)] == short
            else:
                nested = place[2].startswith(there[2]) or there[2].startswith(place[2])
                nested = nested and place[1] == there[1]
            if nested:
                raise UsageError(
                    f"--access-logs {visible(other.text)} and {visible(source.text)} overlap:"
                    " one holds the other, so their records would be counted twice"
                )
        seen.append((source, place))
