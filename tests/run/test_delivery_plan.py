"""Tests for sharebatch.run.delivery_plan: what a run hands to delivery, read back as written."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sharebatch.errors import LinkError
from sharebatch.models import NotifySettings, SmtpServer, Webhook
from sharebatch.run.delivery_plan import (
    DeliveryEntry,
    DeliveryPlan,
    StoredPage,
    read_plan,
    write_plan,
)

SETTINGS = NotifySettings(
    smtp=SmtpServer(host="127.0.0.1", port=2525, security="none", username="reports"),
    sender="Acme Reports <reports@acme.example>",
    subject="2026-Q3 reports for Globex",
    reply_to="ops@acme.example",
    webhook=Webhook(url="http://127.0.0.1:9/hook", format="slack"),
)


def plan() -> DeliveryPlan:
    return DeliveryPlan(
        run_id="20261002T093000Z-abc123",
        entries=(
            DeliveryEntry(
                job="q3",
                recipient="globex",
                name="Globex \u202eCorp",
                addresses=("finance@globex.example", "audit@globex.example"),
                notify=True,
                settings=SETTINGS,
                bundle="q3/globex/links.json",
                page=StoredPage(
                    key="_p/abc.html", sha256="0" * 64, expires_at="2026-10-09T09:30:00Z"
                ),
                template_text="Hello {recipient.name}",
            ),
            DeliveryEntry(
                job="q3",
                recipient="initech",
                name=None,
                addresses=(),
                notify=False,
                settings=None,
                bundle="q3/initech/links.json",
            ),
        ),
    )


def test_a_plan_reads_back_equal_to_what_was_written_and_is_private(tmp_path: Path) -> None:
    """Every field survives the file, and the file is 0600."""
    write_plan(tmp_path, plan())
    assert read_plan(tmp_path) == plan()
    assert stat.S_IMODE((tmp_path / "delivery.json").stat().st_mode) == 0o600


def test_a_run_without_a_plan_reads_as_none(tmp_path: Path) -> None:
    """No delivery.json: the run had no notify settings; that is not an error."""
    assert read_plan(tmp_path) is None


def test_the_webhooks_are_each_distinct_one_once(tmp_path: Path) -> None:
    """Two entries naming the same webhook post once."""
    two = DeliveryPlan("r", (plan().entries[0], plan().entries[0], plan().entries[1]))
    assert two.webhooks() == (SETTINGS.webhook,)


@pytest.mark.parametrize("text", ["{", '{"version": 2}', '{"version": 1, "run_id": "r"}'])
def test_a_damaged_plan_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    """A plan that is not JSON, of another version, or missing fields raises LinkError."""
    (tmp_path / "delivery.json").write_text(text)
    with pytest.raises(LinkError, match=r"delivery\.json"):
        read_plan(tmp_path)


def _smtp(entry: dict[str, Any], **changes: object) -> None:
    entry["settings"]["smtp"].update(changes)


def _settings(entry: dict[str, Any], **changes: object) -> None:
    entry["settings"].update(changes)


EDITS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("settings.smtp.security", lambda e: _smtp(e, host="smtp.example.com", security="none")),
    ("settings.smtp.security", lambda e: _smtp(e, security="bogus")),
    ("settings.smtp.host", lambda e: _smtp(e, host="smtp.example.com/x")),
    ("settings.smtp.port", lambda e: _smtp(e, port="x")),
    ("settings.smtp.port", lambda e: _smtp(e, port=70000)),
    ("settings.smtp.timeout", lambda e: _smtp(e, timeout=-1)),
    ("settings.smtp.password_env", lambda e: _smtp(e, password_env="A B")),
    ("recipient", lambda e: e.update(recipient="../../../escaped/pwn")),
    ("job", lambda e: e.update(job="../q3")),
    ("bundle", lambda e: e.update(bundle="../other/q3/globex/links.json")),
    ("addresses", lambda e: e.update(addresses=["a@globex.example\r\nBcc: x@evil.example"])),
    ("addresses", lambda e: e.update(addresses="finance@globex.example")),
    ("notify", lambda e: e.update(notify="false")),
    ("settings.sender", lambda e: _settings(e, sender="Acme, Inc. <reports@acme.example>")),
    ("settings.reply_to", lambda e: _settings(e, reply_to="ops@acme.example\nBcc: x")),
    ("settings.subject", lambda e: _settings(e, subject="Q3\r\nBcc: x@evil.example")),
    ("settings.delivery", lambda e: _settings(e, delivery="bogus")),
    ("settings.require_approval", lambda e: _settings(e, require_approval="no")),
    ("settings.webhook.url", lambda e: e["settings"]["webhook"].update(url="http://h/t 0ken")),
    ("settings.webhook.format", lambda e: e["settings"]["webhook"].update(format="bogus")),
]


@pytest.mark.parametrize(
    ("field", "edit"), EDITS, ids=[f"{f}-{n}" for n, (f, _) in enumerate(EDITS)]
)
def test_an_edited_plan_is_checked_like_the_manifest(
    tmp_path: Path, field: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    """What the manifest loader refuses is refused in an edited delivery.json too, naming the
    file, the entry and the field, and never showing a webhook URL (it may be a token)."""
    write_plan(tmp_path, plan())
    path = tmp_path / "delivery.json"
    data = json.loads(path.read_text())
    edit(data["entries"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(LinkError) as refused:
        read_plan(tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{path}: entry 1 ")
    assert f", {field}: " in message
    assert "0ken" not in message
