"""kill -9 in the middle of ``sharebatch notify`` (a real subprocess), then ``notify`` again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict

import pytest

from sharebatch.delivery.ledger import Delivery, Ledger, read_ledger
from sharebatch.delivery.notify import notify
from sharebatch.delivery.smtp import Retry
from tests.support.delivery_run import bulk_job, delivery_run, settings
from tests.support.quarterly import QuarterlyRun
from tests.support.smtp import Server


def test_a_killed_notify_sends_each_message_once_or_twice_with_one_message_id(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """The server holds its answer to the 5th message until the process is killed; a second
    notify then sends the rest: every recipient has one or two messages, a duplicate carries
    the same Message-ID, and the ledger holds whole lines only."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), extra_jobs=bulk_job(10))
    addresses = {a for e in run.plan.entries for a in e.addresses}
    assert len(addresses) == 12
    smtp.mailbox.hold_at = 5
    command = [sys.executable, "-m", "sharebatch", "notify", str(run.run_dir), "--concurrency", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wake_when_it_ends() -> None:
        """A notify that dies early fails the test at once, not after waiting for the 5th."""
        process.wait()
        smtp.mailbox.held.set()

    watcher = threading.Thread(target=wake_when_it_ends)
    watcher.start()
    try:
        assert smtp.mailbox.held.wait(timeout=60), "the 5th message never arrived"
        assert process.poll() is None, f"notify exited {process.returncode} before the 5th"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    finally:
        process.kill()
        watcher.join()
    assert process.returncode == -signal.SIGKILL
    smtp.mailbox.hold_at = None
    smtp.mailbox.release.set()
    ledger = (run.run_dir / "deliveries.jsonl").read_bytes()
    before = len(ledger.splitlines())
    assert before < 12
    assert ledger == b"" or ledger.endswith(b"\n")
    report = notify(run.run_dir, retry=Retry(tries=2, backoff=lambda attempt: 0.0))
    assert report.exit_code == 0
    by_address: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for message in smtp.mailbox.messages:
        [address] = message.rcpt_tos
        counts[address] += 1
        by_address[address].add(str(message.parsed()["Message-ID"]))
    assert set(counts) == addresses
    assert all(1 <= n <= 2 for n in counts.values()), counts
    assert 2 in counts.values()  # the held message went twice: the crash case was exercised
    assert all(len(ids) == 1 for ids in by_address.values()), by_address
    lines = (run.run_dir / "deliveries.jsonl").read_text().splitlines(keepends=True)
    assert all(line.endswith("\n") and json.loads(line)["status"] == "sent" for line in lines)
    sent = {(d.job, d.recipient) for d in read_ledger(run.run_dir)}
    assert sent == {e.key for e in run.plan.entries}
    assert len(lines) == 12
    events = [json.loads(line) for line in (run.run_dir / "audit.jsonl").read_text().splitlines()]
    logged = Counter(e["message_id"] for e in events if e["event"] == "mail_sent")
    # Every message the ledger has has its event; one killed between its event and its line
    # went twice and has two, never more than the server received.
    assert set(logged) == {json.loads(line)["message_id"] for line in lines}
    received = Counter(str(m.parsed()["Message-ID"]) for m in smtp.mailbox.messages)
    assert all(n <= received[message_id] for message_id, n in logged.items()), logged


def test_each_mail_event_is_on_disk_before_its_ledger_line(
    quarterly: QuarterlyRun, smtp: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a ledger line is written, its mail_sent event is already in audit.jsonl: a kill -9
    between the two can leave an event for a message that goes again, never a message the
    ledger counts as sent without its event."""
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), extra_jobs=bulk_job(2))
    seen_first: dict[str, bool] = {}
    append = Ledger.append

    async def checked(self: Ledger, delivery: Delivery) -> None:
        audit_log = (run.run_dir / "audit.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in audit_log]
        seen_first[delivery.message_id] = any(
            e["event"] == "mail_sent" and e["message_id"] == delivery.message_id for e in events
        )
        await append(self, delivery)

    monkeypatch.setattr(Ledger, "append", checked)
    report = notify(run.run_dir, retry=Retry(tries=1, backoff=lambda attempt: 0.0))
    assert report.exit_code == 0
    assert len(seen_first) == 4
    assert all(seen_first.values()), seen_first
