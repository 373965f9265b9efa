"""``sharebatch notify`` and ``run --notify`` on the command line (CliRunner, real servers)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.delivery.ledger import read_ledger
from sharebatch.run.delivery_plan import DeliveryEntry
from tests.support.delivery_run import FILES, delivery_run, edit_plan, notify_manifest, settings
from tests.support.quarterly import BUCKET, MANIFEST, QuarterlyRun
from tests.support.s3 import write_manifest
from tests.support.smtp import Server


def test_notify_sends_then_reports_already_sent(quarterly: QuarterlyRun, smtp: Server) -> None:
    """notify prints one line per message and a count; a second one sends nothing, exit 0."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    first = CliRunner().invoke(app, ["notify", str(run.run_dir)])
    assert first.exit_code == 0, first.stderr
    assert [line.split()[:2] for line in first.stdout.splitlines()] == [
        ["sent", "q3/globex"],
        ["sent", "q3/initech"],
    ]
    assert "2 messages sent" in first.stderr
    second = CliRunner().invoke(app, ["notify", str(run.run_dir)])
    assert second.exit_code == 0
    assert "2 messages already sent" in second.stderr
    assert len(smtp.mailbox.messages) == 2


def test_notify_exits_1_naming_the_failed_recipient(quarterly: QuarterlyRun, smtp: Server) -> None:
    """A refused recipient is named on stderr with the server's reply, exit 1."""
    smtp.mailbox.refuse["initech@partners.example"] = "550 5.1.1 unknown"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    result = CliRunner().invoke(app, ["notify", str(run.run_dir)])
    assert result.exit_code == 1
    assert "sharebatch: q3/initech: failed: initech@partners.example: 550 5.1.1 unknown" in (
        result.stderr
    )
    assert "failed: q3/initech" in result.stderr.splitlines()[-1]


def test_notify_dry_run_and_left_out_on_the_command_line(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """--dry-run lists the .eml files written; a notify: false recipient is said left out."""
    run = delivery_run(
        quarterly, lambda job, r: settings(smtp.port), notify_off=frozenset({"initech"})
    )
    result = CliRunner().invoke(app, ["notify", str(run.run_dir), "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[:3] == [
        "written",
        "q3/globex",
        str(run.run_dir / "outbox" / "globex.eml"),
    ]
    assert "q3/initech: left out (notify: false)" in result.stderr
    assert smtp.mailbox.messages == []


def test_notify_bad_input_is_exit_2(quarterly: QuarterlyRun, smtp: Server) -> None:
    """An unknown --only is exit 2 with the name escaped, nothing sent."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    result = CliRunner().invoke(app, ["notify", str(run.run_dir), "--only", "no\x1b[2Jbody"])
    assert result.exit_code == 2
    assert "--only: no such recipient in run" in result.stderr
    assert result.stderr.rstrip().endswith(": no\\x1b[2Jbody")
    assert smtp.mailbox.messages == []


def test_run_notify_after_a_run_without_notify_settings(quarterly: QuarterlyRun) -> None:
    """run --notify mails right after a run that exited 0: with no notify: settings there is
    no delivery.json, so it says so (exit 2) after the run folder is printed."""
    quarterly({"reports/q3/a.pdf": b"a"})
    manifest = write_manifest(quarterly.folder / "m.yml", MANIFEST)
    out = quarterly.folder / "out2"
    args = ["run", str(manifest), "--out", str(out), "--endpoint-url", quarterly.s3.endpoint]
    result = CliRunner().invoke(app, [*args, "--notify"])
    assert result.exit_code == 2
    assert result.stdout.startswith(str(out))
    assert "no delivery.json" in result.stderr


def test_run_notify_refuses_a_dry_run(quarterly: QuarterlyRun) -> None:
    """--notify with --dry-run is a usage error: a dry run writes no bundle to mail."""
    manifest = write_manifest(quarterly.folder / "m.yml", MANIFEST)
    result = CliRunner().invoke(app, ["run", str(manifest), "--dry-run", "--notify"])
    assert result.exit_code == 2
    assert "--dry-run writes none" in result.stderr


def test_run_notify_mails_right_after_a_run_that_exits_0(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """run --notify on a manifest with notify: the run folder on stdout, then each recipient
    mailed, exit 0."""
    quarterly.s3.bucket(BUCKET, FILES)
    manifest = notify_manifest(quarterly.folder, lambda job, r: settings(smtp.port))
    out = quarterly.folder / "out"
    args = ["run", str(manifest), "--out", str(out), "--endpoint-url", quarterly.s3.endpoint]
    result = CliRunner().invoke(app, [*args, "--notify"])
    assert result.exit_code == 0, result.stderr
    run_dir = Path(result.stdout.splitlines()[0])
    assert run_dir.parent == out
    assert sorted(m.rcpt_tos for m in smtp.mailbox.messages) == [
        ("globex@partners.example",),
        ("initech@partners.example",),
    ]
    assert len(read_ledger(run_dir)) == 2


def test_run_notify_mails_nobody_after_a_failed_run(quarterly: QuarterlyRun, smtp: Server) -> None:
    """A run that exits 1 (a prefix failed) mails nobody and says so."""
    quarterly.s3.bucket(BUCKET, FILES)
    missing = "  - name: lost\n    bucket: no-such-bucket\n    prefixes: [x/]\n" + (
        "    recipients:\n      - id: globex\n"
    )
    manifest = notify_manifest(
        quarterly.folder, lambda job, r: settings(smtp.port), extra_jobs=missing
    )
    args = ["run", str(manifest), "--out", str(quarterly.folder / "out")]
    result = CliRunner().invoke(app, [*args, "--endpoint-url", quarterly.s3.endpoint, "--notify"])
    assert result.exit_code == 1
    assert "the run did not exit 0: nobody was mailed" in result.stderr
    assert smtp.mailbox.messages == []


@pytest.mark.parametrize("args", [[], ["--dry-run"]], ids=["send", "dry-run"])
def test_notify_refuses_an_edited_plan_before_anything(
    quarterly: QuarterlyRun, smtp: Server, tmp_path: Path, args: list[str]
) -> None:
    """A delivery.json edited after the run (a recipient id climbing out of the outbox,
    security "bogus" sending in clear) is exit 2 naming the file and the field: nothing is
    mailed, no .eml written anywhere, no ledger line."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    climb = os.path.relpath(escaped, run.run_dir / "outbox")

    def edit(entry: DeliveryEntry) -> DeliveryEntry:
        if entry.recipient != "globex":
            return entry
        assert entry.settings is not None
        smtp = replace(entry.settings.smtp, security="bogus")  # type: ignore[arg-type]
        bogus = replace(entry.settings, smtp=smtp)
        return replace(entry, recipient=f"{climb}/pwn", settings=bogus)

    edit_plan(run, edit)
    result = CliRunner().invoke(app, ["notify", str(run.run_dir), *args])
    assert result.exit_code == 2
    assert "delivery.json: entry 1 (q3/" in result.stderr
    assert "), recipient: " in result.stderr
    assert smtp.mailbox.messages == []
    assert list(escaped.iterdir()) == []
    assert not (run.run_dir / "outbox").exists()
    assert not (run.run_dir / "deliveries.jsonl").exists()
