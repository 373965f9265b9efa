"""The ops webhook: a run's or a notify's summary posted to a local receiver, and its failures."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from sharebatch import audit
from sharebatch.audit import capture
from sharebatch.delivery.webhook import (
    NotifyOutcome,
    announce,
    clean,
    endpoint,
    notify_summary,
    post_summary,
    run_summary,
)
from sharebatch.errors import DeliveryError
from sharebatch.models import RunReport, Webhook
from tests.support.approval_run import FILES
from tests.support.quarterly import QuarterlyRun
from tests.support.webhook_server import webhook_server

SECRET_QUERY = "token=hook-secret-123"

MISSING_JOB = """\
  - name: other
    bucket: missing-bucket
    prefixes: [x/]
    recipients:
      - id: carol
"""


def summary_of(run_dir: Path) -> RunReport:
    report: RunReport = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return report


@pytest.fixture
def partial_run(quarterly: QuarterlyRun) -> Path:
    """A real run on moto: the quarterly job written, one job on a missing bucket failed."""
    run_dir = quarterly(FILES, MISSING_JOB, exit_code=1)
    audit.reset()  # the CLI pointed log lines at its own (now closed) stderr
    return run_dir


def assert_no_link(body: str) -> None:
    assert "http" not in body
    assert "X-Amz-Signature" not in body and "Signature=" not in body
    assert "hook-secret" not in body


def test_run_summary_counts_failures_and_folder_without_a_link(partial_run: Path) -> None:
    """The run's summary holds its counts, each failure and the run folder; no URL at all."""
    summary = run_summary(summary_of(partial_run), partial_run)
    assert summary["event"] == "run" and summary["status"] == "partial"
    assert summary["run_id"] == partial_run.name
    assert summary["run_folder"] == str(partial_run)
    assert summary["counts"]["recipients"] == 3
    assert summary["counts"]["bundles"] == 2
    rows = [
        json.loads((partial_run / "q3" / r / "links.json").read_text())["links"]
        for r in ("globex", "initech")
    ]
    assert summary["counts"]["links"] == sum(map(len, rows)) == 4
    assert summary["counts"]["failures"] == 1
    assert [f["where"] for f in summary["failures"]] == ["missing-bucket/x/"]
    assert summary["failures"][0]["error"] == "NoSuchBucket"
    assert_no_link(json.dumps(summary))


def test_json_format_posts_the_summary_object(partial_run: Path) -> None:
    """format json: the body is the summary itself, as JSON, with a JSON content type."""
    summary = run_summary(summary_of(partial_run), partial_run)
    with webhook_server() as server:
        hook = Webhook(f"{server.url}/hooks/ops?{SECRET_QUERY}", "json")
        asyncio.run(post_summary(hook, summary))
    [got] = server.received
    assert got.path == f"/hooks/ops?{SECRET_QUERY}"
    assert got.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(got.body) == summary
    assert_no_link(got.body.decode())


def test_slack_format_posts_one_readable_text(partial_run: Path) -> None:
    """format slack: {"text": ...}, one message naming status, counts, failure and folder."""
    summary = run_summary(summary_of(partial_run), partial_run)
    with webhook_server() as server:
        asyncio.run(post_summary(Webhook(f"{server.url}/services/T/B/x", "slack"), summary))
    [got] = server.received
    body = json.loads(got.body)
    assert list(body) == ["text"]
    text = body["text"]
    assert text.splitlines()[0] == f"sharebatch run {partial_run.name}: partial"
    assert "2 jobs, 3 recipients, 2 bundles, 4 links" in text
    assert "1 failure" in text and "missing-bucket/x/: NoSuchBucket" in text
    assert f"Run folder: {partial_run}" in text
    assert_no_link(got.body.decode())


def test_notify_summary_names_failed_recipients_in_both_formats(tmp_path: Path) -> None:
    """A notify's summary: sent, failed, left out, held, and who failed; Slack text escaped."""
    outcome = NotifyOutcome(
        run_id="20261002T093000Z-abc1",
        run_dir=tmp_path,
        sent=3,
        failed=1,
        left_out=2,
        failed_recipients=("q3/<globex>",),
        held=("q3/initech",),
    )
    summary = notify_summary(outcome)
    assert summary["counts"] == {"sent": 3, "failed": 1, "left_out": 2, "held": 1}
    assert summary["status"] == "partial"
    assert notify_summary(NotifyOutcome("r", tmp_path, 0, 1, 0, ("q3/a",)))["status"] == "failed"
    assert notify_summary(NotifyOutcome("r", tmp_path, 2, 0, 1))["status"] == "ok"
    with webhook_server() as server:
        asyncio.run(post_summary(Webhook(server.url, "slack"), summary))
        asyncio.run(post_summary(Webhook(server.url, "json"), summary))
    slack, plain = (json.loads(r.body) for r in server.received)
    assert plain == summary and plain["failed_recipients"] == ["q3/<globex>"]
    assert "3 sent, 1 failed, 2 left out, 1 held for approval" in slack["text"]
    assert "Failed: q3/&lt;globex&gt;" in slack["text"]
    assert "Held for approval: q3/initech" in slack["text"]


