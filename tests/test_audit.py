"""Log events: redaction before any sink, stderr formats and levels."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch import audit
from sharebatch.models import Link, ObjectRef
from sharebatch.times import iso
from tests.support import tricky

URL = "https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef0123&X-Amz-Security-Token=tok"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_urls_and_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    """A URL or secret passed by mistake never reaches the audit file, stderr or a capture."""
    stream = io.StringIO()
    audit.configure(level="debug", fmt="json", stream=stream)
    log = audit.get_logger()
    with audit.audit_file(tmp_path / "audit.jsonl"), audit.capture() as events:
        log.info(
            "oops", url=URL, note=f"see {URL}", secret_access_key="s3cr3t", session_token="t0k"
        )
    written = (tmp_path / "audit.jsonl").read_text() + stream.getvalue() + json.dumps(events)
    for secret in ("abcdef0123", "s3cr3t", "t0k", "X-Amz-Signature"):
        assert secret not in written
    assert events[0]["url"] == audit.REDACTED and events[0]["note"] == audit.REDACTED


def test_stderr_level_filters_but_audit_file_keeps_everything(tmp_path: Path) -> None:
    """Per-link debug events go to the audit file; stderr at info level does not show them."""
    stream = io.StringIO()
    audit.configure(level="info", fmt="json", stream=stream)
    log = audit.get_logger()
    with audit.audit_file(tmp_path / "audit.jsonl"):
        log.debug("link_issued", key="k")
        log.info("prefix_listed", count=3)
    names = [
        json.loads(line)["event"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()
    ]
    assert names == ["link_issued", "prefix_listed"]
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "prefix_listed"
    ]


def test_terminal_gets_readable_lines_and_pipes_get_json() -> None:
    """On a TTY the 'auto' format is human-readable; elsewhere it is one JSON object per line."""
    tty, pipe = _Tty(), io.StringIO()
    for stream in (tty, pipe):
        audit.configure(fmt="auto", stream=stream)
        audit.get_logger().info("run_finished", status="ok")
    assert "run_finished" in tty.getvalue() and "status=ok" in tty.getvalue()
    assert json.loads(pipe.getvalue())["status"] == "ok"


def test_library_is_silent_without_configuration() -> None:
    """Without configure() the library writes nothing to the terminal (events still captured)."""
    with audit.capture() as events:
        audit.get_logger().info("run_started")
    assert [e["event"] for e in events] == ["run_started"]


def test_url_digest_is_sha256_of_the_url() -> None:
    """The audit log's url_sha256 lets a leaked link be traced without storing the link."""
    import hashlib

    assert audit.url_digest(URL) == hashlib.sha256(URL.encode()).hexdigest()


def test_console_lines_escape_controls_and_bidi_but_keep_letters() -> None:
    """A key with an escape sequence and U+202E is escaped on a terminal, its accents kept."""
    tty = _Tty()
    audit.configure(fmt="console", stream=tty)
    audit.get_logger().info("link_issued", key="ké/\x1b[2J\u202egnp.exe.pdf")
    line = tty.getvalue()
    assert "key=ké/\\x1b[2J\\u202egnp.exe.pdf" in line
    assert "\x1b" not in line and "\u202e" not in line


_STAMP = "2026-12-03T08:00:00.123456Z"


def _old_records(links: list[Link], kind: str) -> Iterator[dict[str, Any]]:
    """link_issued records as the pipeline built them for emit_many before link_issued."""
    for link in links:
        record = {
            "job": link.job,
            "recipient": link.recipient,
            "bucket": link.obj.bucket,
            "key": link.obj.key,
            "method": link.method,
            "expires_at": iso(link.expires_at),
            "link_id": link.link_id,
            "url_sha256": audit.url_digest(link.url),
        }
        if kind != "s3":
            record["kind"] = kind
        yield record


@st.composite
def _links(draw: st.DrawFn) -> Link:
    text = st.one_of(tricky.plain(), tricky.texts(surrogates=False))
    when = datetime(2026, 11, 28, 20, 15, tzinfo=UTC)
    obj = ObjectRef(draw(text), draw(text), 10, "etag", when)
    link_id = draw(st.one_of(st.none(), st.just("00000000000000ab"), text))
    return Link(draw(text), draw(text), obj, "GET", when, when, "https://h/" + draw(text), link_id)


def _audit_bytes(emit: Callable[[], None]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="sharebatch-test-") as name:
        path = Path(name) / "audit.jsonl"
        with mock.patch.object(audit, "_stamp", return_value=_STAMP), audit.audit_file(path):
            emit()
        return path.read_bytes()


@given(st.lists(_links(), max_size=6), st.sampled_from(["s3", "cloudfront", 'a"b']))
@settings(max_examples=150, deadline=None)
def test_link_issued_lines_are_emit_manys_bytes(links: list[Link], kind: str) -> None:
    """The lines link_issued builds as text are exactly emit_many's (JSON escapes, redaction
    of any value holding a secret marker), whatever the job, recipient, key or id hold."""
    fast = _audit_bytes(lambda: audit.link_issued(links, kind))
    slow = _audit_bytes(lambda: audit.emit_many("debug", "link_issued", _old_records(links, kind)))
    assert fast == slow


