"""``remind`` against a real run on moto and a real SMTP server (aiosmtpd on 127.0.0.1).

Windows are computed from the links' real end (``RemindRun.window``), never from a date.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sharebatch.delivery.ledger import read_ledger
from sharebatch.delivery.remind import remind, remind_lock
from sharebatch.errors import RunLocked
from sharebatch.run.delivery_plan import PLAN_FILE
from tests.support.linkkit import audit_events, invoke
from tests.support.remind_run import FILES, NO_WAIT, RemindRun, remind_run
from tests.support.s3 import S3, fetch
from tests.support.smtp import Captured, Server

HOUR = timedelta(hours=1)
_DOWNLOAD = re.compile(r'<a class="download" href="([^"]+)"')


def _text(captured: Captured) -> str:
    body = captured.parsed().get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def _reminders(smtp: Server) -> list[Captured]:
    return [m for m in smtp.mailbox.messages if m.parsed()["Subject"].startswith("Reminder: ")]


def _urls(text: str) -> list[str]:
    return re.findall(r"https?://\S+", text)


def _reminder_id(run: RemindRun, recipient: str, renewal: str) -> str:
    parts = [run.run_dir.name, "q3", recipient, "reminder", renewal]
    return f"<{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:32]}@acme.example>"


def test_due_links_are_renewed_and_mailed_once_through_a_fresh_page(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """Links ending within the window are renewed; each recipient gets one reminder, the page
    recipient a new page whose download links are the renewed ones (bytes compared)."""
    run = remind_run(s3, tmp_path, smtp.port)
    plan_before = (run.run_dir / PLAN_FILE).read_bytes()
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    assert report.exit_code == 0
    [globex_renewal] = run.renewals("globex")
    [initech_renewal] = run.renewals("initech")
    assert {(s.recipient, s.action, s.renewal) for s in report.steps} == {
        ("globex", "renewed", globex_renewal.name),
        ("initech", "renewed", initech_renewal.name),
    }
    reminders = _reminders(smtp)
    assert sorted(m.rcpt_tos for m in reminders) == [
        ("finance@globex.example",),
        ("it@initech.example",),
    ]
    [to_globex] = [m for m in reminders if m.rcpt_tos == ("finance@globex.example",)]
    message = to_globex.parsed()
    assert message["Subject"] == "Reminder: Q3 reports"
    assert message["Message-ID"] == _reminder_id(run, "globex", globex_renewal.name)
    text = _text(to_globex)
    assert "renewed" in text
    renewed_rows = run.bundle(globex_renewal)["links"]
    end = min(row["expires_at"] for row in renewed_rows)
    assert end[:16].replace("T", " ") + " UTC" in text  # says until when
    [page_url] = _urls(text)
    page = fetch(page_url).decode("utf-8")
    links = [html.unescape(u) for u in _DOWNLOAD.findall(page)]
    assert sorted(links) == sorted(row["url"] for row in renewed_rows)
    # A renewal signed in the run's second may repeat a URL; the page is always a new one.
    assert page_url != run.bundle(run.folder("globex") / "links.json")["header"]["page_url"]
    for row in renewed_rows:
        assert fetch(row["url"]) == FILES[row["key"]]
    stored = [e for e in audit_events(run.run_dir) if e["event"] == "page_stored"]
    assert stored[-1]["key"] == urlsplit(page_url).path.split("/", 2)[2]
    assert stored[-1]["sha256"] == hashlib.sha256(page.encode()).hexdigest()
    # initech's mail holds its renewed links themselves (delivery: links).
    [to_initech] = [m for m in reminders if m.rcpt_tos == ("it@initech.example",)]
    initech_rows = run.bundle(initech_renewal)["links"]
    assert sorted(_urls(_text(to_initech))) == sorted(row["url"] for row in initech_rows)
    lines = [(d.recipient, d.kind, d.renewal, d.status) for d in read_ledger(run.run_dir)]
    assert ("globex", "reminder", globex_renewal.name, "sent") in lines
    assert ("initech", "reminder", initech_renewal.name, "sent") in lines
    assert (run.run_dir / PLAN_FILE).read_bytes() == plan_before


def test_links_outside_the_window_are_left_alone(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A window that ends before the earliest link: nothing renewed, nothing mailed."""
    run = remind_run(s3, tmp_path, smtp.port)
    sent = len(smtp.mailbox.messages)
    report = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT)
    assert report.exit_code == 0
    assert {s.action for s in report.steps} == {"not due"}
    assert run.renewals("globex") == run.renewals("initech") == []
    assert len(smtp.mailbox.messages) == sent


