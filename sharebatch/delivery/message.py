"""The mail a recipient receives: one ``EmailMessage``, text plus an HTML alternative.

Built only with the standard library's ``email`` package, and deterministic: the same entry,
kind and moment give the same bytes (the Message-ID, the MIME boundary and the Date come from
them), so the ``.eml`` a dry run writes is exactly what a send hands over.

Templates use the manifest's syntax (``manifest/templates.py``: ``{name}``, ``{group.name}``,
``{{``/``}}`` for braces). Ours are below; a manifest's ``template:`` file (and its ``.html``
sibling), copied into ``delivery.json``, is rendered with the same variables:

``{recipient.id}``, ``{recipient.name}`` (the name, else the id), ``{job.name}``, ``{run.id}``,
``{sender.name}`` (the From name, else its address), ``{subject}``, ``{files}`` (how many, in
words: ``1 file``, ``3 files``), ``{expires_at}`` (when the earliest link ends, ``YYYY-MM-DD
HH:MM UTC``), ``{starts_at}`` (when links that start later, a CloudFront ``not_before``,
start to work, in the same form; empty when they work at once), ``{page_url}`` (the recipient
page's link with ``delivery: page``, else empty) and ``{links}`` (with ``delivery: links``,
each file's name, size and link; else empty). In
HTML every value is HTML-escaped and ``{links}`` is a list of anchors. A custom text template
without an HTML sibling gets an HTML part made from its text (escaped, its links made
clickable). Links that start later get, with our templates, a line saying from when they
work. Reminders (``kind="reminder"``) get "Reminder: " before the subject, and with our
templates a line saying the links were renewed.

Header values come from the manifest, which checked them; they are checked again here, so no
text with a control character (CR/LF: header injection) ever becomes a header.
"""

from __future__ import annotations

import functools
import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime
from typing import Literal

from sharebatch.errors import LinkError, TemplateError
from sharebatch.manifest.templates import render
from sharebatch.units import counted, human_size
from sharebatch.visible import HIDDEN, visible

MailKind = Literal["notify", "reminder"]


@dataclass(frozen=True, slots=True)
class MailLink:
    """One file as a ``delivery: links`` mail lists it."""

    name: str
    size: int
    url: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Content:
    """What a mail points at: the recipient page's link, or the files' links, when the
    earliest ends and, for links that start later, when they start. Holds bearer URLs: never
    logged, never in a ``repr``."""

    page_url: str | None = field(default=None, repr=False)
    links: tuple[MailLink, ...] = ()
    files: int = 0
    expires_at: datetime | None = None
    starts_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Letter:
    """Everything a message is made of, apart from its content."""

    run_id: str
    job: str
    recipient: str
    name: str | None
    addresses: tuple[str, ...]
    sender: str
    reply_to: str | None
    subject: str
    delivery: Literal["page", "links"]
    kind: MailKind = "notify"
    renewal: str | None = None
    resend: int = 0
    template_text: str | None = None
    template_html: str | None = None
    where: str = ""  # names the entry in errors: "delivery.json: q3/globex"


TEXT_PAGE = """\
Hello {recipient.name},

{sender.name} has shared {files} with you ({job.name}).

Open this private page to see and download them:

{page_url}

The page and its links work until {expires_at}. The link is meant for you only:
please do not forward it.
"""

HTML_PAGE = """\
<!DOCTYPE html>
<html><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello {recipient.name},</p>
<p>{sender.name} has shared {files} with you ({job.name}).</p>
<p><a href="{page_url}">Open your private download page</a></p>
<p>The page and its links work until {expires_at}. The link is meant for you only:
please do not forward it.</p>
</body></html>
"""

TEXT_LINKS = """\
Hello {recipient.name},

{sender.name} has shared {files} with you ({job.name}):

{links}
The links work until {expires_at}. They are meant for you only: please do not forward them.
"""

HTML_LINKS = """\
<!DOCTYPE html>
<html><body style="font-family: sans-serif; line-height: 1.5">
<p>Hello {recipient.name},</p>
<p>{sender.name} has shared {files} with you ({job.name}):</p>
{links}
<p>The links work until {expires_at}. They are meant for you only: please do not forward
them.</p>
</body></html>
"""

# Added after our templates' end line when the links start later: a recipient who clicks
# before then must know the refusal is not a broken link.
_STARTS_TEXT = "They work only from {starts_at}: before then they are refused.\n"
_STARTS_HTML = "<p>They work only from {starts_at}: before then they are refused.</p>\n"

_REMINDER_TEXT = """\
This is a reminder: your links have been renewed.

"""
_REMINDER_HTML = "<p><strong>This is a reminder: your links have been renewed.</strong></p>\n"


def message_id(letter: Letter, address: str | None = None) -> str:
    """``<hash@sender's domain>``, fixed per (run, job, recipient, kind, renewal), and per
    address when each address gets its own message; a deliberate resend gets a new one."""
    parts = [letter.run_id, letter.job, letter.recipient, letter.kind, letter.renewal or ""]
    if address is not None:
        parts.append(address)
    if letter.resend:
        parts.append(f"resend-{letter.resend}")
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    domain = _address(letter.sender, letter.where, "sender").domain or "sharebatch.invalid"
    return f"<{digest}@{domain}>"