@given(st.lists(_links(), max_size=6), st.booleans(), st.booleans())
@settings(max_examples=150, deadline=None)
def test_link_issued_columns_writes_link_issueds_lines(
    links: list[Link], with_ids: bool, one_bucket: bool
) -> None:
    """The lines link_issued_columns builds from a chunk's columns are exactly link_issued's
    for the same links (held to emit_many's above), whatever job, recipient, bucket and keys
    hold; a chunk of several buckets too."""
    if not links:
        return
    job, recipient, first = links[0].job, links[0].recipient, links[0].obj.bucket
    objects = [lk.obj._replace(bucket=first) if one_bucket else lk.obj for lk in links]
    ids = [lk.link_id or "" for lk in links] if with_ids else None
    urls = [lk.url for lk in links]
    when = links[0].expires_at
    given_ids = ids if ids is not None else [None] * len(objects)
    same = [
        Link(job, recipient, obj, "GET", when, when, url, link_id)
        for obj, url, link_id in zip(objects, urls, given_ids, strict=True)
    ]
    fast = _audit_bytes(
        lambda: audit.link_issued_columns(job, recipient, objects, urls, ids, when, when)
    )
    assert fast == _audit_bytes(lambda: audit.link_issued(same))
    assert fast.count(b"\n") == len(links)


def test_link_issued_redacts_a_key_holding_a_signature_marker(tmp_path: Path) -> None:
    """A key that looks like a signed URL is redacted in its event, as by any other event."""
    when = datetime(2026, 11, 28, 20, 15, tzinfo=UTC)
    obj = ObjectRef("b", "x?X-Amz-Signature=abc", 1, "e", when)
    link = Link("j", "r", obj, "GET", when, when, "https://h/x", "00000000000000ab")
    with audit.audit_file(tmp_path / "audit.jsonl"):
        audit.link_issued([link])
    [event] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert event["key"] == audit.REDACTED
    assert event["url_sha256"] == audit.url_digest("https://h/x")


def test_link_issued_reaches_captures_and_a_debug_stderr(tmp_path: Path) -> None:
    """With a capture or stderr at debug, the events go through emit_many to every sink."""
    when = datetime(2026, 11, 28, 20, 15, tzinfo=UTC)
    link = Link("j", "r", ObjectRef("b", "k", 1, "e", when), "GET", when, when, "https://h/k")
    stream = io.StringIO()
    audit.configure(level="debug", fmt="json", stream=stream)
    with audit.audit_file(tmp_path / "audit.jsonl"), audit.capture() as events:
        audit.link_issued([link], "cloudfront")
    assert [e["event"] for e in events] == ["link_issued"]
    assert events[0]["kind"] == "cloudfront" and events[0]["link_id"] is None
    assert json.loads(stream.getvalue()) == events[0]
    assert (tmp_path / "audit.jsonl").read_text() == stream.getvalue()


def _without_stamps(text: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "timestamp"}
        for line in text.splitlines()
    ]


def test_a_workers_rendered_lines_reach_every_sink_as_emitted(tmp_path: Path) -> None:
    """Lines a signing worker rendered (``collected``) and the run wrote (``write_rendered``)
    are the audit file's bytes ``emit_many`` would write, and reach stderr (at debug) and
    captures as the same events; redaction happened in the worker."""
    records = [{"key": "a.pdf", "n": 1}, {"key": "b.pdf", "note": URL}]
    with audit.collected() as lines:
        audit.emit_many("debug", "link_issued", [dict(r) for r in records])
        rendered = lines.take()
    assert lines.take() == ""
    direct = tmp_path / "direct.jsonl"
    with audit.audit_file(direct):
        audit.emit_many("debug", "link_issued", [dict(r) for r in records])
    stream = io.StringIO()
    audit.configure(level="debug", fmt="json", stream=stream)
    via = tmp_path / "via.jsonl"
    with audit.audit_file(via), audit.capture() as events:
        audit.write_rendered("debug", rendered)
    # The two batches were stamped apart: compared without the stamp.
    strip = _without_stamps
    assert strip(via.read_text()) == strip(direct.read_text())
    assert via.read_text() == rendered
    assert strip(stream.getvalue()) == strip(rendered)
    assert [e["key"] for e in events] == ["a.pdf", "b.pdf"]
    assert "abcdef0123" not in rendered


def test_a_workers_lines_as_bytes_reach_every_sink_as_emitted(tmp_path: Path) -> None:
    """Lines a signing worker rendered, read back from its spool as UTF-8
    (``write_rendered_bytes``): the audit file gets the bytes as they are, and captures (which
    want events) the events, as ``write_rendered`` gives them."""
    records = [{"key": "a.pdf", "n": 1}, {"key": "café.pdf", "note": URL}]
    with audit.collected() as lines:
        audit.emit_many("debug", "link_issued", [dict(r) for r in records])
        rendered = lines.take()
    plain = tmp_path / "plain.jsonl"
    with audit.audit_file(plain):
        audit.write_rendered_bytes("debug", rendered.encode())
        audit.write_rendered_bytes("debug", b"")
    assert plain.read_bytes() == rendered.encode()
    captured = tmp_path / "captured.jsonl"
    with audit.audit_file(captured), audit.capture() as events:
        audit.write_rendered_bytes("debug", rendered.encode())
    assert captured.read_text() == rendered
    assert [e["key"] for e in events] == ["a.pdf", "café.pdf"]