def test_a_second_remind_sends_and_renews_nothing(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """Right after a remind, another (its window short of the renewed links) renews
    nothing and mails nothing: each renewal has had its reminder."""
    run = remind_run(s3, tmp_path, smtp.port)
    remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    sent = len(smtp.mailbox.messages)
    renewals = run.renewals("globex") + run.renewals("initech")
    report = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT)
    assert report.exit_code == 0
    assert {s.action for s in report.steps} == {"already reminded"}
    assert run.renewals("globex") + run.renewals("initech") == renewals
    assert len(smtp.mailbox.messages) == sent


def test_a_renewal_whose_mail_failed_is_mailed_once_next_time(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """The server refuses with 421 throughout the first remind (exit 1, renewal kept); the
    next remind, with a working server and nothing due, mails that renewal exactly once."""
    run = remind_run(s3, tmp_path, smtp.port)
    sent = len(smtp.mailbox.messages)
    smtp.mailbox.data_replies = ["421 4.3.0 try again later"] * 100
    failed = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    assert failed.exit_code == 1
    assert {o.recipient for o in failed.failed} == {"globex", "initech"}
    assert len(smtp.mailbox.messages) == sent
    [renewal] = run.renewals("globex")
    smtp.mailbox.data_replies = []
    report = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT)
    assert report.exit_code == 0
    assert run.renewals("globex") == [renewal]
    assert {(s.recipient, s.action) for s in report.steps} == {
        ("globex", "to remind"),
        ("initech", "to remind"),
    }
    again = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT)
    assert again.exit_code == 0
    reminders = _reminders(smtp)
    assert len(reminders) == 2
    [to_globex] = [m for m in reminders if m.rcpt_tos == ("finance@globex.example",)]
    assert to_globex.parsed()["Message-ID"] == _reminder_id(run, "globex", renewal.name)
    [page_url] = _urls(_text(to_globex))
    page = fetch(page_url).decode("utf-8")
    assert sorted(html.unescape(u) for u in _DOWNLOAD.findall(page)) == sorted(
        row["url"] for row in run.bundle(renewal)["links"]
    )