def test_a_refusal_raises_naming_host_and_status_never_the_query(partial_run: Path) -> None:
    """A 500 is a DeliveryError naming scheme://host:port and the status, not path or token."""
    summary = run_summary(summary_of(partial_run), partial_run)
    with webhook_server(500) as server:
        hook = Webhook(f"{server.url}/hooks/T000/B000?{SECRET_QUERY}", "json")
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(post_summary(hook, summary))
    message = str(caught.value)
    assert message == f"webhook {server.url}: answered HTTP 500"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_receiver_that_never_answers_is_a_timeout(tmp_path: Path) -> None:
    """No answer within the timeout: DeliveryError saying so, once the request arrived."""
    summary = notify_summary(NotifyOutcome("r", tmp_path, 1, 0, 0))
    with webhook_server(hold=True) as server:
        hook = Webhook(f"{server.url}/x?{SECRET_QUERY}", "json")
        with pytest.raises(DeliveryError, match=r"no answer within 1 s") as caught:
            asyncio.run(post_summary(hook, summary, timeout=1))
        assert server.arrived.wait(10)
    assert SECRET_QUERY not in str(caught.value) and "/x" not in str(caught.value)


def test_nobody_listening_is_a_connection_error(tmp_path: Path) -> None:
    """A refused connection: DeliveryError naming the host and port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    summary = notify_summary(NotifyOutcome("r", tmp_path, 1, 0, 0))
    with pytest.raises(DeliveryError, match=rf"webhook http://127\.0\.0\.1:{port}: ") as caught:
        asyncio.run(post_summary(Webhook(f"http://127.0.0.1:{port}/h?{SECRET_QUERY}"), summary))
    assert SECRET_QUERY not in str(caught.value)


def test_a_redirect_is_a_refusal_not_followed(tmp_path: Path) -> None:
    """A 302 is not followed (a POST would turn into a GET elsewhere): DeliveryError."""
    summary = notify_summary(NotifyOutcome("r", tmp_path, 1, 0, 0))
    with webhook_server(302) as server, pytest.raises(DeliveryError, match="answered HTTP 302"):
        asyncio.run(post_summary(Webhook(server.url, "json"), summary))
    assert len(server.received) == 1


def test_announce_posts_to_every_webhook_and_logs_each_failure(tmp_path: Path) -> None:
    """One failing webhook does not stop the others; its error is logged and returned."""
    summary = notify_summary(NotifyOutcome("r", tmp_path, 1, 0, 0))
    with webhook_server() as good, webhook_server(503) as bad, capture() as events:
        hooks = (Webhook(f"{bad.url}/?{SECRET_QUERY}", "slack"), Webhook(good.url, "json"))
        errors = asyncio.run(announce(hooks, summary))
    assert errors == (f"webhook {bad.url}: answered HTTP 503",)
    assert len(good.received) == 1 and len(bad.received) == 1
    failed = [e for e in events if e["event"] == "webhook_failed"]
    assert [e["endpoint"] for e in failed] == [bad.url]
    assert SECRET_QUERY not in json.dumps(events)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "https://hooks.slack.com:443"),
        ("http://user:pw@Example.COM/x?sig=1", "http://example.com:80"),
        ("http://[::1]:8080/p", "http://[::1]:8080"),
    ],
)
def test_endpoint_shows_only_scheme_host_and_port(url: str, shown: str) -> None:
    """Webhook URLs can carry secrets in their path, query or user part: none is shown."""
    assert endpoint(url) == shown


def test_a_webhook_repr_hides_its_url() -> None:
    """A traceback or debug print of the settings never shows the webhook's token."""
    hook = Webhook("https://hooks.slack.com/services/T0/B0/hook-secret-123", "slack")
    assert "hook-secret" not in repr(hook) and "slack" in repr(hook)


def test_urls_in_outside_text_are_cut_to_their_host() -> None:
    """An error message quoting an endpoint or a signed URL keeps only the host."""
    text = 'Could not connect to "https://s3.eu-west-1.amazonaws.com/b?X-Amz-Signature=ab12"'
    assert clean(text) == 'Could not connect to "s3.eu-west-1.amazonaws.com"'
    assert clean("AccessDenied: Signature=abc in a message") == "[redacted]"
