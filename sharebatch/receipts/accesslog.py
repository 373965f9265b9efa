"""S3 server access log records, parsed as AWS documents the format.

Each record is one line of space-separated fields; the time is in brackets, Request-URI,
Referer and User-Agent in double quotes (a quote inside written ``\\"``), and ``-`` stands for
an empty field. The fields, in order (S3 user guide, "Amazon S3 server access log format"):

    bucket_owner bucket [time] remote_ip requester request_id operation key "request_uri"
    http_status error_code bytes_sent object_size total_time turnaround_time "referer"
    "user_agent" version_id host_id signature_version cipher_suite authentication_type
    host_header tls_version access_point_arn acl_required

AWS appends new fields at the end over the years, so a record may stop after ``user_agent``
(old records) or anywhere after it, and may carry more fields than listed (future ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

LINK_ID_PARAMETER = "x-sharebatch-id"


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request as S3 logged it: the fields receipts use."""

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


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that does not parse: where it is, and why."""

    file: str
    line: int
    problem: str


_FIELD = r'(?:"(?:[^"\\]|\\.)*"|\S+)'
_LINE = re.compile(
    r"(\S+) (\S+) \[([^\]]+)\] (\S+) (\S+) (\S+) (\S+) (\S+) "
    r'("(?:[^"\\]|\\.)*"|-) (\S+) (\S+) (\S+) (\S+) (\S+) (\S+) '
    rf'("(?:[^"\\]|\\.)*"|-) ("(?:[^"\\]|\\.)*"|-)((?: {_FIELD})*)\s*$'
)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}


def _dash(value: str) -> str | None:
    return None if value == "-" else value


def _quoted(value: str) -> str | None:
    if value == "-":
        return None
    inner = value[1:-1]
    return inner.replace('\\"', '"').replace("\\\\", "\\") if "\\" in inner else inner


def _count(value: str, name: str) -> int | None:
    if value == "-":
        return None
    if not value.isdigit():
        raise ValueError(f"{name} is not a number: {value[:40]!r}")
    return int(value)


def _time(text: str) -> datetime:
    # 06/Feb/2019:00:00:38 +0000
    try:
        day, month, rest = text.split("/", 2)
        year, clock = rest[:4], rest[5:13]
        hour, minute, second = clock.split(":")
        if rest[4] != ":" or rest[13:] != " +0000":
            raise ValueError
        return datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"time is not [dd/Mon/yyyy:hh:mm:ss +0000]: {text[:40]!r}") from None


def link_id_of(request_uri: str | None) -> str | None:
    """The ``x-sharebatch-id`` value in a Request-URI's query, as written; None without one."""
    if request_uri is None:
        return None
    # "GET /bucket/key?query HTTP/1.1": a raw space may sit inside the target itself.
    method, _, target = request_uri.partition(" ")
    if not target:
        target = method
    head, space, version = target.rpartition(" ")
    if space and version.startswith("HTTP/"):
        target = head
    _, _, query = target.partition("?")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if unquote(name) == LINK_ID_PARAMETER:
            return unquote(value)
    return None


def parse_line(text: str) -> AccessRecord:
    """One access log record; ``ValueError`` naming the problem when it is not one."""
    match = _LINE.match(text)
    if match is None:
        raise ValueError("not an S3 server access log record")
    g = match.groups()
    request_uri = _quoted(g[8])
    return AccessRecord(
        bucket=g[1],
        time=_time(g[2]),
        remote_ip=g[3],
        requester=_dash(g[4]),
        operation=g[6],
        key=_dash(g[7]),
        request_uri=request_uri,
        status=_count(g[9], "http_status"),
        error_code=_dash(g[10]),
        bytes_sent=_count(g[11], "bytes_sent") or 0,
        object_size=_count(g[12], "object_size"),
        user_agent=_quoted(g[16]),
        link_id=link_id_of(request_uri),
    )