def test_a_manual_renewal_gets_its_reminder(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A renewal made by ``sharebatch renew`` is the current bundle: remind mails it once."""
    run = remind_run(s3, tmp_path, smtp.port)
    renewed = invoke("renew", str(run.folder("globex")), "--within", "100h")
    assert renewed.exit_code == 0, renewed.stderr
    [renewal] = run.renewals("globex")
    report = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT, only=["globex"])
    assert [(s.recipient, s.action, s.renewal) for s in report.steps] == [
        ("globex", "to remind", renewal.name)
    ]
    [reminder] = _reminders(smtp)
    assert reminder.parsed()["Message-ID"] == _reminder_id(run, "globex", renewal.name)


def test_a_dry_run_renews_stores_and_sends_nothing(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """--dry-run says which bundles are due and writes no renewal and sends no mail."""
    run = remind_run(s3, tmp_path, smtp.port)
    sent = len(smtp.mailbox.messages)
    events = len(audit_events(run.run_dir))
    report = remind(run.run_dir, within=run.window(HOUR), dry_run=True)
    assert report.exit_code == 0
    assert {(s.recipient, s.action) for s in report.steps} == {
        ("globex", "would renew"),
        ("initech", "would renew"),
    }
    assert run.renewals("globex") == run.renewals("initech") == []
    assert len(smtp.mailbox.messages) == sent
    assert len(audit_events(run.run_dir)) == events


def test_a_recipient_never_notified_is_not_reminded(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A bundle whose first mail was never sent gets no reminder and no renewal: notify
    (and its approval) comes first; the report names it."""
    run = remind_run(s3, tmp_path, smtp.port, notified=False)
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    assert report.exit_code == 0
    assert {(s.recipient, s.action) for s in report.steps} == {
        ("globex", "not notified"),
        ("initech", "not notified"),
    }
    assert run.renewals("globex") == []
    assert smtp.mailbox.messages == []
    assert json.loads((run.run_dir / PLAN_FILE).read_text())["run_id"] == run.run_dir.name


def test_a_second_remind_of_the_same_run_waits_its_turn(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """While one remind holds the run's remind lock, another is refused (exit 75) and
    renews and sends nothing."""
    run = remind_run(s3, tmp_path, smtp.port)
    sent = len(smtp.mailbox.messages)
    with remind_lock(run.run_dir), pytest.raises(RunLocked, match="another remind") as caught:
        remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    assert caught.value.exit_code == 75
    assert run.renewals("globex") == run.renewals("initech") == []
    assert len(smtp.mailbox.messages) == sent


def test_a_file_posing_as_a_renewal_is_not_mailed(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A renewal-named file the run's audit log does not record (here initech's bundle copied
    into globex's folder) is never mailed: that entry fails, named, exit 1."""
    run = remind_run(s3, tmp_path, smtp.port)
    sent = len(smtp.mailbox.messages)
    forged = run.folder("globex") / "links.renewed-99991231T000000000Z-ffff.json"
    forged.write_bytes((run.folder("initech") / "links.json").read_bytes())
    report = remind(run.run_dir, within=run.window(-HOUR), retry=NO_WAIT)
    assert report.exit_code == 1
    [step] = [s for s in report.steps if s.recipient == "globex"]
    assert (step.action, step.renewal) == ("failed", forged.name)
    assert "not a renewal the run's audit log records" in step.detail
    assert len(smtp.mailbox.messages) == sent


def test_reminders_to_several_recipients_are_in_flight_at_once(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """With --concurrency 2, the reminders to globex and initech (each its own renewal) are
    handed to the server at the same time: the server sees two messages in DATA at once."""
    # The client outwaits the server's meeting: a timed-out first try retried beside its own
    # stale DATA would also make two at once.
    run = remind_run(s3, tmp_path, smtp.port, timeout="60s")
    smtp.mailbox.parallel = 2
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT, concurrency=2)
    assert report.exit_code == 0
    assert smtp.mailbox.peak == 2
    [globex_renewal] = run.renewals("globex")
    [initech_renewal] = run.renewals("initech")
    reminders = _reminders(smtp)
    assert len(reminders) == 2
    ids = {m.rcpt_tos: m.parsed()["Message-ID"] for m in reminders}
    assert ids == {
        ("finance@globex.example",): _reminder_id(run, "globex", globex_renewal.name),
        ("it@initech.example",): _reminder_id(run, "initech", initech_renewal.name),
    }
    lines = {(d.recipient, d.kind, d.renewal, d.status) for d in read_ledger(run.run_dir)}
    assert {
        ("globex", "reminder", globex_renewal.name, "sent"),
        ("initech", "reminder", initech_renewal.name, "sent"),
    } <= lines
    sent = [e for e in audit_events(run.run_dir) if e["event"] == "mail_sent"]
    assert {(e["recipient"], e["renewal"]) for e in sent if e["kind"] == "reminder"} == {
        ("globex", globex_renewal.name),
        ("initech", initech_renewal.name),
    }
