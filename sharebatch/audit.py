"""Structured events: the audit log of a run and the log lines on stderr.

Every stage logs through structlog. One processor fans each event out to two sinks:

* the run's ``audit.jsonl`` (every event, JSON lines, mode 0600), attached by ``audit_file``;
* stderr, from ``configure`` (the CLI calls it): human-readable on a terminal, JSON otherwise,
  filtered by level so per-link events stay out of cron mail unless ``--verbose``;
* lists opened by ``capture`` (tests assert on events with it).

A redaction processor runs before both sinks: presigned URLs, signatures, secret keys and
session tokens never reach a log line, whatever a caller passes by mistake.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sharebatch.models import Link, ObjectRef
from sharebatch.times import iso
from sharebatch.visible import visible

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

# structlog (and what its dev console imports, rich among it) is imported by ``get_logger``:
# a signing worker (``run/worker``) renders link events through ``emit_many`` alone, and stays
# small without it.

StderrFormat = Literal["auto", "json", "console"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_SECRET_FIELDS = frozenset(
    {"url", "secret_access_key", "aws_secret_access_key", "session_token", "token", "signature"}
    | {"fields", "curl", "x-amz-signature", "x-amz-security-token"}
)
# POST upload forms carry the signature and token as lowercase field names.
_SECRET_MARKERS = (
    "X-Amz-Signature=",
    "Signature=",
    "X-Amz-Security-Token=",
    "x-amz-signature",
    "x-amz-security-token",
)
# One C-level scan per value instead of one per marker: this runs for every link issued.
_SECRET_RE = re.compile("|".join(re.escape(marker) for marker in _SECRET_MARKERS))
# link_issued's test of its values: ASCII that JSON escapes (controls, quote, backslash)
# becomes NUL, which a plain line's values then do not hold.
_AS_NUL = bytes(0 if b < 32 or b in b'"\\' else b for b in range(256))


def _plain_values(values: str) -> bool:
    """Whether ``values`` (a link_issued event's values joined by "/") are written by JSON as
    they are, and hold no secret marker (every marker holds "ignature" or "ecurity-")."""
    if "ignature" in values or "ecurity-" in values:
        return False
    if values.isascii():
        return 0 not in values.encode().translate(_AS_NUL)
    return values.isprintable() and '"' not in values and "\\" not in values


REDACTED = "[redacted]"


class _AuditFile:
    """The audit log's writer: lines are kept in memory and appended in blocks of 64 KiB.

    A block the disk refuses (``ENOSPC``) is kept, and the ``OSError`` raised: the run then
    ends as failed, frees its staged files, and the next flush writes what was kept. A
    ``TextIOWrapper`` would drop the refused text instead and splice two lines into one.
    """

    _BLOCK = 1 << 16

    def __init__(self, fd: int, held: bool = False) -> None:
        self._fd = fd
        self._pending = bytearray()
        self.held = held

    def write(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= self._BLOCK:
            self.flush()

    def flush(self) -> None:
        if self.held:
            return
        while self._pending:
            written = os.write(self._fd, self._pending)  # O_APPEND: a short write continues
            del self._pending[:written]

    def close(self) -> None:
        self.held = False
        try:
            self.flush()
        finally:
            os.close(self._fd)


@dataclass
class _Sinks:
    audit: _AuditFile | None = None
    stderr: TextIO | None = None
    stderr_level: int = _LEVELS["info"]
    stderr_json: bool = True
    captured: list[list[dict[str, Any]]] = field(default_factory=list)


_sinks = _Sinks()


def url_digest(url: str) -> str:
    """The sha256 recorded for each link, so a leaked URL can be traced to its recipient."""
    return hashlib.sha256(url.encode()).hexdigest()


def _redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for name, value in event.items():
        leaks = isinstance(value, str) and _SECRET_RE.search(value) is not None
        if name in _SECRET_FIELDS or leaks:
            event[name] = REDACTED
    return event


def _json_default(value: object) -> str:
    return str(value)


def _fan_out(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    import structlog  # loaded already: get_logger made the logger calling this

    _write(event)
    raise structlog.DropEvent


def emit_many(level: str, event: str, records: Iterable[dict[str, Any]]) -> None:
    """One event per record, through the same redaction and sinks as ``get_logger()``'s.

    For per-link events: a batch shares one timestamp and skips structlog's per-call
    machinery, which cost more than signing the link. The lines are the same shape.
    """
    stamp = _stamp()
    for fields in records:
        fields.update(event=event, level=level, timestamp=stamp)
        _write(_redact(None, level, fields))


def link_issued(links: Sequence[Link], kind: str = "s3") -> None:
    """One ``link_issued`` event (debug) per link: for whom, which object, until when, its
    id and its URL's sha256, never the URL. Only CloudFront links say their ``kind``: an S3
    link's event stays as it always was.

    When the audit log is the only sink that takes them (no capture, stderr above debug),
    each line is built as text, the very text ``emit_many`` writes for it: a line whose
    values hold a quote, a backslash, a control character or a secret marker goes through
    ``emit_many`` itself (JSON's escapes, ``_redact``). Tests compare both paths.
    """
    if not links:
        return
    stderr = _sinks.stderr
    if _sinks.captured or (stderr is not None and _sinks.stderr_level <= _LEVELS["debug"]):
        emit_many("debug", "link_issued", _link_records(links, kind))
        return
    audit = _sinks.audit
    if audit is None:
        return
    stamp = _stamp()
    tail = f'"event": "link_issued", "level": "debug", "timestamp": "{stamp}"}}\n'
    if kind != "s3":
        tail = f'"kind": "{kind}", {tail}'
    plain_kind = _plain_values(kind)
    lines = []
    for link in links:
        obj, link_id = link.obj, link.link_id
        values = f"{link.job}/{link.recipient}/{obj.bucket}/{obj.key}/{link.method}/{link_id}"
        if not plain_kind or not _plain_values(values):
            for record in _link_records([link], kind):
                record.update(event="link_issued", level="debug", timestamp=stamp)
                lines.append(_json(_redact(None, "debug", record)) + "\n")
            continue
        shown_id = "null" if link_id is None else f'"{link_id}"'
        lines.append(
            f'{{"job": "{link.job}", "recipient": "{link.recipient}", '
            f'"bucket": "{obj.bucket}", "key": "{obj.key}", "method": "{link.method}", '
            f'"expires_at": "{iso(link.expires_at)}", "link_id": {shown_id}, '
            f'"url_sha256": "{hashlib.sha256(link.url.encode()).hexdigest()}", {tail}'
        )
    audit.write("".join(lines))


def link_issued_columns(
    job: str,
    recipient: str,
    objects: Sequence[ObjectRef],
    urls: Sequence[str],
    ids: Sequence[str] | None,
    signed_at: datetime,
    expires_at: datetime,
) -> None:
    """``link_issued`` of the S3 GET links a chunk's columns describe (``run/sign.Columns``),
    the same lines, with no ``Link`` made for a plain one: the expiry's text is made once,
    and the values the chunk shares (job, recipient, bucket) are checked once."""
    if not objects:
        return
    given = ids if ids is not None else [None] * len(objects)
    stderr = _sinks.stderr
    audit = _sinks.audit
    bucket = objects[0].bucket
    if (
        _sinks.captured
        or (stderr is not None and _sinks.stderr_level <= _LEVELS["debug"])
        or audit is None
        or not _plain_values(f"{job}/{recipient}/{bucket}/GET/")
        or any(obj.bucket != bucket for obj in objects)
    ):
        link_issued(
            [
                Link(job, recipient, obj, "GET", signed_at, expires_at, url, link_id)
                for obj, url, link_id in zip(objects, urls, given, strict=True)
            ]
        )
        return
    stamp = _stamp()
    head = f'{{"job": "{job}", "recipient": "{recipient}", "bucket": "{bucket}", "key": "'
    middle = f'", "method": "GET", "expires_at": "{iso(expires_at)}", "link_id": '
    tail = f'", "event": "link_issued", "level": "debug", "timestamp": "{stamp}"}}\n'

    lines = []
    sha256 = hashlib.sha256
    # One test for the chunk's keys and ids, joined by "/" as the values are (no marker holds
    # one); a link among them that fails is found by testing each.
    keys = "/".join([obj.key for obj in objects])
    all_plain = _plain_values(keys if ids is None else keys + "/" + "/".join(ids))
    for obj, url, link_id in zip(objects, urls, given, strict=True):
        key = obj.key
        # Every marker holds "ignature" or "ecurity-"; job, recipient and bucket were checked.
        if not all_plain and not _plain_values(f"{key}/{link_id}"):
            for record in _link_records(
                [Link(job, recipient, obj, "GET", signed_at, expires_at, url, link_id)], "s3"
            ):
                record.update(event="link_issued", level="debug", timestamp=stamp)
                lines.append(_json(_redact(None, "debug", record)) + "\n")
            continue
        shown_id = "null" if link_id is None else f'"{link_id}"'
        digest = sha256(url.encode()).hexdigest()
        lines.append(f'{head}{key}{middle}{shown_id}, "url_sha256": "{digest}{tail}')
    audit.write("".join(lines))


def _link_records(links: Sequence[Link], kind: str) -> Iterator[dict[str, Any]]:
    for link in links:
        record = {
            "job": link.job,
            "recipient": link.recipient,
            "bucket": link.obj.bucket,
            "key": link.obj.key,
            "method": link.method,
            "expires_at": iso(link.expires_at),
            "link_id": link.link_id,
            "url_sha256": url_digest(link.url),
        }
        if kind != "s3":
            record["kind"] = kind
        yield record


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _json(event: EventDict) -> str:
    return json.dumps(event, default=_json_default, ensure_ascii=False)


def _write(event: EventDict) -> None:
    for events in _sinks.captured:
        events.append(dict(event))
    line: str | None = None
    if _sinks.audit is not None:
        line = _json(event)
    level = _LEVELS.get(str(event.get("level", "info")), 20)
    # stderr first: when the audit log's disk is full, the line still reaches the operator.
    if _sinks.stderr is not None and level >= _sinks.stderr_level:
        text = (line or _json(event)) if _sinks.stderr_json else _console(event)
        _sinks.stderr.write(text + "\n")
        _sinks.stderr.flush()
    if _sinks.audit is not None and line is not None:
        _sinks.audit.write(line + "\n")


def _console(event: MutableMapping[str, Any]) -> str:
    fields = dict(event)
    stamp = str(fields.pop("timestamp", ""))[11:19]
    level = str(fields.pop("level", "info"))
    name = str(fields.pop("event", ""))
    # An object key is chosen by whoever uploaded it: escape controls (ANSI sequences) for a TTY.
    rest = " ".join(f"{key}={visible(str(value))}" for key, value in fields.items())
    return f"{stamp} {level:<7} {name:<16} {rest}".rstrip()


def configure(
    *, level: str = "info", fmt: StderrFormat = "auto", stream: TextIO | None = None
) -> None:
    """Send events at ``level`` and above to stderr (the CLI's choice, not the library's)."""
    out = stream or sys.stderr
    _sinks.stderr = out
    _sinks.stderr_level = _LEVELS[level]
    _sinks.stderr_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    # botocore's own debug logging prints full presigned URLs and headers: keep it quiet.
    logging.getLogger("botocore").setLevel(logging.WARNING)


def reset() -> None:
    """Forget every sink and structlog's configuration (tests call it between cases)."""
    global _sinks
    _sinks = _Sinks()


@contextmanager
def audit_file(path: Path, *, held: bool = False) -> Iterator[None]:
    """Append every event to ``path`` (JSON lines, created 0600) while the block runs.

    ``held``: the lines are kept in memory until ``release`` (another process writes the
    log's beginning meanwhile: a merge's shard events), then appended after what it wrote.
    Closing writes what is left, held or not; if that fails while the block is already
    raising, the block's exception is the one that propagates (it says what went wrong first).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    previous, handle = _sinks.audit, _AuditFile(fd, held)
    _sinks.audit = handle
    try:
        yield
    except BaseException:
        _sinks.audit = previous
        with suppress(OSError):
            handle.close()
        raise
    _sinks.audit = previous
    handle.close()


def flush() -> None:
    """Write out the audit log's pending lines now (unless held); ``OSError`` if the disk
    refuses them."""
    if _sinks.audit is not None:
        _sinks.audit.flush()


def release() -> None:
    """The lines ``audit_file(held=True)`` kept: appended now, and every line after them as
    it comes."""
    if _sinks.audit is not None:
        _sinks.audit.held = False
        _sinks.audit.flush()


def scrubbed(text: str) -> str:
    """``text``, or ``[redacted]`` if it holds a signature or token (as a log field would)."""
    return REDACTED if _SECRET_RE.search(text) else text


@contextmanager
def capture() -> Iterator[list[dict[str, Any]]]:
    """Collect every event (after redaction) in a list while the block runs; for tests."""
    events: list[dict[str, Any]] = []
    _sinks.captured.append(events)
    try:
        yield events
    finally:
        _sinks.captured.remove(events)


def get_logger() -> Any:
    """The logger every stage uses.

    Its processor chain is private, not structlog's global configuration: the audit log is a
    product output and must not depend on how a host application configured its logging.
    """
    import structlog  # here, not at the top: see the note on the imports

    return structlog.wrap_logger(
        None,
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            _fan_out,
        ],
        wrapper_class=structlog.BoundLogger,
    )


class _Collected:
    """An audit sink that keeps the lines in memory: a signing worker's, for its parent."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass

    def take(self) -> str:
        text, self.lines = "".join(self.lines), []
        return text


@contextmanager
def collected() -> Iterator[_Collected]:
    """In a signing worker: the audit log's lines gathered in memory (``take`` returns them
    and starts again), exactly as the run's ``audit.jsonl`` would receive them; no stderr."""
    global _sinks
    previous, collector = _sinks, _Collected()
    _sinks = _Sinks(audit=collector)  # type: ignore[arg-type]
    try:
        yield collector
    finally:
        _sinks = previous


def write_rendered(level: str, text: str) -> None:
    """Lines a signing worker rendered (``collected``) joining the run's sinks, in order.

    The audit log takes the text as it is; stderr and ``capture`` lists, which want events,
    get each line read back, only when one of them wants ``level`` (the lines' own): per-link
    events are debug, which a run's stderr rarely shows.
    """
    if not text:
        return
    stderr = _sinks.stderr is not None and _sinks.stderr_level <= _LEVELS[level]
    if _sinks.captured or stderr:
        saved = _sinks.audit
        _sinks.audit = None
        try:
            for line in text.splitlines():
                _write(json.loads(line))
        finally:
            _sinks.audit = saved
    if _sinks.audit is not None:
        _sinks.audit.write(text)


def write_rendered_bytes(level: str, data: bytes) -> None:
    """``write_rendered`` of the lines as UTF-8 (read back from a signing worker's spool
    file): the audit log takes the bytes as they are, with no text made of them."""
    if not data:
        return
    stderr = _sinks.stderr is not None and _sinks.stderr_level <= _LEVELS[level]
    if _sinks.captured or stderr:
        write_rendered(level, data.decode())
    elif _sinks.audit is not None:
        _sinks.audit.write_bytes(data)