def build_message(
    letter: Letter, content: Content, to: Sequence[str], now: datetime
) -> EmailMessage:
    """The message for ``to`` (all the recipient's addresses, or one with ``per_address``).

    ``LinkError`` (exit 2) names the entry and field of a header value or template that
    cannot be used; nothing about it is sent.
    """
    per_address = to[0] if len(to) == 1 and len(letter.addresses) > 1 else None
    mid = message_id(letter, per_address)
    variables = _variables(letter, content, now)
    text, body_html = _bodies(letter, content, variables)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(letter.sender, letter.where, "from")
    msg["To"] = [_recipient(letter, a) for a in to]
    if letter.reply_to:
        msg["Reply-To"] = _address(letter.reply_to, letter.where, "reply_to")
    subject = _header_text(letter.subject, letter.where, "subject")
    msg["Subject"] = f"Reminder: {subject}" if letter.kind == "reminder" else subject
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = mid
    # Tells vacation responders and ticket systems not to answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable for both parts: a long link is wrapped, never cut, and no line of a
    # body can look like the boundary below.
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(body_html, subtype="html", cte="quoted-printable")
    # A random boundary would make the dry run's .eml differ from the message sent.
    msg.set_boundary("=_sharebatch_" + mid[1:17])
    return msg


def envelope_sender(letter: Letter) -> str:
    """The address the SMTP envelope is from (MAIL FROM)."""
    return _address(letter.sender, letter.where, "from").addr_spec


def _variables(letter: Letter, content: Content, now: datetime) -> dict[str, str]:
    sender = _address(letter.sender, letter.where, "from")
    expires = content.expires_at
    starts = content.starts_at
    return {
        "recipient.id": letter.recipient,
        "recipient.name": letter.name or letter.recipient,
        "job.name": letter.job,
        "run.id": letter.run_id,
        "sender.name": sender.display_name or sender.addr_spec,
        "subject": letter.subject,
        "files": counted(content.files, "file"),
        "expires_at": "-" if expires is None else _moment(expires),
        "starts_at": "" if starts is None else _moment(starts),
        "page_url": (content.page_url or "") if letter.delivery == "page" else "",
    }


def _moment(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _bodies(letter: Letter, content: Content, variables: Mapping[str, str]) -> tuple[str, str]:
    page = letter.delivery == "page"
    text_vars = dict(variables, links="" if page else _links_text(content.links))
    html_vars = {name: html.escape(value) for name, value in variables.items()}
    html_vars["links"] = "" if page else _links_html(content.links)
    if letter.template_text is None:
        text_template = TEXT_PAGE if page else TEXT_LINKS
        html_template = HTML_PAGE if page else HTML_LINKS
        if content.starts_at is not None:
            text_template += _STARTS_TEXT
            html_template = html_template.replace("</body>", _STARTS_HTML + "</body>", 1)
        if letter.kind == "reminder":
            text_template = _REMINDER_TEXT + text_template
            html_template = html_template.replace("<p>Hello", _REMINDER_HTML + "<p>Hello", 1)
        return _render(text_template, text_vars, letter, "text"), _render(
            html_template, html_vars, letter, "html"
        )
    text = _render(letter.template_text, text_vars, letter, "template_text")
    if letter.template_html is not None:
        return text, _render(letter.template_html, html_vars, letter, "template_html")
    return text, _text_as_html(text, content if not page else Content(content.page_url))


def _render(template: str, variables: Mapping[str, str], letter: Letter, name: str) -> str:
    try:
        return render(template, variables)
    except TemplateError as exc:
        raise LinkError(f"{letter.where}: {name}: {exc}") from None


def _links_text(links: Sequence[MailLink]) -> str:
    # A name is an outsider's key: raw, a newline or bidi override in it could forge the mail.
    return "".join(
        f"- {visible(link.name)} ({human_size(link.size)})\n  {link.url}\n\n" for link in links
    )


def _links_html(links: Sequence[MailLink]) -> str:
    items = "".join(
        f'<li><a href="{html.escape(link.url)}">{html.escape(visible(link.name))}</a>'
        f" ({html.escape(human_size(link.size))})</li>\n"
        for link in links
    )
    return f"<ul>\n{items}</ul>"


def _text_as_html(text: str, content: Content) -> str:
    body = html.escape(text)
    urls = [content.page_url] if content.page_url else [link.url for link in content.links]
    for url in dict.fromkeys(urls):
        shown = html.escape(url)
        body = body.replace(shown, f'<a href="{shown}">{shown}</a>')
    return (
        '<!DOCTYPE html>\n<html><body><div style="font-family: sans-serif;'
        f' white-space: pre-wrap">{body}</div></body></html>\n'
    )


def _header_text(value: str, where: str, name: str) -> str:
    hidden = HIDDEN.search(value)
    if hidden:
        raise LinkError(
            f"{where}: {name}: holds {visible(hidden.group())}, which no mail header may hold"
        )
    return value


def _address(value: str, where: str, name: str) -> Address:
    _header_text(value, where, name)
    address = _one_address(value)
    if address is None:
        raise LinkError(f"{where}: {name}: {visible(value)!r} is not one mail address")
    return address


@functools.lru_cache(maxsize=4096)
def _one_address(value: str) -> Address | None:
    """``value`` parsed by the email package's own header parser: one address, and nothing
    it had to repair; else None. Cached: a mailing parses the same From and Reply-To for
    every message, and the parser is most of the cost of building one (bench_notify.py)."""
    header = default.header_factory("to", value)
    found: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(found) != 1 or header.defects or "@" not in found[0].addr_spec:
        return None
    address: Address = found[0]
    return address


def _recipient(letter: Letter, address: str) -> Address:
    found = _address(address, letter.where, "email")
    if letter.name:
        _header_text(letter.name, letter.where, "name")
        return Address(display_name=letter.name, addr_spec=found.addr_spec)
    return found
