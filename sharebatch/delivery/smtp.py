"""Handing one message to an SMTP server with aiosmtplib, and judging the server's answer.

One connection per message: a refusal or a dropped connection touches only that message, and
``notify`` bounds the connections open at once. ``security`` is ``starttls`` (STARTTLS
required), ``tls`` (implicit TLS) or ``none`` (loopback only, which the manifest enforces).
Certificates are verified against the system's trust store plus, for a private CA, the file
named by ``SHAREBATCH_SMTP_CAFILE`` (or the ``cafile`` a caller passes).

A 5xx reply is permanent: that message fails at once. A 4xx reply, a dropped connection or a
server that does not answer within ``smtp.timeout`` is temporary: tried again after a backoff,
a few times. The password is read from the environment by the caller and passed in; it never
appears in a reply, an error or a log line.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

import aiosmtplib

from sharebatch.models import SmtpServer

CAFILE_ENV = "SHAREBATCH_SMTP_CAFILE"
_MAX_REPLY = 300
_NOT_ASCII = "address is not ASCII; write its domain in punycode (xn--...)"


def default_backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1``: 2, 4, 8... capped at 60."""
    return float(min(60, 2**attempt))


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a temporary failure is tried again, and how long to wait between tries."""

    tries: int = 4
    backoff: Callable[[int], float] = default_backoff


DEFAULT_RETRY = Retry()


@dataclass(frozen=True, slots=True)
class Handover:
    """What became of one message: ``sent`` with the server's reply to DATA, or ``failed``
    with the reply (or the failure) that ended it. ``refused``: addresses refused at RCPT
    while the others took the message."""

    status: str
    reply: str
    attempts: int
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """The SMTP login; the password never shows in a ``repr``."""

    username: str
    password: str = field(repr=False)


class _Temporary(Exception):
    """A failure worth another try; its message is the reply or what happened."""


class _Permanent(Exception):
    """A failure no retry mends."""


def tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """The context every TLS connection uses: the system's CAs, plus a private CA file."""
    context = ssl.create_default_context()
    extra = cafile or os.environ.get(CAFILE_ENV)
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


async def hand_over(
    server: SmtpServer,
    sender: str,
    to: Sequence[str],
    data: bytes,
    *,
    login: Credentials | None = None,
    context: ssl.SSLContext | None = None,
    retry: Retry = DEFAULT_RETRY,
) -> Handover:
    """Send ``data`` (a whole message, CRLF lines) from ``sender`` to ``to`` on ``server``.

    Addresses a server refused for now (4xx at RCPT) while others took the message get the
    same message again, alone, on the next try; ``refused`` names those never taken.
    """
    attempt = 0
    remaining = tuple(to)
    replies: list[str] = []
    never: tuple[str, ...] = ()  # refused for good (5xx) by an earlier try of this call
    while True:
        attempt += 1
        try:
            reply, refused, temporary = await _once(server, sender, remaining, data, login, context)
        except (_Permanent, _Temporary) as exc:
            if isinstance(exc, _Temporary) and attempt < retry.tries:
                await asyncio.sleep(retry.backoff(attempt))
                continue
            if not replies:
                return Handover("failed", _short(str(exc)), attempt)
            # An earlier try delivered to the others: the message went, these did not get it.
            text = "; ".join([*replies, _short(str(exc))])
            return Handover("sent", text, attempt, never + remaining)
        replies.append(reply)
        if temporary and attempt < retry.tries:
            # The message is the others' already: only the addresses refused for now go again.
            never += tuple(a for a in refused if a not in temporary)
            remaining = temporary
            await asyncio.sleep(retry.backoff(attempt))
            continue
        return Handover("sent", "; ".join(replies), attempt, never + refused)


async def _once(
    server: SmtpServer,
    sender: str,
    to: Sequence[str],
    data: bytes,
    login: Credentials | None,
    context: ssl.SSLContext | None,
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """One transaction: the reply to DATA, the addresses refused, those refused only for now."""
    secure = server.security != "none"
    client = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        timeout=server.timeout,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls",
        tls_context=(context or tls_context()) if secure else None,
    )
    try:
        await client.connect()
        if login is not None:
            await client.login(login.username, login.password)
        await client.mail(sender)
        refused: dict[str, str] = {}
        for_now: list[str] = []  # refused with a 4xx: another try may deliver
        for address in to:
            try:
                await client.rcpt(address)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[address] = f"{exc.code} {exc.message}"
                if exc.code < 500:
                    for_now.append(address)
            except ValueError:  # UnicodeEncodeError: RCPT TO takes ASCII only; no retry mends it
                refused[address] = _NOT_ASCII
        if len(refused) == len(to):
            # Nobody took it: worth another try if any refusal was temporary.
            text = "; ".join(f"{a}: {r}" for a, r in refused.items())
            raise (_Temporary(text) if for_now else _Permanent(text))
        answer = await client.data(data)
        reply = f"{answer.code} {answer.message}"
        with suppress(aiosmtplib.SMTPException):
            await client.quit()  # the message is the server's already: a failed QUIT is moot
        if refused:
            reply += "; refused " + "; ".join(f"{a}: {r}" for a, r in refused.items())
        return reply, tuple(refused), tuple(for_now)
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise _Permanent(f"{exc.code} login refused: {exc.message}") from None
    except aiosmtplib.SMTPTimeoutError:
        raise _Temporary(
            f"{server.host}:{server.port} did not answer within {server.timeout:g}s"
        ) from None
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise _Temporary(f"connection dropped: {exc}") from None
    except aiosmtplib.SMTPConnectError as exc:
        raise _Temporary(f"cannot connect to {server.host}:{server.port}: {exc}") from None
    except aiosmtplib.SMTPResponseException as exc:
        text = f"{exc.code} {exc.message}"
        raise (_Permanent(text) if exc.code >= 500 else _Temporary(text)) from None
    except aiosmtplib.SMTPException as exc:
        raise _Permanent(str(exc)) from None
    except ssl.SSLError as exc:
        raise _Permanent(f"TLS with {server.host}:{server.port} failed: {exc.reason}") from None
    except ValueError as exc:  # text the protocol cannot carry (a non-ASCII sender, say)
        raise _Permanent(f"cannot be sent: {type(exc).__name__}") from None
    except OSError as exc:
        raise _Temporary(f"{server.host}:{server.port}: {type(exc).__name__}") from None
    finally:
        client.close()


def _short(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= _MAX_REPLY else one_line[: _MAX_REPLY - 3] + "..."
