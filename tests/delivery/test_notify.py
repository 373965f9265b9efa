"""``notify`` against a real SMTP server (aiosmtpd on 127.0.0.1) and a real run on moto."""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from sharebatch import audit
from sharebatch.delivery import notify as notify_module
from sharebatch.delivery.ledger import Ledger, read_ledger
from sharebatch.delivery.message import Content
from sharebatch.delivery.notify import deliver, notify
from sharebatch.delivery.smtp import Retry
from sharebatch.errors import LinkError, RunLocked, UsageError
from sharebatch.lifecycle.inspect import read_bundle
from sharebatch.visible import visible
from tests.support.delivery_run import FILES, delivery_run, edit_plan, settings
from tests.support.linkkit import audit_events
from tests.support.quarterly import QuarterlyRun
from tests.support.smtp import Captured, Server

NO_WAIT = Retry(tries=3, backoff=lambda attempt: 0.0)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)


def _parts(captured: Captured) -> tuple[str, str]:
    message = captured.parsed()
    text = message.get_body(("plain",))
    body = message.get_body(("html",))
    assert text is not None and body is not None
    # On the wire lines end in CRLF; compare text as written.
    return (
        text.get_content().replace("\r\n", "\n"),
        body.get_content().replace("\r\n", "\n"),
    )


def _expected_id(run_id: str, job: str, recipient: str, *extra: str) -> str:
    parts = [run_id, job, recipient, "notify", "", *extra]
    return f"<{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}@acme.example>"


def test_each_recipient_gets_one_message_pointing_at_its_page(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """One message per recipient, text and HTML, headers as the plan says, and the one link
    in it is the bundle header's page_url; no file link is in the mail."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    now = _now()
    report = notify(run.run_dir, now=now, retry=NO_WAIT)
    assert report.exit_code == 0
    assert [(o.recipient, o.status) for o in report.outcomes] == [
        ("globex", "sent"),
        ("initech", "sent"),
    ]
    [globex] = smtp.mailbox.to("globex@partners.example")
    message = globex.parsed()
    assert message["From"] == "Acme Reports <reports@acme.example>"
    assert message["To"] == "Globex Corporation <globex@partners.example>"
    assert message["Reply-To"] == "ops@acme.example"
    assert message["Subject"] == "Q3 reports for you"
    assert message["Date"] == format_datetime(now)
    assert message["Message-ID"] == _expected_id(run.plan.run_id, "q3", "globex")
    assert globex.mail_from == "reports@acme.example"
    text, body = _parts(globex)
    page_url = str(run.header("q3", "globex")["page_url"])
    assert page_url in text and "Globex Corporation" in text
    assert f'href="{html.escape(page_url)}"' in body
    for row in read_bundle(run.run_dir / "q3" / "globex" / "links.json").rows:
        assert row.url not in text and html.escape(row.url) not in body
    [initech] = smtp.mailbox.to("initech@partners.example")
    assert str(run.header("q3", "initech")["page_url"]) in _parts(initech)[0]


def test_links_delivery_lists_each_file_with_its_link(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """delivery: links puts each file's name and link in both parts, and no page link."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port, delivery="links"))
    notify(run.run_dir, now=_now(), retry=NO_WAIT)
    [globex] = smtp.mailbox.to("globex@partners.example")
    text, body = _parts(globex)
    rows = read_bundle(run.run_dir / "q3" / "globex" / "links.json").rows
    assert len(rows) == 2
    for row in rows:
        assert f"{row.key} (" in text and row.url in text
        assert f'<a href="{html.escape(row.url)}">{html.escape(row.key)}</a>' in body
    assert "page_url" not in run.header("q3", "globex")
    assert "_sharebatch/pages/" not in text


def test_a_hostile_file_name_is_shown_escaped_in_a_links_mail(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A key with a bidi override and line separators faking a line of the mail is listed
    with those characters escaped in the text part and escaped (and HTML-escaped) in the HTML
    part. (Moto takes no newline in a key; test_message shows one given to the builder.)"""
    hostile = (
        "partners/globex/invoice\u202efdp.exe\u2028\x0bURGENT: log in at https://evil.example/"
    )
    run = delivery_run(
        quarterly,
        lambda job, r: settings(smtp.port, delivery="links"),
        files=FILES | {hostile: b"bait"},
    )
    notify(run.run_dir, now=_now(), retry=NO_WAIT)
    [globex] = smtp.mailbox.to("globex@partners.example")
    text, body = _parts(globex)
    assert f"- {visible(hostile)} (" in text
    assert f">{html.escape(visible(hostile))}</a>" in body
    for part in (text, body):
        assert not {"\u202e", "\u2028", "\x0b"} & set(part)
        assert not [line for line in part.splitlines() if line.startswith("URGENT")]


def test_a_custom_template_gets_the_documented_variables(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A manifest's text and HTML templates are rendered with the recipient, job, run and
    page variables, HTML-escaped in the HTML part."""
    text = "Dear {recipient.name} ({recipient.id}), {job.name} of {run.id}: {page_url} {files}"
    page = "<p>{recipient.name}</p><a href='{page_url}'>go</a> {sender.name}"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), templates=(text, page))
    notify(run.run_dir, now=_now(), retry=NO_WAIT)
    [globex] = smtp.mailbox.to("globex@partners.example")
    got_text, got_html = _parts(globex)
    page_url = str(run.header("q3", "globex")["page_url"])
    assert got_text == (
        f"Dear Globex Corporation (globex), q3 of {run.plan.run_id}: {page_url} 2 files\n"
    )
    assert got_html == (
        f"<p>Globex Corporation</p><a href='{html.escape(page_url)}'>go</a> Acme Reports\n"
    )


