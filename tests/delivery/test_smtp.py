"""Sending against servers that refuse, stall, drop, or speak only TLS (aiosmtpd, 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sharebatch.delivery.ledger import read_ledger
from sharebatch.delivery.notify import notify
from sharebatch.delivery.smtp import CAFILE_ENV, Retry, hand_over
from sharebatch.errors import LinkError, UsageError
from sharebatch.models import SmtpServer
from tests.support.delivery_run import PASSWORD, delivery_run, edit_plan, settings
from tests.support.quarterly import QuarterlyRun
from tests.support.smtp import HOST, Captured, Server, TlsFiles, silent_server, smtp_server

NO_WAIT = Retry(tries=3, backoff=lambda attempt: 0.0)
GLOBEX, INITECH = "globex@partners.example", "initech@partners.example"


def _statuses(run_dir: Path) -> dict[str, tuple[str, int, str]]:
    return {d.recipient: (d.status, d.attempts, d.reply) for d in read_ledger(run_dir)}


def test_a_permanent_refusal_fails_that_recipient_only(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """550 for one address: that recipient fails at once (no retry), the other is sent, exit 1
    and the report names the failed one."""
    smtp.mailbox.refuse[GLOBEX] = "550 5.1.1 no such user"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    report = notify(run.run_dir, retry=NO_WAIT)
    assert report.exit_code == 1
    assert [(o.recipient, o.reply) for o in report.failed] == [
        ("globex", f"{GLOBEX}: 550 5.1.1 no such user")
    ]
    status = _statuses(run.run_dir)
    assert status["globex"][:2] == ("failed", 1)
    assert status["initech"][:2] == ("sent", 1)
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [(INITECH,)]


def test_a_temporary_refusal_is_tried_again(quarterly: QuarterlyRun, smtp: Server) -> None:
    """421 at DATA, then acceptance: the message is sent on its second try, once."""
    smtp.mailbox.data_replies.append("421 4.3.2 try again later")
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
    assert report.exit_code == 0
    assert _statuses(run.run_dir)["globex"][:2] == ("sent", 2)
    assert len(smtp.mailbox.messages) == 1


def test_a_connection_dropped_in_data_is_tried_again(quarterly: QuarterlyRun, smtp: Server) -> None:
    """The server hangs up during DATA: the message goes again and is sent."""
    smtp.mailbox.drop_in_data = 1
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
    assert report.exit_code == 0
    assert _statuses(run.run_dir)["globex"][:2] == ("sent", 2)
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [(GLOBEX,)]


def test_temporary_failures_give_up_after_the_last_try(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A server that says 451 every time: failed after the retry policy's tries, backoff
    asked for each wait."""
    smtp.mailbox.data_replies.extend(["451 4.3.0 busy"] * 3)
    waits: list[int] = []
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))

    def backoff(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    retry = Retry(tries=3, backoff=backoff)
    report = notify(run.run_dir, retry=retry, only=["globex"])
    assert report.exit_code == 1
    assert _statuses(run.run_dir)["globex"] == ("failed", 3, "451 4.3.0 busy")
    assert waits == [1, 2]


def test_a_server_that_never_answers_is_bounded_by_the_timeout(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A silent server fails its recipient within tries x timeout, reported, exit 1; the
    other recipient, on a working server, is sent."""
    with silent_server() as port:
        stalled = settings(port, smtp=SmtpServer(HOST, port, security="none", timeout=0.5))
        run = delivery_run(
            quarterly,
            lambda job, r: stalled if r == "initech" else settings(smtp.port),
        )
        started = time.monotonic()
        report = notify(run.run_dir, retry=Retry(tries=2, backoff=lambda attempt: 0.0))
        took = time.monotonic() - started
    assert report.exit_code == 1
    [failed] = report.failed
    assert failed.recipient == "initech"
    assert f"{HOST}:{port} did not answer within 0.5s" in failed.reply
    assert took < 5
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [(GLOBEX,)]


def _tls_settings(port: int, security: str, username: str | None = "reports") -> object:
    server = SmtpServer(HOST, port, security=security, username=username, timeout=5.0)  # type: ignore[arg-type]
    return settings(port, smtp=server)


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "tls"])
def test_tls_and_login_with_the_password_from_the_environment(
    quarterly: QuarterlyRun,
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    implicit: bool,
) -> None:
    """STARTTLS (required by the server) or implicit TLS, the certificate checked against a
    private CA from SHAREBATCH_SMTP_CAFILE, AUTH with the password read from the environment."""
    monkeypatch.setenv(CAFILE_ENV, str(tls_files.ca))
    monkeypatch.setenv("SHAREBATCH_SMTP_PASSWORD", PASSWORD)
    with smtp_server(tls=tls_files, implicit_tls=implicit, auth=True) as server:
        security = "tls" if implicit else "starttls"
        run = delivery_run(quarterly, lambda job, r: _tls_settings(server.port, security))  # type: ignore[arg-type,return-value]
        report = notify(run.run_dir, retry=NO_WAIT)
        assert report.exit_code == 0, report.failed
        assert {m.login for m in server.mailbox.messages} == {"reports"}
        assert server.mailbox.logins == [("reports", PASSWORD)] * 2


def test_an_untrusted_certificate_fails_without_retrying(
    quarterly: QuarterlyRun, tls_files: TlsFiles
) -> None:
    """Without the private CA the server's certificate is refused: failed at the first try,
    nothing handed over."""
    with smtp_server(tls=tls_files) as server:
        run = delivery_run(
            quarterly,
            lambda job, r: _tls_settings(server.port, "starttls", None),  # type: ignore[arg-type,return-value]
        )
        report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
        assert report.exit_code == 1
        assert _statuses(run.run_dir)["globex"][1] == 1
        assert server.mailbox.messages == []


def test_a_missing_password_stops_before_anything_is_sent(
    quarterly: QuarterlyRun, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A username whose password variable is unset: exit 2 naming the variable, nothing sent,
    no ledger line."""
    monkeypatch.delenv("SHAREBATCH_SMTP_PASSWORD", raising=False)
    with smtp_server(tls=tls_files, auth=True) as server:
        run = delivery_run(quarterly, lambda job, r: _tls_settings(server.port, "starttls"))  # type: ignore[arg-type,return-value]
        with pytest.raises(UsageError, match="SHAREBATCH_SMTP_PASSWORD, which is not set") as e:
            notify(run.run_dir, retry=NO_WAIT)
        assert e.value.exit_code == 2
        assert server.mailbox.messages == [] and read_ledger(run.run_dir) == []


def test_a_wrong_password_fails_and_is_never_shown(
    quarterly: QuarterlyRun, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses the login: failed at once; the password is in no reply or line."""
    wrong = "not-the-right-password-1234"
    monkeypatch.setenv(CAFILE_ENV, str(tls_files.ca))
    monkeypatch.setenv("SHAREBATCH_SMTP_PASSWORD", wrong)
    with smtp_server(tls=tls_files, auth=True) as server:
        run = delivery_run(quarterly, lambda job, r: _tls_settings(server.port, "starttls"))  # type: ignore[arg-type,return-value]
        report = notify(run.run_dir, retry=NO_WAIT, now=datetime.now(UTC))
    assert report.exit_code == 1
    assert [o.reply[:4] for o in report.failed] == ["535 "] * 2, report.failed
    for name in ("deliveries.jsonl", "audit.jsonl"):
        assert wrong not in (run.run_dir / name).read_text()


def test_a_temporary_refusal_at_rcpt_is_tried_again(quarterly: QuarterlyRun, smtp: Server) -> None:
    """450 for the only address: tried the policy's number of times, then failed, exit 1."""
    smtp.mailbox.refuse[GLOBEX] = "450 4.2.1 mailbox busy"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
    assert report.exit_code == 1
    assert _statuses(run.run_dir)["globex"] == ("failed", 3, f"{GLOBEX}: 450 4.2.1 mailbox busy")


def test_one_refused_address_of_two_still_delivers_to_the_other(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """One of a recipient's two addresses refused: the other gets the message, the ledger
    says sent with the refused address undelivered, the report names the recipient, exit 1."""
    both = ("finance@globex.example", "audit@globex.example")
    smtp.mailbox.refuse[both[1]] = "550 5.1.1 no such user"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), addresses={"globex": both})
    report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
    assert report.exit_code == 1
    [failed] = report.failed
    assert failed.reply.startswith("250 ") and f"refused {both[1]}: 550" in failed.reply
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [(both[0],)]
    assert _statuses(run.run_dir)["globex"][0] == "sent"
    assert [d.undelivered for d in read_ledger(run.run_dir)] == [[both[1]]]


def test_an_address_refused_for_a_while_gets_the_message_once_later(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """One of two addresses answered 450 at RCPT: the other gets the message at once; the
    refused one is tried again with the same message (same Message-ID), never the other twice."""
    both = ("finance@globex.example", "audit@globex.example")
    smtp.mailbox.refuse[both[1]] = "450 4.2.1 mailbox busy"
    smtp.mailbox.refuse_times[both[1]] = 1
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), addresses={"globex": both})
    report = notify(run.run_dir, retry=NO_WAIT, only=["globex"])
    assert report.exit_code == 0
    first, second = smtp.mailbox.messages
    assert (first.rcpt_tos, second.rcpt_tos) == ((both[0],), (both[1],))
    assert _message_id(first) == _message_id(second)


def test_an_address_still_refused_is_completed_by_the_next_notify(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """An address refused through every try fails the recipient (exit 1); the next notify
    sends the same message to that address only, and then nothing more."""
    both = ("finance@globex.example", "audit@globex.example")
    smtp.mailbox.refuse[both[1]] = "450 4.2.1 mailbox busy"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port), addresses={"globex": both})
    assert notify(run.run_dir, retry=NO_WAIT, only=["globex"]).exit_code == 1
    del smtp.mailbox.refuse[both[1]]
    assert notify(run.run_dir, retry=NO_WAIT, only=["globex"]).exit_code == 0
    assert notify(run.run_dir, retry=NO_WAIT, only=["globex"]).exit_code == 0
    first, second = smtp.mailbox.messages
    assert (first.rcpt_tos, second.rcpt_tos) == ((both[0],), (both[1],))
    assert _message_id(first) == _message_id(second)


