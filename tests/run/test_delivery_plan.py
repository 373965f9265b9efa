"""Tests for sharebatch.run.delivery_plan: what a run hands to delivery, read back as written."""

from __future__ import annotations

import stat
from pathlib import Path

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
