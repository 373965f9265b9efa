"""Log events: redaction before any sink, stderr formats and levels."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sharebatch import audit

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