def _message_id(captured: Captured) -> str:
    return str(captured.parsed()["Message-ID"])


def test_an_edited_plan_with_a_non_ascii_address_is_refused_before_sending(
    quarterly: QuarterlyRun, smtp: Server
) -> None:
    """A non-ASCII address in an edited delivery.json (the manifest refuses it) is bad input
    when the plan is read: exit 2, nobody mailed."""
    idn = "finance@gl\u00f6bex.example"
    run = delivery_run(quarterly, lambda job, r: settings(smtp.port))
    run = edit_plan(run, lambda e: replace(e, addresses=(idn,)) if e.recipient == "globex" else e)
    with pytest.raises(LinkError, match="punycode") as caught:
        notify(run.run_dir, retry=NO_WAIT)
    assert caught.value.exit_code == 2
    assert smtp.mailbox.messages == []


def test_an_address_rcpt_cannot_carry_is_refused_for_good_the_others_sent(
    smtp: Server,
) -> None:
    """Below the plan's checks, the hand-over itself: an address RCPT TO cannot carry (not
    ASCII) is refused for good with a reply saying so, never retried, never a traceback;
    the other address gets the message."""
    server = SmtpServer(host=HOST, port=smtp.port, security="none")
    ok, idn = "finance@globex.example", "audit@gl\u00f6bex.example"
    data = b"Subject: t\r\nMessage-ID: <x@acme.example>\r\n\r\nhello\r\n"
    both = asyncio.run(hand_over(server, "reports@acme.example", [ok, idn], data, retry=NO_WAIT))
    assert (both.status, both.refused, both.attempts) == ("sent", (idn,), 1)
    assert "not ASCII" in both.reply
    alone = asyncio.run(hand_over(server, "reports@acme.example", [idn], data, retry=NO_WAIT))
    assert (alone.status, alone.attempts) == ("failed", 1) and "not ASCII" in alone.reply
    assert [m.rcpt_tos for m in smtp.mailbox.messages] == [(ok,)]
