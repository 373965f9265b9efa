"""The review gate in ``notify``: with ``require_approval``, only approved, unchanged bundles
are mailed; the rest are named with why, and the exit code is 1."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.delivery.approvals import approve
from sharebatch.delivery.notify import notify
from sharebatch.delivery.smtp import Retry
from sharebatch.run.delivery_plan import DeliveryEntry
from tests.support.delivery_run import (
    FILES,
    DeliveryRun,
    delivery_run,
    edit_plan,
    notify_manifest,
    settings,
)
from tests.support.quarterly import BUCKET, QuarterlyRun
from tests.support.smtp import Server

NO_WAIT = Retry(tries=2, backoff=lambda attempt: 0.0)


def gated(quarterly: QuarterlyRun, smtp: Server) -> DeliveryRun:
    return delivery_run(quarterly, lambda job, r: settings(smtp.port, require_approval=True))


def test_notify_mails_only_approved_bundles(quarterly: QuarterlyRun, smtp: Server) -> None:
    """globex approved is sent; initech, never approved, is held as "not approved", exit 1."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice", only=["globex"])
    report = notify(run.run_dir, retry=NO_WAIT)
    assert [(o.recipient, o.status) for o in report.outcomes] == [("globex", "sent")]
    assert report.held == (("q3/initech", "not approved"),)
    assert report.exit_code == 1
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [("globex@partners.example",)]


def test_a_bundle_changed_since_approval_is_held(quarterly: QuarterlyRun, smtp: Server) -> None:
    """Both approved, then initech's links.json rewritten: it is held, "changed since
    approval"; --resend does not get past the gate either."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice")
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    bundle.write_bytes(bundle.read_bytes() + b"\n")
    report = notify(run.run_dir, retry=NO_WAIT, resend=["initech"])
    assert [(o.recipient, o.status) for o in report.outcomes] == [("globex", "sent")]
    assert report.held == (("q3/initech", "changed since approval"),)
    assert report.exit_code == 1
    assert len(smtp.mailbox.messages) == 1


def test_a_bundle_already_sent_is_not_held_again(quarterly: QuarterlyRun, smtp: Server) -> None:
    """After both were approved and mailed, a changed bundle is not "held": nothing would be
    sent anyway, so a second notify (cron) exits 0."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice")
    assert notify(run.run_dir, retry=NO_WAIT).exit_code == 0
    bundle = run.run_dir / "q3" / "initech" / "links.json"
    bundle.write_bytes(bundle.read_bytes() + b"\n")
    again = notify(run.run_dir, retry=NO_WAIT)
    assert again.held == () and again.exit_code == 0
    assert {o.status for o in again.outcomes} == {"already sent"}
    assert len(smtp.mailbox.messages) == 2


def test_a_dry_run_writes_every_message_and_names_the_held(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """--dry-run is for reviewing before approval: every message is written, the ones that
    would be held are named; nothing is sent, exit 0."""
    run = gated(quarterly, smtp)
    report = notify(run.run_dir, dry_run=True)
    assert sorted(o.recipient for o in report.outcomes if o.status == "written") == [
        "globex",
        "initech",
    ]
    assert report.held == (("q3/globex", "not approved"), ("q3/initech", "not approved"))
    assert report.exit_code == 0
    assert smtp.mailbox.messages == []


def test_notify_on_the_command_line_names_the_held(quarterly: QuarterlyRun, smtp: Server) -> None:
    """sharebatch notify: each held bundle on stderr with why and the command to approve it,
    the closing line names them, exit 1."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice", only=["globex"])
    result = CliRunner().invoke(app, ["notify", str(run.run_dir)])
    assert result.exit_code == 1, result.stderr
    assert (
        f"sharebatch: q3/initech: held: not approved (sharebatch approve {run.run_dir})"
        in result.stderr
    )
    assert "held: q3/initech" in result.stderr.splitlines()[-1]
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["sent", "q3/globex"]]


def test_run_notify_stops_when_approval_is_pending(quarterly: QuarterlyRun, smtp: Server) -> None:
    """run --notify with require_approval: the run succeeds, nobody is mailed, stderr says
    approval is pending with the command to give it; exit 0 (nothing failed)."""
    quarterly.s3.bucket(BUCKET, FILES)
    manifest = notify_manifest(
        quarterly.folder, lambda job, r: settings(smtp.port, require_approval=True)
    )
    out = quarterly.folder / "out"
    args = ["run", str(manifest), "--out", str(out), "--endpoint-url", quarterly.s3.endpoint]
    result = CliRunner().invoke(app, [*args, "--notify"])
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.splitlines()[0])
    assert run_dir.parent == out
    assert f"approval pending: sharebatch approve {run_dir}" in result.stderr
    assert smtp.mailbox.messages == []
    assert not (run_dir / "deliveries.jsonl").exists()


def test_a_dry_run_on_the_command_line_says_what_would_be_held(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """notify --dry-run: both .eml written (stdout), each "would be held" on stderr, exit 0."""
    run = gated(quarterly, smtp)
    result = CliRunner().invoke(app, ["notify", str(run.run_dir), "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["written", "written"]
    assert "sharebatch: q3/globex: would be held: not approved" in result.stderr
    assert "would be held: q3/globex, q3/initech" in result.stderr.splitlines()[-1]


def test_addresses_edited_after_approval_are_held(quarterly: QuarterlyRun, smtp: Server) -> None:
    """Both approved, then globex's addresses edited in delivery.json: globex is held,
    "changed since approval", and the new address gets nothing."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice")
    run = edit_plan(
        run,
        lambda e: replace(e, addresses=("other@evil.example",)) if e.recipient == "globex" else e,
    )
    report = notify(run.run_dir, retry=NO_WAIT)
    assert report.held == (("q3/globex", "changed since approval"),)
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [("initech@partners.example",)]


def test_turning_the_gate_off_in_delivery_json_is_caught(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """Both approved, then require_approval set false and the subject changed in
    delivery.json: the run has approvals, so its entries stay gated and both are held."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice")

    def ungate(entry: DeliveryEntry) -> DeliveryEntry:
        assert entry.settings is not None
        off = replace(entry.settings, require_approval=False, subject="Pay this invoice")
        return replace(entry, settings=off)

    edit_plan(run, ungate)
    report = notify(run.run_dir, retry=NO_WAIT)
    assert report.held == (
        ("q3/globex", "changed since approval"),
        ("q3/initech", "changed since approval"),
    )
    assert smtp.mailbox.messages == []


def test_an_approval_without_an_entry_digest_counts_as_changed(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """An approvals.jsonl line written before entry digests existed no longer approves: the
    plan's addresses and settings it covered are unknown."""
    run = gated(quarterly, smtp)
    approve(run.run_dir, by="alice", only=["globex"])
    path = run.run_dir / "approvals.jsonl"
    [line] = [json.loads(text) for text in path.read_text().splitlines()]
    del line["entry_sha256"]
    path.write_text(json.dumps(line) + "\n")
    report = notify(run.run_dir, retry=NO_WAIT)
    assert report.held == (
        ("q3/globex", "changed since approval"),
        ("q3/initech", "not approved"),
    )
    assert smtp.mailbox.messages == []
