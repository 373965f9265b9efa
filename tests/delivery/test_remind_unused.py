"""``remind --only-unused``: the receipts (usage.json, in the contract's shape) decide who is
reminded; a real run on moto, notified through aiosmtpd on 127.0.0.1.

Windows are computed from the links' real end (``RemindRun.window``), never from a date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sharebatch.delivery.remind import remind
from sharebatch.errors import UsageError
from tests.support.remind_run import FILES, NO_WAIT, RemindRun, remind_run
from tests.support.s3 import S3
from tests.support.smtp import Captured, Server
from tests.support.usage_json import Download, build_usage, iso, write_usage

HOUR = timedelta(hours=1)


def _reminded(smtp: Server) -> list[tuple[str, ...]]:
    found: list[Captured] = [
        m for m in smtp.mailbox.messages if m.parsed()["Subject"].startswith("Reminder: ")
    ]
    return sorted(m.rcpt_tos for m in found)


def _downloads(recipient: str, keys: list[str]) -> list[Download]:
    at = datetime.now(UTC) - HOUR
    return [Download("q3", recipient, key, at) for key in keys]


def test_only_recipients_who_have_not_downloaded_everything_are_reminded(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """globex fetched both files (complete): left alone, neither renewed nor mailed; initech
    fetched one (or only part of the other): renewed and reminded."""
    run = remind_run(s3, tmp_path, smtp.port)
    keys = sorted(FILES)
    downloads = [
        *_downloads("globex", keys),
        Download("q3", "initech", keys[0], datetime.now(UTC) - HOUR),
        Download("q3", "initech", keys[1], datetime.now(UTC) - HOUR, partial=True),
    ]
    usage = build_usage(run.run_dir, downloads, generated_at=datetime.now(UTC))
    write_usage(run.run_dir, usage)
    assert [r["complete"] for r in usage.data["recipients"]] == [True, False]

    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT, only_unused=True)
    assert report.exit_code == 0
    [initech_renewal] = run.renewals("initech")
    assert {(s.recipient, s.action, s.renewal) for s in report.steps} == {
        ("globex", "complete", None),
        ("initech", "renewed", initech_renewal.name),
    }
    assert run.renewals("globex") == []
    assert _reminded(smtp) == [("it@initech.example",)]
    assert report.receipts_at == usage.data["generated_at"]


def test_a_recipient_usage_json_does_not_list_is_reminded(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """No row for initech (usage knew nothing of it): reminded, like an incomplete one."""
    run = remind_run(s3, tmp_path, smtp.port)
    usage = build_usage(
        run.run_dir, _downloads("globex", sorted(FILES)), generated_at=datetime.now(UTC)
    )
    usage.data["recipients"] = [r for r in usage.data["recipients"] if r["recipient"] != "initech"]
    write_usage(run.run_dir, usage)
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT, only_unused=True)
    assert {(s.recipient, s.action) for s in report.steps} == {
        ("globex", "complete"),
        ("initech", "renewed"),
    }
    assert _reminded(smtp) == [("it@initech.example",)]


def test_receipts_older_than_the_newest_renewal_still_count(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """The staleness decision: usage.json made before the last renewal is used, not refused
    ("complete" never turns back to false); its time is reported."""
    run = remind_run(s3, tmp_path, smtp.port)
    before = datetime.now(UTC) - timedelta(minutes=5)
    usage = build_usage(run.run_dir, _downloads("initech", sorted(FILES)), generated_at=before)
    write_usage(run.run_dir, usage)
    remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)  # renews and mails both
    assert len(_reminded(smtp)) == 2
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT, only_unused=True)
    assert report.receipts_at == iso(before)
    actions = {s.recipient: s.action for s in report.steps}
    assert actions == {"globex": "renewed", "initech": "complete"}
    assert len(run.renewals("globex")) == 2 and len(run.renewals("initech")) == 1
    assert _reminded(smtp).count(("finance@globex.example",)) == 2


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (None, "no usage.json: --only-unused needs the run's receipts; run `sharebatch usage"),
        ({"run_id": "20260101T000000Z-0000"}, "is not this run's"),
        ({"recipients": [{"job": "q3", "recipient": "globex", "complete": "yes"}]},
         "recipients[0].complete: expected true or false"),
        ({"recipients": {}}, "recipients: expected a list"),
    ],
)  # fmt: skip
def test_missing_or_foreign_or_malformed_receipts_are_refused(
    s3: S3, tmp_path: Path, smtp: Server, change: dict[str, object] | None, words: str
) -> None:
    """No usage.json, another run's, or one not of the contract's shape: UsageError (exit 2)
    naming the file and what to do; nothing renewed, nothing sent."""
    run = remind_run(s3, tmp_path, smtp.port)
    if change is not None:
        usage = build_usage(run.run_dir, [], generated_at=datetime.now(UTC))
        usage.data.update(change)
        write_usage(run.run_dir, usage)
    sent = len(smtp.mailbox.messages)
    with pytest.raises(UsageError) as caught:
        remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT, only_unused=True)
    assert caught.value.exit_code == 2
    assert str(run.run_dir / "usage.json") in str(caught.value)
    assert words in str(caught.value)
    assert run.renewals("globex") == run.renewals("initech") == []
    assert len(smtp.mailbox.messages) == sent


def test_without_only_unused_usage_json_changes_nothing(
    s3: S3, tmp_path: Path, smtp: Server
) -> None:
    """usage.json saying everyone is complete does not stop a plain remind."""
    run: RemindRun = remind_run(s3, tmp_path, smtp.port)
    downloads = _downloads("globex", sorted(FILES)) + _downloads("initech", sorted(FILES))
    write_usage(run.run_dir, build_usage(run.run_dir, downloads, generated_at=datetime.now(UTC)))
    report = remind(run.run_dir, within=run.window(HOUR), retry=NO_WAIT)
    assert {s.action for s in report.steps} == {"renewed"} and report.receipts_at is None
    assert len(_reminded(smtp)) == 2
