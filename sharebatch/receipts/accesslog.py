"""S3 server access log records, parsed as AWS documents the format.

Each record is one line of space-separated fields (S3 user guide, "Amazon S3 server access log
format", https://docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html):

    bucket_owner bucket [time] remote_ip requester request_id operation key "request_uri"
    http_status error_code bytes_sent object_size total_time turnaround_time "referer"
    "user_agent" version_id host_id signature_version cipher_suite authentication_type
    host_header tls_version access_point_arn acl_required source_region ...

What the documentation says, and what real logs show beyond it:

* The time is ``[%d/%b/%Y:%H:%M:%S %z]``, in UTC (``+0000``); another offset is converted.
* Any field can be ``-`` (unknown, not applicable). Request-URI, Referer and User-Agent are
  quoted, and S3 writes an empty one as ``"-"`` as often as ``-``: both read as empty.
* S3 does not escape a ``"`` inside a quoted field: a client that sends a quote in its request
  target, Referer or User-Agent gets it written raw (``"GET /" HTTP/1.1"``). So the end of the
  Request-URI is the one quote that the status fields follow; where a quote inside it is itself
  followed by something that reads as status fields, the line is ambiguous and refused, since
  a forged status would count a refused request as a download. A quoted field's text is taken
  as written: a backslash is a backslash.
* AWS appends fields at the end over the years: old records stop after the user agent (or its
  version id), newer ones carry more, and a parser must accept fields it does not know.
* The remote IP is IPv4 or, over dual-stack endpoints, IPv6.
* The key is URL-encoded as S3 writes it; it is kept as written.
* Custom query parameters whose names begin with ``x-`` are ignored by S3 and kept in the
  Request-URI ("Custom access log information"): ``x-sharebatch-id`` is read from there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Generic, NamedTuple, TypeVar
from urllib.parse import unquote

from sharebatch.models import LINK_ID_PARAM

try:
    from sharebatch.receipts import _linescan
except ImportError:  # built without a C compiler (setup.py): every line is read in Python
    _linescan = None  # type: ignore[assignment]

_NAME_IS = LINK_ID_PARAM + "="
_NAME_LENGTH = len(_NAME_IS)
# ``link_id_of``'s plain case, searched from the query's "?": the first ``x-sharebatch-id=``
# that follows a "?" or "&", its value up to the next "&" or space. The name comes first and
# the check of the character before it after (a lookbehind), so the engine looks for the
# name as a literal prefix rather than trying a character class at every position.
_ID_AT = re.compile(re.escape(_NAME_IS) + "(?<=[?&]" + re.escape(_NAME_IS) + ")([^& ]*+)")


class AccessRecord(NamedTuple):
    """One request as S3 logged it: the fields receipts use.

    A named tuple rather than a frozen dataclass (immutable and without a ``__dict__`` all the
    same): one is made for every log line, and a tuple is made in a sixth of the time.

    ``remote_ip`` is an IPv4 or IPv6 address as written, or ``-`` where S3 had none;
    ``bytes_sent`` is 0 for ``-`` (the documentation's "or - if zero"); ``link_id`` is the
    ``x-sharebatch-id`` value of the Request-URI's query, percent-decoded, not checked against
    anything (a forged or foreign id is the caller's to judge).
    """

    bucket: str
    time: datetime
    remote_ip: str
    requester: str | None
    operation: str
    key: str | None
    request_uri: str | None
    status: int | None
    error_code: str | None
    bytes_sent: int
    object_size: int | None
    user_agent: str | None
    link_id: str | None


class Hit(NamedTuple):
    """What ``usage`` counts of a record that carries a link id (``scan_lines``): the fields
    of ``AccessRecord`` it reads, the id first. The others (requester, Request-URI, error
    code) are not converted: a million lines make each field saved a second saved."""

    link_id: str
    bucket: str
    key: str | None
    time: datetime
    remote_ip: str
    operation: str
    status: int | None
    bytes_sent: int
    object_size: int | None
    user_agent: str | None


HitRow = tuple[str, str, str | None, datetime, str, str, int | None, int, int | None, str | None]
"""A ``Hit``'s fields as a plain tuple (``scan_rows``): a named tuple is made from a tuple
made first, 0.85 us more a record than the tuple alone (measured at load 4), and ``usage``
unpacks every one of them at once."""


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that does not parse: where it is, and why.

    ``line`` counts from 1; 0 means the file as a whole (compressed, binary, unreadable).
    """

    file: str
    line: int
    problem: str


# The common case in one match: no quote inside a quoted field, the fields S3 writes. A line
# it refuses goes through ``_parse_slowly``, which accepts raw quotes and says what is wrong.
# It never accepts a line the slow path refuses as ambiguous: after the Request-URI's end the
# only quotes it lets through are the Referer's and User-Agent's (none in the error code, none
# in the trailing fields), and none of those may be followed by what reads as status fields.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Written out, not ``(?:\.{_OCTET}){3}``: the same language, but sre runs a counted repeat
# of a group through its general repeat machinery (0.8k of the 13.5k instructions a line
# of ``_SCAN``'s match, callgrind).
_IPV4_TEXT = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
# IPv6 as RFC 3986 (section 3.2.2) spells it: eight groups of hex digits, a run of zero
# groups written "::" once at most, the last two groups perhaps an IPv4 address. No zone
# index: S3 sees none.
_H16 = "[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4_TEXT})"
_IPV6_TEXT = (
    "(?:"
    + "|".join(
        [
            rf"(?:{_H16}:){{6}}{_LS32}",
            rf"::(?:{_H16}:){{5}}{_LS32}",
            rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
            rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
            rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
            rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
            rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
        ]
    )
    + ")"
)
_ADDRESS = re.compile(rf"{_IPV4_TEXT}|{_IPV6_TEXT}|-")
# A quote followed by what reads as the six status fields and the Referer's start: where the
# slow path finds one besides the Request-URI's end, it calls the line ambiguous. The fast
# pattern refuses such a quote in the Referer or User-Agent, and the slow path says why (a
# forged status behind a bare ``-`` Referer and User-Agent would otherwise read as real).
# S3's numbers (bytes, milliseconds) fit in 20 digits; a longer one is no number S3 wrote, and
# past 4300 digits int() refuses it anyway.
_DIGITS = 20
_STATUS_FIELDS = (
    r' (?:[0-9]++|-) [^ ]++ (?:[0-9]++|-) (?:[0-9]++|-) (?:[0-9]++|-) (?:[0-9]++|-) (?=["-])'
)
_NOT_STATUS = f"(?!{_STATUS_FIELDS})"
_COUNTED = f"[0-9]{{1,{_DIGITS}}}+|-"


def _fast(*kept: str) -> re.Pattern[str]:
    """The common case's pattern, capturing the fields named in ``kept`` (in the line's
    order): each caller takes out only what it reads (a group taken out costs a string)."""

    def field(name: str, body: str) -> str:
        return f"({body})" if name in kept else f"(?:{body})"

    def free(name: str) -> str:
        return f'"{_NOT_STATUS}' + field(name, '[^"]*+') + f'"{_NOT_STATUS}'

    return re.compile(
        field("bucket_owner", "[^ ]++")
        + " "
        + field("bucket", "[^ ]++")
        + r" \["
        + field("time", r"[^\]]++")
        + r"\] "
        # The remote address: IPv4 exactly, or any text with a colon, checked apart
        # (``_ipv6``): the IPv6 alternatives tried in the pattern cost 2.4 us an IPv6 line, a
        # look-up of an address seen before a twentieth of that.
        + field("remote_ip", f"{_IPV4_TEXT}|[0-9A-Fa-f.]*+:[0-9A-Fa-f:.]*+|-")
        + " "
        + " ".join(
            field(name, "[^ ]++") for name in ("requester", "request_id", "operation", "key")
        )
        + ' (?:"'
        + field("request_uri", '[^"]*+')
        + '"|-) '
        + field("http_status", _COUNTED)
        + " "
        + field("error_code", '[^ "]++')
        + " "
        + field("bytes_sent", _COUNTED)
        + " "
        + field("object_size", _COUNTED)
        + " (?:[0-9]++|-) (?:[0-9]++|-) (?:"
        + free("referer")
        + "|-) (?:"
        + free("user_agent")
        + r"|-)(?= |\r?\Z)"
        # What follows the user agent is fields S3 added later, none quoted: a quote there
        # means a quoted field held one, and only the slow way reads that right. Checked in
        # the pattern: a ``find`` after the match cost a call a line.
        + r'[^"]*+\Z'
    )


_FAST = _fast(
    "bucket",
    "time",
    "remote_ip",
    "requester",
    "operation",
    "key",
    "request_uri",
    "http_status",
    "error_code",
    "bytes_sent",
    "object_size",
    "user_agent",
)
# ``scan_text``: what ``usage`` reads of a line, whether it carries an id or not.
_SCAN = _fast(
    "bucket",
    "time",
    "remote_ip",
    "operation",
    "key",
    "request_uri",
    "http_status",
    "bytes_sent",
    "object_size",
    "user_agent",
)
_HEAD = re.compile(r"([^ ]+) ([^ ]+) \[([^\]]*)\] ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ")
_MIDDLE = re.compile(r" ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) ([^ ]+) (?=[\"-])")
# Request-URI ends: a quote that status fields follow, or (when none does, to name the
# problem) any six fields. Searched by the regex engine, a quote at a time, in one pass.
_STATUS_END = re.compile(f'"(?={_STATUS_FIELDS})')
_ANY_END = re.compile(r'"(?= [^ ]++ [^ ]++ [^ ]++ [^ ]++ [^ ]++ [^ ]++ ["-])')
_MIDDLE_ANY = re.compile(
    r'" [0-9-][^ ]* [^ ]+ [0-9-][^ ]* [0-9-][^ ]* [0-9-][^ ]* [0-9-][^ ]* [^"-]'
)
_NUMERIC = re.compile(r"[0-9]+|-")
_FIELD_NAMES = (
    "bucket_owner",
    "bucket",
    "time",
    "remote_ip",
    "requester",
    "request_id",
    "operation",
    "key",
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# ``_make`` without its length check: the tuple built here always has every field.
_record: Callable[[tuple[object, ...]], AccessRecord] = partial(tuple.__new__, AccessRecord)
_hit: Callable[[tuple[object, ...]], Hit] = partial(tuple.__new__, Hit)
_CACHE_LIMIT = 16_384
# A log's records share their seconds: each is parsed once, then looked up.
_times: dict[str, datetime] = {}
# The same by minute (the stamp without its seconds), at the minute's first second.
_minutes: dict[str, datetime] = {}
_SECONDS = [timedelta(seconds=n) for n in range(60)]
# IPv6 addresses checked and found good (their clients come back).
_good_ipv6: dict[str, None] = {}


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "...")


def _time(stamp: str) -> datetime:
    found = _times.get(stamp)
    if found is not None:
        return found
    # A new second of a minute already read (all but the seconds the same, checked then):
    # that minute's time plus the seconds, not a datetime built and converted (7 us).
    minute = _minutes.get(stamp[:18] + stamp[20:])
    second = stamp[18:20]
    if minute is not None and len(second) == 2 and second.isascii() and second.isdigit():
        seconds = int(second)
        if seconds < 60:
            moment = minute + _SECONDS[seconds]
            if len(_times) >= _CACHE_LIMIT:
                _times.clear()
            _times[stamp] = moment
            return moment
    try:
        if (
            len(stamp) != 26
            or stamp[2] != "/"
            or stamp[6] != "/"
            or stamp[11] != ":"
            or stamp[14] != ":"
            or stamp[17] != ":"
            or stamp[20] != " "
            or stamp[21] not in "+-"
            or not stamp.isascii()
            or not (stamp[0:2] + stamp[7:11] + stamp[12:14] + stamp[15:17] + stamp[18:20]).isdigit()
            or not stamp[22:26].isdigit()
        ):
            raise ValueError
        offset = timedelta(hours=int(stamp[22:24]), minutes=int(stamp[24:26]))
        moment = datetime(
            int(stamp[7:11]),
            _MONTHS[stamp[3:6]],
            int(stamp[0:2]),
            int(stamp[12:14]),
            int(stamp[15:17]),
            int(stamp[18:20]),
            tzinfo=timezone(-offset if stamp[21] == "-" else offset),
        ).astimezone(UTC)
    except (ValueError, KeyError, OverflowError):
        # OverflowError: a year 1 or 9999 stamp that leaves datetime's range in UTC.
        raise ValueError(
            f"time is not [dd/Mon/yyyy:hh:mm:ss +0000]: {_shown('[' + stamp + ']')}"
        ) from None
    if len(_times) >= _CACHE_LIMIT:
        _times.clear()
    _times[stamp] = moment
    if len(_minutes) >= _CACHE_LIMIT:
        _minutes.clear()
    _minutes[stamp[:18] + stamp[20:]] = moment - _SECONDS[int(stamp[18:20])]
    return moment


def _ipv6(text: str) -> bool:
    """Whether ``text``, which holds a colon, is an IPv6 address (``_FAST`` took its form)."""
    if _ADDRESS.fullmatch(text) is None:
        return False
    if len(_good_ipv6) >= _CACHE_LIMIT:
        _good_ipv6.clear()
    _good_ipv6[text] = None
    return True


def _address(text: str) -> str:
    if _ADDRESS.fullmatch(text) is None:
        raise ValueError(f"remote_ip is not an IP address: {_shown(text)}")
    return text


def _count(value: str, name: str) -> int | None:
    if value == "-":
        return None
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"{name} is not a number: {_shown(value)}")
    if len(value) > _DIGITS:
        raise ValueError(f"{name} is not a number S3 writes: {len(value)} digits")
    return int(value)


def _empty(value: str | None) -> str | None:
    return None if value is None or value == "-" else value


def link_id_of(request_uri: str | None) -> str | None:
    """The ``x-sharebatch-id`` value in a Request-URI's query, percent-decoded; None without.

    The Request-URI is ``METHOD target HTTP/version`` as the client sent it, so the name and
    the value may be percent-encoded (S3 decodes both before it checks the signature). The
    value ends at the next ``&`` or space. The first plain occurrence counts, else the first
    encoded one: a second occurrence breaks the signature, and S3 refuses such a request.
    """
    if request_uri is None:
        return None
    start = request_uri.find("?")
    if start < 0:
        return None
    found = request_uri.find(_NAME_IS, start)
    while found >= 0:
        if request_uri[found - 1] in "?&":
            begin = found + _NAME_LENGTH
            end = request_uri.find("&", begin)
            space = request_uri.find(" ", begin, None if end < 0 else end)
            value = request_uri[begin : space if space >= 0 else end if end >= 0 else None]
            return unquote(value) if "%" in value else value
        found = request_uri.find(_NAME_IS, found + 1)
    if "%" not in request_uri:
        return None
    query = request_uri[start + 1 :].split(" ", 1)[0]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if "%" in name and unquote(name) == LINK_ID_PARAM:
            return unquote(value)
    return None


def parse_line(text: str) -> AccessRecord:
    """One access log record; ``ValueError`` naming the field and the problem when it is not.

    ``text`` is one line, with or without its line ending.
    """
    if text.endswith("\n"):
        text = text[:-1]
    found = parse_lines("", 1, [text])
    if not found:
        raise ValueError("empty line")
    item = found[0]
    if isinstance(item, BadLine):
        raise ValueError(item.problem)
    return item


def parse_lines(file: str, first: int, texts: Iterable[str]) -> list[AccessRecord | BadLine]:
    """The records of consecutive lines of ``file`` (without their newlines), the first of
    them line number ``first``; a ``BadLine`` for each that is not a record, nothing for an
    empty one (it holds no record, so nothing is lost).

    One call for many lines: reading a million lines, the calls per line are what costs.
    """
    out: list[AccessRecord | BadLine] = []
    append = out.append
    match_fast = _FAST.match
    times = _times
    good_ipv6 = _good_ipv6
    record = _record
    number = first - 1
    for text in texts:
        number += 1
        match = match_fast(text)
        if match is not None:
            bucket, stamp, ip, requester, operation, key, uri, status, error, sent, size, agent = (
                match.groups()
            )
            # An address with a colon that is no IPv6 address: the slow way names it.
            if ":" not in ip or ip in good_ipv6 or _ipv6(ip):
                if uri == "-":
                    uri = None
                try:
                    append(
                        record(
                            (
                                bucket,
                                times.get(stamp) or _time(stamp),
                                ip,
                                None if requester == "-" else requester,
                                operation,
                                None if key == "-" else key,
                                uri,
                                None if status == "-" else int(status),
                                None if error == "-" else error,
                                0 if sent == "-" else int(sent),
                                None if size == "-" else int(size),
                                None if agent is None or agent == "-" else agent,
                                None if uri is None else link_id_of(uri),
                            )
                        )
                    )
                    continue
                except ValueError:
                    pass  # a time that does not convert: the slow way names it
        try:
            append(_parse_slowly(text.rstrip("\r")))
        except ValueError as exc:
            if text.strip():
                append(BadLine(file, number, str(exc)))
    return out


H = TypeVar("H", Hit, HitRow)


@dataclass(slots=True)
class Scan(Generic[H]):
    """Lines as ``usage`` counts them: the records with a link id as hits (``Hit``s from
    ``scan_lines``, plain ``HitRow`` tuples from ``scan_rows``), how many records carry none
    (``other``), and the lines that do not parse."""

    hits: list[H]
    other: int
    bad: list[BadLine]

    @property
    def lines(self) -> int:
        """The lines counted: every record and bad line (an empty line is neither)."""
        return len(self.hits) + self.other + len(self.bad)


ScanRows = Scan[HitRow]
"""``Scan`` with the hits as plain tuples in ``Hit``'s field order (``scan_rows``)."""


def hit_of_row(row: HitRow) -> Hit:
    """``row`` as its ``Hit``."""
    return _hit(row)


def hit_of(record: AccessRecord) -> Hit:
    """``record``'s ``Hit`` (it must carry a link id)."""
    if record.link_id is None:
        raise ValueError("a record without a link id is no hit")
    return _hit(
        (
            record.link_id,
            record.bucket,
            record.key,
            record.time,
            record.remote_ip,
            record.operation,
            record.status,
            record.bytes_sent,
            record.object_size,
            record.user_agent,
        )
    )


def scan_of(items: Iterable[AccessRecord | BadLine]) -> Scan[Hit]:
    """``parse_lines``' items as ``scan_lines`` gives them."""
    scan: Scan[Hit] = Scan([], 0, [])
    for item in items:
        if isinstance(item, BadLine):
            scan.bad.append(item)
        elif item.link_id is None:
            scan.other += 1
        else:
            scan.hits.append(hit_of(item))
    return scan


def scan_lines(file: str, first: int, texts: Iterable[str]) -> Scan[Hit]:
    """``parse_lines`` for ``usage``: the same lines read the same way (a line is a record,
    a bad line or empty exactly when ``parse_lines`` says so, a record has the same fields),
    but a record without a link id is only counted, and one with an id is a ``Hit``.

    Most of a bucket's log is other clients' requests: such a line is matched, its time
    and address checked and its Request-URI searched for an id, and nothing is built for it.
    """
    rows = scan_rows(file, first, texts)
    return Scan([_hit(row) for row in rows.hits], rows.other, rows.bad)


def scan_rows_of(items: Iterable[AccessRecord | BadLine]) -> ScanRows:
    """``parse_lines``' items as ``scan_rows`` gives them."""
    scan = scan_of(items)
    return ScanRows(list(scan.hits), scan.other, scan.bad)


def scan_rows(file: str, first: int, texts: Iterable[str]) -> ScanRows:
    """``scan_lines`` with each hit a plain tuple (``HitRow``), not a ``Hit``: ``scan_text``
    over the lines joined."""
    hits: list[HitRow] = []
    bad: list[BadLine] = []
    other = 0
    lines = list(texts)
    begin = 0
    for at, text in enumerate([*lines, "\n"]):
        if "\n" not in text:
            continue
        # Lines hold no newline (``parse_lines``' contract); one that does is read as one
        # line, the exact way, not cut in two by ``scan_text``.
        if at > begin:
            part = scan_text(file, first + begin, "\n".join(lines[begin:at]), 0, at - begin)[0]
            hits += part.hits
            other += part.other
            bad += part.bad
        if at < len(lines):
            part = scan_rows_of(parse_lines(file, first + at, [text]))
            hits += part.hits
            other += part.other
            bad += part.bad
        begin = at + 1
    return ScanRows(hits, other, bad)


def scan_text(file: str, first: int, text: str, start: int, most: int) -> tuple[ScanRows, int, int]:
    """``scan_rows`` of the lines of ``text`` (split at each newline) from offset ``start``,
    at most ``most`` of them, the first numbered ``first``; with the offset where the next
    line starts (past ``len(text)`` once every line is read) and how many lines were read.

    What ``usage`` reads, a chunk of a log file at a time: each line is matched where it
    lies in the chunk (``Pattern.match`` from its start to its end, which ``\\Z`` takes as
    the end), never copied out as a string of its own (a split made one per line: 0.66 us a
    line of an 800-byte log, at load 4), unless the slow way must read it.
    """
    hits: list[HitRow] = []
    bad: list[BadLine] = []
    other = 0
    append = hits.append
    find = text.find
    match_scan = _SCAN.match
    times = _times
    good_ipv6 = _good_ipv6
    id_at = _ID_AT.search
    size = len(text)
    at = start
    number = first - 1
    stop = first - 1 + most
    fast = _fast_scan
    while at <= size and number < stop:
        if fast is not None:
            # The compiled common case reads lines until one it leaves to the code below.
            read = fast(text, at, stop - number, hits, times, _time)
            if read is None:
                fast = None  # a character past U+00FF: this chunk is read here
            else:
                counted, at, lines = read
                other += counted
                number += lines
                if at > size or number >= stop:
                    break
        begin = at
        end = find("\n", begin)
        if end < 0:
            end = size
        at = end + 1
        number += 1
        # Every line through the one pattern, with or without an id: telling them apart
        # first (a ``find`` of the name and of "%" in the line's range, then a pattern
        # capturing two fields for a line with neither) cost more than the fields it spared,
        # each ``find`` parsing its arguments (34,213 against 32,741 instructions a line).
        match = match_scan(text, begin, end)
        if match is not None:
            bucket, stamp, ip, operation, key, uri, status, sent, size_, agent = match.groups()
            moment = times.get(stamp)
            if (moment is not None or _converts(stamp)) and (
                ":" not in ip or ip in good_ipv6 or _ipv6(ip)
            ):
                # ``link_id_of(uri)``, its plain case inline: one search from the "?"
                # (``_ID_AT``) for what took four ``find``s (12.2k instructions a
                # Request-URI against 7.6k, callgrind).
                link_id = None
                found = None
                if uri is not None:
                    query = uri.find("?")
                    if query >= 0:
                        found = id_at(uri, query)
                if found is not None:
                    link_id = found[1]
                    if "%" in link_id:
                        link_id = unquote(link_id)
                elif uri is not None and "%" in uri:
                    link_id = link_id_of(uri)
                if link_id is None:
                    other += 1
                    continue
                append(
                    (
                        link_id,
                        bucket,
                        None if key == "-" else key,
                        moment or times[stamp],
                        ip,
                        operation,
                        None if status == "-" else int(status),
                        0 if sent == "-" else int(sent),
                        None if size_ == "-" else int(size_),
                        None if agent is None or agent == "-" else agent,
                    )
                )
                continue
        # Anything else as ``parse_lines`` reads it (the slow way, or a bad line).
        for item in parse_lines(file, number, [text[begin:end]]):
            if isinstance(item, BadLine):
                bad.append(item)
            elif item.link_id is None:
                other += 1
            else:
                append(hit_of(item))
    return ScanRows(hits, other, bad), at, number - first + 1


# ``scan_text``'s compiled common case (``_linescan.c``), None where it was not built. The
# tests set it to None to read every line in Python, the oracle it is compared with.
_fast_scan: (
    Callable[
        [str, int, int, list[HitRow], dict[str, datetime], Callable[[str], datetime]],
        tuple[int, int, int] | None,
    ]
    | None
) = None if _linescan is None else _linescan.scan


def _converts(stamp: str) -> bool:
    """Whether a time field converts (``_time``, which caches it)."""
    try:
        _time(stamp)
    except ValueError:
        return False
    return True


def _parse_slowly(text: str) -> AccessRecord:
    """The same record for lines with raw quotes or odd spacing, or the reason there is none."""
    if not text.strip():
        raise ValueError("empty line")
    head = _HEAD.match(text)
    if head is None:
        raise ValueError(_head_problem(text))
    _, bucket, stamp, ip, requester, _, operation, key = head.groups()
    moment = _time(stamp)
    remote_ip = _address(ip)
    rest = text[head.end() :]
    if rest.startswith("-"):
        uri, middle = None, _MIDDLE.match(rest, 1)
        if middle is None:
            raise ValueError(_middle_problem(rest[1:]))
    elif rest.startswith('"'):
        uri, middle = _request_uri(rest)
    else:
        raise ValueError(f"request_uri is neither quoted nor '-': {_shown(rest)}")
    status, error, sent, size, total, turnaround = middle.groups()
    for value, name in ((total, "total_time"), (turnaround, "turnaround_time")):
        _count(value, name)
    start = head.end() + middle.end()
    agent = _user_agent(text, start)
    if agent is None:
        raise ValueError(
            "referer and user_agent are not two quoted fields or '-': " + _shown(text[start:])
        )
    request_uri = _empty(uri)
    return AccessRecord(
        bucket,
        moment,
        remote_ip,
        _empty(requester),
        operation,
        _empty(key),
        request_uri,
        _count(status, "http_status"),
        _empty(error),
        _count(sent, "bytes_sent") or 0,
        _count(size, "object_size"),
        _empty(agent[1:-1] if agent.startswith('"') else agent),
        link_id_of(request_uri),
    )


def _user_agent(text: str, start: int) -> str | None:
    """The User-Agent field (quoted as written, or ``-``) of ``text``, whose Referer starts at
    ``start``; None when the two are not two quoted fields or ``-`` followed by quote-free
    fields.

    Both may hold raw quotes, so the split is chosen: the trailing fields hold none, so a
    quoted User-Agent ends at the line's last quote; the Referer ends at the first quote that
    a space and the User-Agent's opening quote follow. Found with ``find``, never by trying
    every pair of quotes: a line full of quotes costs what its length costs.
    """
    last = text.rfind('"', start)
    after = last + 1
    if last >= 0 and after < len(text) and text[after] != " ":
        return None  # the last quote ends no field: no split can work
    opening = text[start : start + 1]
    if opening == "-":
        if text[start + 1 : start + 2] != " ":
            return None
        at = start + 2
        if text.startswith("-", at) and at > last and text[at + 1 : at + 2] in ("", " "):
            return "-"
        if text.startswith('"', at) and last > at:
            return text[at:after]
        return None
    if opening != '"' or last <= start:
        return None
    end = text.find('" "', start + 1)
    if end >= 0 and end + 2 < last:
        return text[end + 2 : after]
    if text[after : after + 2] == " -" and text[after + 2 : after + 3] in ("", " "):
        return "-"
    return None


def _request_uri(rest: str) -> tuple[str, re.Match[str]]:
    """The quoted Request-URI at the start of ``rest`` and the status fields after it.

    Its end is a quote followed by six fields and a quoted or empty Referer. With quotes
    inside it, more than one quote may qualify: then the line cannot be read safely.
    """
    ends = _STATUS_END.finditer(rest, 1)
    end = next(ends, None)
    if end is not None:
        if next(ends, None) is not None:
            raise ValueError(
                "request_uri holds a quote followed by what reads as the status fields: "
                "ambiguous, a forged status cannot be told from the real one"
            )
    else:
        end = _ANY_END.search(rest, 1)
    middle = None if end is None else _MIDDLE.match(rest, end.end())
    if end is None or middle is None:
        if _MIDDLE_ANY.search(rest):
            raise ValueError("referer is neither quoted nor '-'")
        raise ValueError(
            f"request_uri has no closing quote before the status fields: {_shown(rest)}"
        )
    return rest[1 : end.start()], middle


def _head_problem(text: str) -> str:
    fields = text.split(" ")
    if len(fields) < 9:
        return f"not an S3 server access log record: {len(fields)} fields before the line ends"
    if not fields[2].startswith("["):
        return f"field 3 (time) does not start with '[': {_shown(fields[2])}"
    if "]" not in text:
        return "time has no closing ']'"
    after = text[text.index("]") + 1 :].split(" ")
    named = ", ".join(_FIELD_NAMES[3 : 3 + max(0, 6 - len(after))])
    return f"not an S3 server access log record: the line stops before {named or 'request_uri'}"


def _middle_problem(rest: str) -> str:
    fields = rest.split(" ")[1:7]
    names = ("http_status", "error_code", "bytes_sent", "object_size", "total_time")
    for value, name in zip(fields, names, strict=False):
        if name != "error_code" and not _NUMERIC.fullmatch(value):
            return f"{name} is not a number: {_shown(value)}"
    return "the record stops before referer and user_agent: " + _shown(rest)
