"""The ops webhook wired into the commands: ``run`` and ``notify`` post their summaries to the
manifest's ``notify.webhook`` (a local receiver), and ``--strict-webhook`` decides whether a
failing one is exit 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sharebatch.cli import app
from sharebatch.models import Webhook
from tests.support.delivery_run import FILES, delivery_run, notify_manifest, settings
from tests.support.quarterly import BUCKET, QuarterlyRun
from tests.support.smtp import Server
from tests.support.webhook_server import WebhookServer, webhook_server

TOKEN = "token=hook-secret-123"


def _bodies(server: WebhookServer) -> list[dict[str, Any]]:
    for got in server.received:
        text = got.body.decode()
        # Counts and the run folder only: no link of a bundle, no signature, no webhook token.
        assert "http" not in text and "X-Amz-" not in text and "hook-secret" not in text
    return [json.loads(got.body) for got in server.received]


def _run(quarterly: QuarterlyRun, manifest: Path, *more: str) -> Any:
    out = quarterly.folder / "out"
    args = ["run", str(manifest), "--out", str(out), "--endpoint-url", quarterly.s3.endpoint]
    return CliRunner().invoke(app, [*args, *more])


def test_run_notify_posts_the_run_then_the_notify_summary(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """run --notify on a real manifest with a json webhook: the receiver gets the run's
    summary (counts, run folder), then the notify's (2 sent); no link in either."""
    with webhook_server() as server:
        hook = Webhook(f"{server.url}/hooks/ops?{TOKEN}", "json")
        quarterly.s3.bucket(BUCKET, FILES)
        manifest = notify_manifest(
            quarterly.folder, lambda job, r: settings(smtp.port, webhook=hook)
        )
        result = _run(quarterly, manifest, "--notify", "--strict-webhook")
    assert result.exit_code == 0, result.stderr
    run_dir = result.stdout.splitlines()[0]
    ran, notified = _bodies(server)
    assert ran["event"] == "run" and ran["status"] == "ok"
    assert ran["run_folder"] == run_dir
    assert ran["counts"]["bundles"] == 2 and ran["counts"]["links"] == 4
    assert notified["event"] == "notify" and notified["run_folder"] == run_dir
    assert notified["counts"] == {"sent": 2, "failed": 0, "left_out": 0, "held": 0}
    assert len(smtp.mailbox.messages) == 2


def test_notify_posts_held_recipients_in_slack_format(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """sharebatch notify with the review gate: the Slack text names who is held; no link."""
    with webhook_server() as server:
        hook = Webhook(f"{server.url}/services/T/B/x", "slack")
        run = delivery_run(
            quarterly, lambda job, r: settings(smtp.port, webhook=hook, require_approval=True)
        )
        server.received.clear()  # the run's own summary
        result = CliRunner().invoke(app, ["notify", str(run.run_dir)])
    assert result.exit_code == 1
    [body] = _bodies(server)
    assert "0 sent, 0 failed, 0 left out, 2 held for approval" in body["text"]
    assert "Held for approval: q3/globex, q3/initech" in body["text"]
    assert f"Run folder: {run.run_dir}" in body["text"]


def test_a_failing_webhook_is_exit_1_only_with_strict_webhook(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A webhook answering 500 is logged (its host only) and leaves run and notify at exit 0;
    with --strict-webhook each exits 1, having done its work all the same."""
    with webhook_server(500) as server:
        hook = Webhook(f"{server.url}/hooks/ops?{TOKEN}", "json")
        quarterly.s3.bucket(BUCKET, FILES)
        manifest = notify_manifest(
            quarterly.folder, lambda job, r: settings(smtp.port, webhook=hook)
        )
        lax = _run(quarterly, manifest)
        strict = _run(quarterly, manifest, "--strict-webhook")
        run_dir = strict.stdout.splitlines()[0]
        notify_lax = CliRunner().invoke(app, ["notify", run_dir, "--only", "globex"])
        notify_strict = CliRunner().invoke(app, ["notify", run_dir, "--strict-webhook"])
    assert lax.exit_code == 0, lax.stderr
    assert strict.exit_code == 1, strict.stderr
    assert notify_lax.exit_code == 0, notify_lax.stderr
    assert notify_strict.exit_code == 1, notify_strict.stderr
    assert len(smtp.mailbox.messages) == 2  # both mailed: the webhook failed, not the mail
    for result in (lax, strict, notify_lax, notify_strict):
        assert "webhook_failed" in result.stderr
        assert f"webhook {server.url}: answered HTTP 500" in result.stderr
        assert "hook-secret" not in result.stderr
    assert len(server.received) == 4
