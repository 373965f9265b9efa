"""Building messages: all before any is sent; addresses parsed once per mailing, and still
checked for each message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sharebatch.delivery.message import Content, Letter, build_message
from sharebatch.delivery.notify import notify
from sharebatch.delivery.smtp import Retry
from sharebatch.errors import LinkError
from tests.support.delivery_run import delivery_run, edit_plan, settings
from tests.support.quarterly import QuarterlyRun
from tests.support.smtp import Server

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def letter(recipient: str, **changes: object) -> Letter:
    fields: dict[str, object] = {
        "run_id": "r1",
        "job": "q3",
        "recipient": recipient,
        "name": None,
        "addresses": (f"{recipient}@partners.example",),
        "sender": "Acme Reports <reports@acme.example>",
        "reply_to": "ops@acme.example",
        "subject": "Q3",
        "delivery": "page",
        "where": f"delivery.json: q3/{recipient}",
    }
    return Letter(**(fields | changes))  # type: ignore[arg-type]


def test_a_bad_reply_to_is_refused_for_every_message_not_only_the_first() -> None:
    """The parsed address is remembered, the refusal too: each entry's error names it."""
    content = Content(page_url="https://example.invalid/page")
    for recipient in ("globex", "initech"):
        bad = letter(recipient, reply_to="ops@acme.example, other@acme.example")
        with pytest.raises(LinkError, match=f"q3/{recipient}: reply_to: .* is not one mail"):
            build_message(bad, content, bad.addresses, NOW)


def test_messages_sharing_a_sender_each_get_their_own_recipient() -> None:
    """Many messages from one From: each is addressed to its own recipient, from that From."""
    content = Content(page_url="https://example.invalid/page")
    built = [
        build_message(letter(r), content, letter(r).addresses, NOW) for r in ("globex", "initech")
    ]
    assert [str(m["To"]) for m in built] == [
        "globex@partners.example",
        "initech@partners.example",
    ]
    assert {str(m["From"]) for m in built} == {"Acme Reports <reports@acme.example>"}


def test_a_bad_header_of_the_last_recipient_stops_everything_unsent(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """Every message is built before any is sent: a bad header only the last recipient has
    (CR/LF) stops the notify, exit 2, with nothing sent."""

    run = delivery_run(quarterly, lambda job, recipient: settings(smtp.port))
    # The manifest refuses such text at load, and read_plan when it reads an edited
    # delivery.json: either way nothing is sent.
    bad = settings(smtp.port, subject="Q3\r\nBcc: thief@evil.example")
    run = edit_plan(run, lambda e: replace(e, settings=bad) if e.recipient == "initech" else e)
    assert [e.recipient for e in run.plan.entries][-1] == "initech"
    with pytest.raises(LinkError, match=r"q3/initech.*subject") as caught:
        notify(run.run_dir, retry=Retry(tries=1))
    assert caught.value.exit_code == 2
    assert smtp.mailbox.messages == []