def test_a_second_notify_sends_only_what_was_not_sent(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """Idempotent: the ledger says both went, so a second notify sends nothing."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    notify(run.run_dir, now=_now(), retry=NO_WAIT, only=["globex"])
    again = notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert [(o.recipient, o.status) for o in again.outcomes] == [
        ("globex", "already sent"),
        ("initech", "sent"),
    ]
    third = notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert {o.status for o in third.outcomes} == {"already sent"}
    assert len(smtp.mailbox.messages) == 2
    lines = read_ledger(run.run_dir)
    assert [(d.recipient, d.status) for d in lines] == [("globex", "sent"), ("initech", "sent")]


def test_resend_sends_again_as_a_new_message(quarterly: QuarterlyRun, smtp: Server) -> None:
    """--resend sends one recipient again on purpose, with a Message-ID of its own."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    notify(run.run_dir, now=_now(), retry=NO_WAIT)
    report = notify(run.run_dir, now=_now(), retry=NO_WAIT, resend=["q3/globex"])
    assert [(o.recipient, o.status) for o in report.outcomes] == [
        ("initech", "already sent"),
        ("globex", "sent"),
    ]
    first, second = smtp.mailbox.to("globex@partners.example")
    assert first.parsed()["Message-ID"] != second.parsed()["Message-ID"]
    assert second.parsed()["Message-ID"] == _expected_id(
        run.plan.run_id, "q3", "globex", "resend-1"
    )
    assert len(smtp.mailbox.to("initech@partners.example")) == 1


def test_dry_run_writes_exactly_the_bytes_that_are_sent(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """--dry-run writes each message as a private .eml and sends nothing; a send at the same
    moment hands over the very same bytes."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    now = _now()
    dry = notify(run.run_dir, now=now, dry_run=True)
    assert smtp.mailbox.messages == [] and read_ledger(run.run_dir) == []
    outbox = run.run_dir / "outbox"
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert sorted(p.name for p in outbox.iterdir()) == ["globex.eml", "initech.eml"]
    assert {o.status for o in dry.outcomes} == {"written"}
    notify(run.run_dir, now=now, retry=NO_WAIT)
    for recipient in ("globex", "initech"):
        eml = outbox / f"{recipient}.eml"
        assert stat.S_IMODE(eml.stat().st_mode) == 0o600
        [sent] = smtp.mailbox.to(f"{recipient}@partners.example")
        assert eml.read_bytes() == sent.data


def test_only_narrows_and_an_unknown_name_is_refused(quarterly: QuarterlyRun, smtp: Server) -> None:
    """--only sends to the named recipient alone; a name the run has not is exit 2."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    report = notify(run.run_dir, now=_now(), retry=NO_WAIT, only=["initech"])
    assert [o.recipient for o in report.outcomes] == ["initech"]
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [("initech@partners.example",)]
    with pytest.raises(UsageError, match=r"--only: no such recipient in run .*: nobody"):
        notify(run.run_dir, now=_now(), only=["nobody"])


def test_a_recipient_without_an_address_stops_everything(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A recipient to notify without any address is exit 2 naming it, and nothing is sent."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), addresses={"initech": ()})
    with pytest.raises(UsageError, match="q3/initech: no email address") as caught:
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert caught.value.exit_code == 2
    assert smtp.mailbox.messages == [] and read_ledger(run.run_dir) == []


def test_notify_false_is_left_out_and_said_so(quarterly: QuarterlyRun, smtp: Server) -> None:
    """An entry with notify: false gets nothing and is listed as left out on purpose."""
    run = delivery_run(
        quarterly, lambda job, r: settings(smtp.port), notify_off=frozenset({"initech"})
    )
    report = notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert report.left_out == ("q3/initech",)
    assert [o.recipient for o in report.outcomes] == ["globex"]
    assert smtp.mailbox.to("initech@partners.example") == []


def test_per_address_sends_one_message_to_each_address(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """per_address: each address gets its own message, each with its own Message-ID."""
    both = ("finance@globex.example", "audit@globex.example")
    run = delivery_run(
        quarterly,
        lambda job, r: settings(smtp.port, per_address=True),
        addresses={"globex": both},
    )
    notify(run.run_dir, now=_now(), retry=NO_WAIT, only=["globex"])
    got = smtp.mailbox.wait_for(2)
    assert sorted(m.rcpt_tos for m in got) == [(both[1],), (both[0],)]
    assert {m.parsed()["To"] for m in got} == {f"Globex Corporation <{a}>" for a in both}
    assert len({m.parsed()["Message-ID"] for m in got}) == 2


def test_all_addresses_share_one_message_by_default(quarterly: QuarterlyRun, smtp: Server) -> None:
    """Without per_address, one message goes to all of a recipient's addresses."""
    both = ("finance@globex.example", "audit@globex.example")
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), addresses={"globex": both})
    notify(run.run_dir, now=_now(), retry=NO_WAIT, only=["globex"])
    [message] = smtp.mailbox.messages
    assert message.rcpt_tos == both
    assert message.parsed()["To"].addresses[1].addr_spec == both[1]


@pytest.mark.parametrize("field", ["subject", "sender", "reply_to"])
def test_a_line_break_never_becomes_a_header(
    quarterly: QuarterlyRun, smtp: Server, field: str
) -> None:
    """CR/LF in a header's text (a hand-edited delivery.json) is refused, exit 2, unsent."""
    evil = "Reports <reports@acme.example>\r\nBcc: thief@evil.example"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    # The manifest refuses such text at load, and read_plan in an edited delivery.json.
    chosen = settings(smtp.port, **{field: evil})
    run = edit_plan(run, lambda e: replace(e, settings=chosen))
    with pytest.raises(LinkError, match=r"q3/globex\), settings\.\w+: .*U\+000D") as caught:
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert caught.value.exit_code == 2
    assert smtp.mailbox.messages == []


def test_ledger_and_audit_record_each_message_without_a_url(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """deliveries.jsonl (0600, whole lines) and the audit events name recipient, addresses,
    Message-ID and reply, and hold no link."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port, delivery="links"))
    with audit.capture() as events:
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    ledger = run.run_dir / "deliveries.jsonl"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    lines = ledger.read_text().splitlines()
    assert len(lines) == 2
    first = min((json.loads(line) for line in lines), key=lambda d: str(d["recipient"]))
    assert first["recipient"] == "globex" and first["addresses"] == ["globex@partners.example"]
    assert first["reply"].startswith("250 ") and first["status"] == "sent"
    assert first["kind"] == "notify" and first["renewal"] is None and first["attempts"] == 1
    sent = [e for e in events if e["event"] == "mail_sent"]
    assert sorted(e["message_id"] for e in sent) == sorted(
        json.loads(line)["message_id"] for line in lines
    )
    audit_log = (run.run_dir / "audit.jsonl").read_text()
    assert audit_log.count('"mail_sent"') == 2
    for text in (ledger.read_text(), audit_log.split('"run_finished"')[-1]):
        assert "http://" not in text and "https://" not in text


def test_at_most_concurrency_connections_at_once(quarterly: QuarterlyRun, smtp: Server) -> None:
    """--concurrency 2: the server never sees more than two messages in flight at once."""
    smtp.mailbox.parallel = 2
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), extra_jobs=_bulk(4))
    report = notify(run.run_dir, now=_now(), retry=NO_WAIT, concurrency=2)
    assert report.exit_code == 0 and len(smtp.mailbox.messages) == 6
    assert smtp.mailbox.peak == 2


def _bulk(count: int) -> str:
    from tests.support.delivery_run import bulk_job

    return bulk_job(count)


def test_a_page_delivery_without_a_page_is_refused(quarterly: QuarterlyRun, smtp: Server) -> None:
    """delivery: page with no page_url in the bundle is exit 2: raw links are never mailed
    instead."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    data = json.loads(bundle.read_text())
    del data["header"]["page_url"]
    bundle.write_text(json.dumps(data))
    with pytest.raises(LinkError, match="page_url: missing"):
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert smtp.mailbox.messages == []


def test_a_malformed_page_expires_at_is_a_link_error_naming_the_bundle(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A header whose page_expires_at is no moment: LinkError (exit 2) naming the bundle and
    the field, not a ValueError; nothing is sent."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    data = json.loads(bundle.read_text())
    data["header"]["page_expires_at"] = "next tuesday"
    bundle.write_text(json.dumps(data))
    with pytest.raises(LinkError, match=r"initech/links\.json: header: page_expires_at: ") as e:
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert e.value.exit_code == 2
    assert smtp.mailbox.messages == []


def test_a_run_without_a_plan_is_refused(tmp_path: Path) -> None:
    """A folder without delivery.json is exit 2, naming it."""
    with pytest.raises(LinkError, match=r"no delivery\.json"):
        notify(tmp_path)


def test_deliver_sends_reminders_once_per_renewal(quarterly: QuarterlyRun, smtp: Server) -> None:
    """The reusable deliver(): kind reminder with a renewal id and a links override gives
    its own subject, Message-ID and ledger lines, once per renewal."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    notify(run.run_dir, now=_now(), retry=NO_WAIT, only=["globex"])
    [entry] = [e for e in run.plan.entries if e.recipient == "globex"]
    renewed = Content(page_url="https://pages.example/renewed-page", files=2)

    def remind(renewal: str) -> None:
        asyncio.run(
            deliver(
                run.run_dir,
                run.plan,
                [entry],
                {entry.key: renewed},
                kind="reminder",
                renewal=renewal,
                retry=NO_WAIT,
            )
        )

    remind("r1")
    remind("r1")
    remind("r2")
    first, *reminders = smtp.mailbox.to("globex@partners.example")
    assert len(reminders) == 2
    assert reminders[0].parsed()["Subject"] == "Reminder: Q3 reports for you"
    assert "https://pages.example/renewed-page" in _parts(reminders[0])[0]
    ids = {str(m.parsed()["Message-ID"]) for m in (first, *reminders)}
    assert len(ids) == 3
    lines = [(d.kind, d.renewal) for d in read_ledger(run.run_dir)]
    assert lines == [("notify", None), ("reminder", "r1"), ("reminder", "r2")]


def test_deliver_gives_each_entry_its_own_renewal(quarterly: QuarterlyRun, smtp: Server) -> None:
    """deliver(renewals=...): one call mails reminders of several renewals, each message's
    Message-ID, ledger line and mail_sent event naming its own entry's renewal (per address
    too), and sends again only the entry whose renewal is new."""
    both = ("finance@globex.example", "audit@globex.example")
    run = delivery_run(
        quarterly,
        lambda job, r: settings(smtp.port, per_address=(r == "globex")),
        addresses={"globex": both},
    )
    contents = {
        e.key: Content(page_url=f"https://pages.example/{e.recipient}", files=1)
        for e in run.plan.entries
    }

    def remind(renewals: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
        report = asyncio.run(
            deliver(
                run.run_dir,
                run.plan,
                run.plan.entries,
                contents,
                kind="reminder",
                renewals=renewals,
                retry=NO_WAIT,
            )
        )
        return sorted((o.recipient, o.status) for o in report.outcomes)

    first = {("q3", "globex"): "g1", ("q3", "initech"): "i1"}
    assert remind(first) == [("globex", "sent"), ("globex", "sent"), ("initech", "sent")]
    run_id = run.plan.run_id
    expected = {
        (both[0],): _reminder_id(run_id, "globex", "g1", both[0]),
        (both[1],): _reminder_id(run_id, "globex", "g1", both[1]),
        ("initech@partners.example",): _reminder_id(run_id, "initech", "i1"),
    }
    assert {m.rcpt_tos: m.parsed()["Message-ID"] for m in smtp.mailbox.messages} == expected
    assert remind(first) == [("globex", "already sent")] * 2 + [("initech", "already sent")]
    assert len(smtp.mailbox.messages) == 3
    assert remind(first | {("q3", "globex"): "g2"}) == [
        ("globex", "sent"),
        ("globex", "sent"),
        ("initech", "already sent"),
    ]
    later = {m.parsed()["Message-ID"] for m in smtp.mailbox.messages[3:]}
    assert later == {_reminder_id(run_id, "globex", "g2", a) for a in both}
    lines = sorted((d.recipient, d.renewal, tuple(d.addresses)) for d in read_ledger(run.run_dir))
    assert lines == [
        ("globex", "g1", (both[1],)),
        ("globex", "g1", (both[0],)),
        ("globex", "g2", (both[1],)),
        ("globex", "g2", (both[0],)),
        ("initech", "i1", ("initech@partners.example",)),
    ]
    events = [e for e in audit_events(run.run_dir) if e["event"] == "mail_sent"]
    assert sorted((e["recipient"], e["renewal"], e["message_id"]) for e in events) == sorted(
        (d.recipient, d.renewal, d.message_id) for d in read_ledger(run.run_dir)
    )


def _reminder_id(run_id: str, recipient: str, renewal: str, *address: str) -> str:
    parts = [run_id, "q3", recipient, "reminder", renewal, *address]
    return f"<{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}@acme.example>"


def test_a_recipient_in_two_jobs_gets_an_outbox_folder_per_job(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """Dry run: a recipient id in two jobs is written as outbox/<job>/<id>.eml, one per job;
    a recipient in one job stays outbox/<id>.eml."""
    again = "  - name: q4\n    prefixes: [reports/q3/]\n    recipients:\n      - id: globex\n"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), extra_jobs=again)
    notify(run.run_dir, now=_now(), dry_run=True)
    outbox = run.run_dir / "outbox"
    found = sorted(str(p.relative_to(outbox)) for p in outbox.rglob("*.eml"))
    assert found == ["initech.eml", "q3/globex.eml", "q4/globex.eml"]
    assert stat.S_IMODE((outbox / "q4").stat().st_mode) == 0o700


def test_a_second_notify_of_the_same_run_waits_its_turn(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """While one notify holds the ledger, another is refused (exit 75) and sends nothing."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    with Ledger(run.run_dir), pytest.raises(RunLocked, match="another notify") as caught:
        notify(run.run_dir, now=_now(), retry=NO_WAIT)
    assert caught.value.exit_code == 75
    assert smtp.mailbox.messages == []


def test_a_dry_run_writes_nothing_outside_the_outbox(
    quarterly: QuarterlyRun, smtp: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a recipient id climbing out of the outbox get past read_plan's checks (stood in
    for here by a plan handed over unchecked), the dry run refuses it before writing any .eml."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    climb = os.path.relpath(escaped, run.run_dir / "outbox")
    entries = tuple(
        replace(e, recipient=f"{climb}/pwn") if e.recipient == "initech" else e
        for e in run.plan.entries
    )
    unchecked = replace(run.plan, entries=entries)
    monkeypatch.setattr(notify_module, "read_plan", lambda run_dir: unchecked)
    with pytest.raises(LinkError, match=r"q3/.*pwn: the message file would lie outside"):
        notify(run.run_dir, dry_run=True)
    assert list(escaped.iterdir()) == []
    assert list((run.run_dir / "outbox").glob("**/*.eml")) == []
