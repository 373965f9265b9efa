"""``sharebatch remind`` on the command line (CliRunner, moto and aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from sharebatch.cli import app
from tests.support.remind_run import FILES, remind_run
from tests.support.s3 import S3
from tests.support.smtp import Server
from tests.support.usage_json import Download, build_usage, iso, write_usage


def _seconds(window: timedelta) -> str:
    return f"{int(window.total_seconds())}s"


def test_remind_renews_mails_then_has_nothing_to_do(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """remind prints each recipient's step and its reminder; a second one does nothing."""
    run = remind_run(s3, tmp_path, smtp.port)
    window = _seconds(run.window(timedelta(hours=1)))
    first = CliRunner().invoke(app, ["remind", str(run.run_dir), "--within", window])
    assert first.exit_code == 0, first.stderr
    lines = [line.split()[:2] for line in first.stdout.splitlines()]
    assert lines == [
        ["renewed", "q3/globex"],
        ["renewed", "q3/initech"],
        ["sent", "q3/globex"],
        ["sent", "q3/initech"],
    ]
    assert "2 reminders sent" in first.stderr
    assert "http" not in first.stdout  # no link is printed
    assert "X-Amz-Signature" not in first.stderr
    later = _seconds(run.window(-timedelta(hours=1)))
    second = CliRunner().invoke(app, ["remind", str(run.run_dir), "--within", later])
    assert second.exit_code == 0, second.stderr
    assert [line.split()[0] for line in second.stdout.splitlines()] == ["already", "already"]
    assert "0 reminders sent" in second.stderr


def test_remind_exits_1_naming_what_failed(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A server refusing initech's address: globex is reminded, initech named, exit 1."""
    run = remind_run(s3, tmp_path, smtp.port)
    smtp.mailbox.refuse["it@initech.example"] = "550 5.1.1 no such user"
    window = _seconds(run.window(timedelta(hours=1)))
    result = CliRunner().invoke(app, ["remind", str(run.run_dir), "--within", window])
    assert result.exit_code == 1
    assert "q3/initech: reminder failed: it@initech.example: 550" in result.stderr
    assert "failed: q3/initech" in result.stderr


def test_remind_refuses_bad_input_with_exit_2(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """A bad --within, an unknown --only (shown escaped) or a folder without delivery.json:
    exit 2, named."""
    run = remind_run(s3, tmp_path, smtp.port)
    bad = CliRunner().invoke(app, ["remind", str(run.run_dir), "--within", "soon"])
    assert bad.exit_code == 2 and "--within" in bad.stderr
    unknown = ["remind", str(run.run_dir), "--within", "48h", "--only", "no\x1b[2Jbody"]
    result = CliRunner().invoke(app, unknown)
    assert result.exit_code == 2 and "--only: no such recipient" in result.stderr
    assert "no\\x1b[2Jbody" in result.stderr
    assert "\x1b" not in result.stderr  # an outsider's text is shown escaped
    empty = CliRunner().invoke(app, ["remind", str(tmp_path), "--within", "48h"])
    assert empty.exit_code == 2 and "delivery.json" in empty.stderr


def test_only_unused_on_the_command_line(s3: S3, tmp_path: Path, smtp: Server) -> None:
    """--only-unused without usage.json: exit 2 saying to run usage first; with it, the
    complete recipient's line says so and the summary says how old the receipts are."""
    run = remind_run(s3, tmp_path, smtp.port)
    window = _seconds(run.window(timedelta(hours=1)))
    args = ["remind", str(run.run_dir), "--within", window, "--only-unused"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert f"run `sharebatch usage {run.run_dir} --access-logs SOURCE` first" in refused.stderr
    made = datetime.now(UTC)
    at = made - timedelta(hours=1)
    downloads = [Download("q3", "globex", key, at) for key in FILES]
    write_usage(run.run_dir, build_usage(run.run_dir, downloads, generated_at=made))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    lines = [line.split()[:2] for line in result.stdout.splitlines()]
    assert lines == [["complete", "q3/globex"], ["renewed", "q3/initech"], ["sent", "q3/initech"]]
    assert f"receipts as of {iso(made)}" in result.stderr
