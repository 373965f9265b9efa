"""Building messages: all before any is sent; addresses parsed once per mailing, and still
checked for each message."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sharebatch.delivery.message import Content, Letter, MailLink, build_message
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


def test_a_file_name_cannot_forge_lines_of_a_links_mail() -> None:
    """A name with a bidi override and newlines (as a key may hold) is listed escaped in both
    parts: no override and no line of its own in the text or the HTML."""
    evil = "invoice\u202efdp.exe\n\nURGENT: log in at https://evil.example/login"
    content = Content(
        links=(MailLink(evil, 10, "https://bucket.example/x?sig=1"),),
        files=1,
        expires_at=NOW + timedelta(days=1),
    )
    msg = build_message(letter("globex", delivery="links"), content, ("g@p.example",), NOW)
    plain, markup = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and markup is not None
    text, body = plain.get_content(), markup.get_content()
    shown = "invoice\\u202efdp.exe\\x0a\\x0aURGENT: log in at https://evil.example/login"
    assert f"- {shown} (10 B)" in text and f">{shown}</a>" in body
    for part in (text, body):
        assert "\u202e" not in part
        assert not [line for line in part.splitlines() if line.startswith("URGENT")]


def test_page_url_is_empty_in_a_links_mail_even_if_the_bundle_has_one() -> None:
    """With delivery: links a custom template's {page_url} renders empty, though the bundle
    holds a page link (a run made for delivery: page, its delivery.json edited to links)."""
    content = Content(
        page_url="https://bucket.example/_sharebatch/pages/p.html?sig=1",
        links=(MailLink("a.pdf", 10, "https://bucket.example/a.pdf?sig=1"),),
        files=1,
    )
    mail = letter("globex", delivery="links", template_text="page=[{page_url}] {links}")
    text = build_message(mail, content, ("g@p.example",), NOW).get_body(("plain",))
    assert text is not None
    assert "page=[] - a.pdf (10 B)" in text.get_content()


def test_links_that_start_later_say_when_in_both_parts_and_in_starts_at() -> None:
    """Content.starts_at: our page and links mails add a line saying from when the links
    work, in text and HTML; a custom template gets it as {starts_at}; without a start
    neither the line nor a value appears."""
    start = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    line = "They work only from 2026-12-04 09:30 UTC: before then they are refused."
    for delivery in ("page", "links"):
        content = Content(
            page_url="https://bucket.example/_sharebatch/pages/p.html?sig=1",
            links=(MailLink("a.pdf", 10, "https://d1.example/a.pdf?Signature=1"),),
            files=1,
            expires_at=NOW + timedelta(days=30),
            starts_at=start,
        )
        mail = letter("globex", delivery=delivery)
        msg = build_message(mail, content, ("g@p.example",), NOW)
        plain, markup = msg.get_body(("plain",)), msg.get_body(("html",))
        assert plain is not None and markup is not None
        assert line in plain.get_content() and f"<p>{line}</p>" in markup.get_content()
        at_once = build_message(mail, replace(content, starts_at=None), ("g@p.example",), NOW)
        assert "work only from" not in at_once.as_string()
    custom = letter("globex", template_text="from [{starts_at}]")
    text = build_message(custom, content, ("g@p.example",), NOW).get_body(("plain",))
    empty = build_message(custom, replace(content, starts_at=None), ("g@p.example",), NOW)
    assert text is not None and "from [2026-12-04 09:30 UTC]" in text.get_content()
    assert "from []" in empty.as_string()
