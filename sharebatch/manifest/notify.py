"""The manifest's ``notify:`` setting: how each recipient is told about their bundle.

``RawNotify`` (with ``RawSmtp`` and ``RawWebhook`` inside) mirrors the YAML. Like ``upload:``,
every field inherits defaults -> job -> recipient on its own, the smtp and webhook fields too,
and ``notify: false`` at any level leaves the grants below it out on purpose. ``resolve_notify``
turns the fields found for one grant into ``models.NotifySettings``; ``check_pages`` then
refuses a pages folder that a shared prefix would hand out.

What is checked here is what would otherwise reach a mail header or a server: addresses,
names and subjects without control characters (a CR or LF in a header starts a new header),
plain TLS unless the server is this machine, and never a password in the file. The SMTP
password is read from the environment when a message is sent; no message here ever shows a
webhook URL, which often is a bearer secret itself.

This module imports nothing from ``resolve`` (which imports it): the resolver passes its
lookups and its template renderer in.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from sharebatch.manifest.fields import (
    GrantTemplate,
    check_address,
    check_prefix,
    check_text,
    false_in_schema,
    hidden_character,
    mapping_or_false,
)
from sharebatch.manifest.periods import parse_duration
from sharebatch.manifest.source import IssueCollector, PathKey, describe, grant_levels, show
from sharebatch.models import (
    DeliveryKind,
    NotifySettings,
    SmtpSecurity,
    SmtpServer,
    Webhook,
    WebhookFormat,
)

DEFAULT_SUBJECT = "Your files for {period.label} ({job.name})"
DEFAULT_PAGES_PREFIX = "_sharebatch/pages/"
DEFAULT_PASSWORD_ENV = "SHAREBATCH_SMTP_PASSWORD"  # noqa: S105 (a variable's name)
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
MAX_TIMEOUT = 3600
MAX_TEMPLATE_BYTES = 1024 * 1024
PASSWORD_HINT = (
    "the SMTP password is never written in the manifest: put it in the environment variable"
    f" {DEFAULT_PASSWORD_ENV}, or name another variable with smtp.password_env"
)

_T = TypeVar("_T")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A display name must be quoted when it holds what would split or end it in a header.
_SPECIALS = set(',;:@<>()[]\\"')


# --- single values --------------------------------------------------------------------------


def check_host(value: str) -> str:
    """A mail server: a host name or an IP address, nothing more (no scheme, no port)."""
    check_text(value, "smtp host")
    if "://" in value or "/" in value:
        raise ValueError(
            f"smtp host {show(value)} must be a host name only, e.g. smtp.example.com"
            " (the port goes in smtp.port)"
        )
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.removesuffix(".").split(".")
        if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ValueError(
                f"smtp host {show(value)} is not a host name or IP address, e.g."
                " smtp.example.com or 127.0.0.1"
            ) from None
    return value


def is_loopback(host: str) -> bool:
    """True for this machine only: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_field(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    shown = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    raise ValueError(
        f"smtp port must be a whole number from 1 to 65535, got {shown or describe(value)}"
    )


def _timeout_field(value: object) -> float:
    if isinstance(value, float) and not (0 < value <= MAX_TIMEOUT):
        raise ValueError(f"smtp timeout {value} must be more than 0 and at most {MAX_TIMEOUT}s")
    if isinstance(value, float):
        return value
    if isinstance(value, int | str):  # bool included: parse_duration explains why not
        seconds = parse_duration(value)
        if seconds > MAX_TIMEOUT:
            raise ValueError(f"smtp timeout {seconds} seconds is longer than 1h")
        return float(seconds)
    raise ValueError(f"expected a timeout like 30s or 2m, got {describe(value)}")


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(
            f"password_env {show(value)} must name an environment variable: letters, digits"
            " and '_', not starting with a digit, e.g. ACME_SMTP_PASSWORD"
        )
    return value


def check_mailbox(value: str, what: str) -> str:
    """``addr@example.com`` or ``Display Name <addr@example.com>``; returned as written
    (without surrounding blanks).

    A display name holding ``,;:@<>()[]\\"`` must be double-quoted (and then hold no ``"`` or
    ``\\``), so that every mail program splits the header where the writer meant it.
    """
    check_text(value, what)
    text = value.strip()
    if "<" not in text and ">" not in text:
        return check_address(text, what)
    name, lt, rest = text.partition("<")
    addr, gt, tail = rest.partition(">")
    name = name.strip()
    if not lt or not gt or tail.strip() or "<" in addr or ">" in tail:
        raise ValueError(
            f"{what} {show(value)} must be an address, or a name and an address like"
            " 'Acme Reports <reports@acme.example>'"
        )
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        inner = name[1:-1]
        if '"' in inner or "\\" in inner:
            raise ValueError(f"{what} {show(value)}: a quoted name may not hold '\"' or '\\'")
    elif _SPECIALS & set(name):
        raise ValueError(
            f'{what} {show(value)}: a name holding any of , ; : @ < > ( ) [ ] \\ " must be'
            " quoted, e.g. '\"Acme, Inc.\" <reports@acme.example>'"
        )
    check_address(addr.strip(), what)
    return text


def _check_subject(value: str) -> str:
    return check_text(value, "subject")


def check_rendered_subject(value: str) -> str:
    """A rendered subject: one line of visible text (a CR or LF would start a new header)."""
    check_text(value, "subject")
    if not value.strip():
        raise ValueError("subject is empty; write one, or leave it out for the default")
    return value


def check_pages_prefix(value: str) -> str:
    """Where recipient pages are stored: a literal folder (ends with '/')."""
    check_prefix(value)
    if not value.endswith("/"):
        raise ValueError(
            f"pages_prefix {show(value)} must end with '/': it is the folder the pages go in"
        )
    return value


def _check_template_name(value: str) -> str:
    if not value.strip():
        raise ValueError("template must name a file, e.g. templates/partner.txt")
    return check_text(value, "template")


def check_webhook_url(value: str) -> str:
    """An http(s) URL with a host. Never shown in a message: it often carries a token."""
    hidden = hidden_character(value)
    if hidden is not None:
        raise ValueError(f"webhook url contains {hidden}")
    usage = "webhook url must be an http:// or https:// URL with a host"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        raise ValueError(usage + " and a port from 1 to 65535, or none") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
    ):
        raise ValueError(usage)
    if parts.username is not None or parts.password is not None:
        raise ValueError("webhook url must not contain a user name or password")
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(usage + " and a port from 1 to 65535, or none")
    return value


SmtpHost = Annotated[str, AfterValidator(check_host)]
Port = Annotated[
    int,
    PlainValidator(_port_field),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 65535}),
]
Timeout = Annotated[
    float,
    PlainValidator(_timeout_field),
    WithJsonSchema({"type": ["string", "number"], "examples": ["30s", "2m", 45]}),
]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
UserName = Annotated[
    str, AfterValidator(lambda v: _nonempty(check_text(v, "username"), "username"))
]
Sender = Annotated[str, AfterValidator(lambda v: check_mailbox(v, "from"))]
ReplyTo = Annotated[str, AfterValidator(lambda v: check_mailbox(v, "reply_to"))]
Subject = Annotated[GrantTemplate, AfterValidator(_check_subject)]
PagesPrefix = Annotated[str, AfterValidator(check_pages_prefix)]
TemplateName = Annotated[str, AfterValidator(_check_template_name)]
WebhookUrl = Annotated[str, AfterValidator(check_webhook_url)]


def _nonempty(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty; leave it out instead")
    return value


# --- the raw models -------------------------------------------------------------------------

_INHERITS = "Inherits field by field (defaults -> job -> recipient)."


class RawSmtp(BaseModel):
    """The mail server messages are handed to."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Smtp")

    host: SmtpHost | None = Field(
        None, description="Host name or IP address of the server, e.g. smtp.example.com (required)."
    )
    port: Port | None = Field(
        None, description="TCP port: default 587 with starttls, 465 with tls, 25 with none."
    )
    security: SmtpSecurity | None = Field(
        None,
        description="starttls (default: upgrade before login), tls (TLS from the first byte) or"
        " none (no TLS: only towards a loopback host such as 127.0.0.1).",
    )
    username: UserName | None = Field(
        None, description="Login name (default: no login). The password is never written here."
    )
    password_env: EnvName | None = Field(
        None,
        description="Environment variable holding the password (default"
        f" {DEFAULT_PASSWORD_ENV}); read when mail is sent, never stored.",
    )
    timeout: Timeout | None = Field(
        None, description="How long to wait for the server: 30s (default), 2m, or seconds; max 1h."
    )


class RawWebhook(BaseModel):
    """Where the summary of each run and each notify is posted (never a link)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Webhook")

    url: WebhookUrl | None = Field(
        None, description="http:// or https:// URL to POST to (required for a webhook)."
    )
    format: WebhookFormat | None = Field(
        None, description='json (default: the summary as is) or slack ({"text": ...}).'
    )


class RawNotify(BaseModel):
    """How recipients are told about their bundle: by mail, through a private page."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, title="Notify")

    smtp: RawSmtp | None = Field(None, description=f"The mail server. {_INHERITS}")
    sender: Sender | None = Field(
        None,
        alias="from",
        description="Sender, e.g. 'Acme Reports <reports@acme.example>' (required).",
    )
    reply_to: ReplyTo | None = Field(
        None, description="Where replies go, e.g. ops@acme.example (default: the sender)."
    )
    subject: Subject | None = Field(
        None,
        description="Subject template: {period.*}, {recipient.*}, {job.name}. Default"
        f" '{DEFAULT_SUBJECT}'.",
    )
    delivery: DeliveryKind | None = Field(
        None,
        description="page (default: one link to a private page listing the files, which mail"
        " scanners may fetch harmlessly) or links (the links in the mail body).",
    )
    pages_prefix: PagesPrefix | None = Field(
        None,
        description=f"Bucket folder the recipient pages are stored in (default"
        f" '{DEFAULT_PAGES_PREFIX}'); must end with '/' and stay apart from shared prefixes.",
    )
    template: TemplateName | None = Field(
        None,
        description="Text template file, relative to the manifest's folder (its .html sibling,"
        " if present, is the HTML part). Default: sharebatch's own.",
    )
    per_address: bool | None = Field(
        None, description="true: one message per address; false (default): all in one To."
    )
    require_approval: bool | None = Field(
        None, description="true: send only bundles approved with 'sharebatch approve'."
    )
    webhook: RawWebhook | None = Field(
        None, description=f"Post each run's and notify's summary here. {_INHERITS}"
    )


GROUPS: dict[str, type[BaseModel]] = {"": RawNotify, "smtp": RawSmtp, "webhook": RawWebhook}
"""The model of each part of ``notify:``, by the key it is under ("" for notify itself)."""


def yaml_names(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` takes in YAML (``from``, not ``sender``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


@cache
def attribute(model: type[BaseModel], key: str) -> str:
    """The attribute of ``model`` a YAML key fills."""
    return next((n for n, i in model.model_fields.items() if (i.alias or n) == key), key)


NOTIFY_FIELDS: tuple[str, ...] = tuple(
    key if not group else f"{group}.{key}"
    for group, model in GROUPS.items()
    for key in yaml_names(model)
    if key not in GROUPS
)
"""Every field of ``notify:`` as the resolver keeps it: ``from``, ``smtp.host``..."""


NotifySetting = Annotated[
    RawNotify | None,
    BeforeValidator(mapping_or_false("notify fields", "to send nothing")),
    Field(json_schema_extra=false_in_schema),
]
"""``notify:`` in defaults, a job or a recipient: a mapping of fields, or false."""


def password_message(path: PathKey) -> str | None:
    """The message for a password-like key under ``notify:``; None for any other key."""
    inside = any(part == "notify" for part in path[:-1])
    key = str(path[-1]).lower()
    # password_evn and the like are typos of password_env: those get "did you mean".
    secret = key in ("pass", "passwd", "pwd") or ("password" in key and "password_" not in key)
    return PASSWORD_HINT if inside and secret else None


# --- recipient addresses --------------------------------------------------------------------


def _email_field(value: object) -> object:
    if isinstance(value, str):
        return check_address(value, "email")
    if isinstance(value, list):
        if not value:
            raise ValueError("email lists no address; leave it out for none")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"email[{index}]: expected an address, got {describe(item)}")
        return value  # each address is checked, and located, by ``addresses``
    raise ValueError(f"expected an address or a list of addresses, got {describe(value)}")


EmailSetting = Annotated[
    Any,
    PlainValidator(_email_field),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]
"""A recipient's ``email:``: one address, or a list of them."""


def addresses(
    value: list[str], path: PathKey, issues: IssueCollector
) -> tuple[str, tuple[str, ...]] | None:
    """(display form, each address) of an email list, or None when an address was reported.

    The display form is what bundles show and ``{recipient.email}`` gives: the addresses
    joined by ", ".
    """
    seen: list[str] = []
    ok = True
    for index, item in enumerate(value):
        where = (*path, index)
        try:
            check_address(item, "email")
        except ValueError as exc:
            issues.at(where, str(exc))
            ok = False
            continue
        if item.lower() in (s.lower() for s in seen):
            issues.at(where, f"email {show(item)} is listed twice")
            ok = False
        seen.append(item)
    return (", ".join(seen), tuple(seen)) if ok else None


# --- resolution -----------------------------------------------------------------------------

Render = Callable[[tuple[str, PathKey], Callable[[str], _T]], _T | None]


def resolve_notify(
    found: Mapping[str, object],
    off: object,
    render: Render[str],
    issues: IssueCollector,
    template_file: Callable[[str, PathKey], str | None],
) -> tuple[bool, NotifySettings | None, bool]:
    """(complete, settings, left out) for one grant from the notify fields that apply to it.

    ``found`` maps each of ``NOTIFY_FIELDS`` to (value, where written), None when not set, or
    anything else for a value already reported as wrong; ``off`` is the value a level saying
    ``notify: false`` gives its fields. ``render`` renders a template for the grant;
    ``template_file`` checks a template path and resolves it (None when it reported a problem).
    Settings are None when nothing applies or ``notify: false`` left the grant out (then
    "left out" is True).
    """
    if any(v is not None and not isinstance(v, tuple) for v in found.values()):
        return False, None, False
    given: dict[str, tuple[Any, PathKey]] = {
        k: v for k, v in found.items() if isinstance(v, tuple) and v[0] is not off
    }
    if not given:
        left_out = any(isinstance(v, tuple) and v[0] is off for v in found.values())
        return True, None, left_out
    # Missing fields are reported at the most specific notify mapping that applies.
    where = max((_notify_path(v[1]) for v in given.values()), key=len)
    complete = True
    for name, hint in (
        ("smtp.host", "name the mail server, e.g. smtp: {host: smtp.example.com}"),
        ("from", "say who sends, e.g. 'Acme Reports <reports@acme.example>'"),
    ):
        if name not in given:
            last = "(or write 'notify: false' to send nothing)"
            issues.at(where, f"notify needs {name}: {hint} {last}")
            complete = False
    if any(k.startswith("webhook.") for k in given) and "webhook.url" not in given:
        at = max((v[1][:-1] for k, v in given.items() if k.startswith("webhook.")), key=len)
        issues.at(at, "notify webhook needs url: the http(s) address to post the summary to")
        complete = False
    security: SmtpSecurity = given["smtp.security"][0] if "smtp.security" in given else "starttls"
    if security == "none" and "smtp.host" in given and not is_loopback(given["smtp.host"][0]):
        host, host_at = given["smtp.host"]
        sec_at = given["smtp.security"][1]
        issues.at(
            sec_at if len(sec_at) >= len(host_at) else host_at,
            f"smtp security none sends the password and every link in clear text; it is allowed"
            f" only towards this machine (localhost, 127.0.0.1, ::1), not {show(host)}: use"
            " starttls or tls",
        )
        complete = False
    subject = render(given.get("subject", (DEFAULT_SUBJECT, where)), check_rendered_subject)
    template = None
    if "template" in given:
        template = template_file(*given["template"])
        complete &= template is not None
    if not complete or subject is None:
        return False, None, False

    def value(name: str, default: _T) -> _T:
        return given[name][0] if name in given else default

    smtp = SmtpServer(
        host=given["smtp.host"][0],
        port=value("smtp.port", DEFAULT_PORTS[security]),
        security=security,
        username=value("smtp.username", None),
        password_env=value("smtp.password_env", DEFAULT_PASSWORD_ENV),
        timeout=value("smtp.timeout", 30.0),
    )
    webhook = None
    if "webhook.url" in given:
        webhook = Webhook(url=given["webhook.url"][0], format=value("webhook.format", "json"))
    settings = NotifySettings(
        smtp=smtp,
        sender=given["from"][0],
        subject=subject,
        reply_to=value("reply_to", None),
        delivery=value("delivery", "page"),
        pages_prefix=value("pages_prefix", DEFAULT_PAGES_PREFIX),
        template=template,
        per_address=value("per_address", False),
        require_approval=value("require_approval", False),
        webhook=webhook,
    )
    return True, settings, False


def _notify_path(path: PathKey) -> PathKey:
    """The notify mapping a field's path lies in."""
    return path[: len(path) - path[::-1].index("notify")] if "notify" in path else path


class TemplateFiles:
    """Checks template files once each, relative to the manifest's folder."""

    def __init__(self, folder: Path, issues: IssueCollector) -> None:
        self.folder = folder
        self.issues = issues
        self._known: dict[str, str | None] = {}

    def __call__(self, value: str, path: PathKey) -> str | None:
        """The template's absolute path, or None after reporting why it cannot be used."""
        if value not in self._known:
            try:
                self._known[value] = self._check(value)
            except ValueError as exc:
                self.issues.at(path, str(exc))
                self._known[value] = None
        return self._known[value]

    def _check(self, value: str) -> str:
        text = Path(os.path.abspath(self.folder / value))
        if text.suffix.lower() in (".html", ".htm"):
            raise ValueError(
                f"template {show(value)} is the text template; its HTML alternative is found"
                f" beside it ({show(text.with_suffix('.txt').name)} and"
                f" {show(text.with_suffix('.html').name)})"
            )
        _regular(text, value, required=True)
        _regular(text.with_suffix(".html"), value, required=False)
        return str(text)


def html_template(template: str) -> str | None:
    """The HTML alternative of a resolved ``NotifySettings.template``: its ``.html`` sibling
    (``partner.txt`` -> ``partner.html``) when that is a regular file, else None."""
    sibling = Path(template).with_suffix(".html")
    return str(sibling) if sibling.is_file() else None


def _regular(path: Path, written: str, *, required: bool) -> None:
    what = f"template {show(written)}" if required else f"the HTML template {show(path.name)}"
    try:
        status = path.stat()
    except FileNotFoundError:
        if required:
            raise ValueError(
                f"{what} does not exist (looked for {show(str(path), 120)}); the path is"
                " relative to the manifest's folder"
            ) from None
        return
    except OSError as exc:
        raise ValueError(f"{what} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(status.st_mode):
        kind = "a directory" if stat.S_ISDIR(status.st_mode) else "a special file"
        raise ValueError(f"{what} is {kind}, not a regular file")
    if status.st_size > MAX_TEMPLATE_BYTES:
        raise ValueError(f"{what} is {status.st_size} bytes; a template may have at most 1 MiB")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{what} cannot be read: {exc.strerror or exc}") from None


# --- pages against shared prefixes ----------------------------------------------------------


def _written_at(data: Mapping[str, Any], job: int, recipient: int) -> PathKey:
    """Where the pages_prefix of one grant was written, or the notify mapping it comes from."""
    levels = grant_levels(data, job, recipient)
    mappings = []
    for path, node in levels:
        notify = node.get("notify") if isinstance(node, dict) else None
        if isinstance(notify, dict):
            if "pages_prefix" in notify:
                return (*path, "notify", "pages_prefix")
            mappings.append((*path, "notify"))
    return mappings[0] if mappings else ("jobs", job)


def check_pages(
    data: Mapping[str, Any], jobs: list[dict[str, Any]], issues: IssueCollector
) -> None:
    """Refuse a pages folder that a shared prefix or an upload slot of the same store touches.

    A shared prefix over the pages would hand each recipient everyone's pages (and their
    links) on the next run; pages under a shared prefix likewise; an upload slot there would
    let a recipient replace a page, or list pages as uploads. Each conflict is said once
    where the pages_prefix was written, however many grants inherit it.
    """
    grants = [(i, j, g) for i, job in enumerate(jobs) for j, g in enumerate(job["grants"])]
    # What each store holds, each distinct folder once: 10,000 recipients sharing
    # partners/{recipient.id}/ are 10,000 prefixes, compared once per pages folder.
    shared: dict[tuple[str, str | None], dict[str, str]] = {}
    slots: dict[tuple[str, str | None], dict[str, str]] = {}
    for _, _, grant in grants:
        store = (grant["bucket"], grant.get("endpoint_url"))
        for prefix in grant["prefixes"]:
            shared.setdefault(store, {}).setdefault(prefix, grant["job"])
        if grant.get("upload") is not None:
            slots.setdefault(store, {}).setdefault(grant["upload"].prefix, grant["job"])
    conflicts: dict[tuple[tuple[str, str | None], str], list[str]] = {}
    for i, j, grant in grants:
        settings: NotifySettings | None = grant.get("notify")
        if settings is None or settings.delivery != "page":
            continue
        pages = settings.pages_prefix
        store = (grant["bucket"], grant.get("endpoint_url"))
        if (store, pages) not in conflicts:
            conflicts[store, pages] = _conflicts(pages, shared.get(store, {}), slots.get(store, {}))
        for message in conflicts[store, pages]:
            issues.at(_written_at(data, i, j), message)


def _conflicts(pages: str, shared: Mapping[str, str], slots: Mapping[str, str]) -> list[str]:
    found = [
        f"pages_prefix {show(pages)} overlaps {show(prefix)}, shared for download in job"
        f" {show(job)} of the same bucket: recipients would be handed the pages, and their"
        " links; keep pages_prefix apart from shared prefixes"
        for prefix, job in shared.items()
        if _overlap(prefix, pages)
    ]
    found += [
        f"pages_prefix {show(pages)} overlaps the upload prefix {show(prefix)} of job"
        f" {show(job)} in the same bucket: a recipient could replace pages; keep pages_prefix"
        " apart from upload folders"
        for prefix, job in slots.items()
        if _overlap(prefix, pages)
    ]
    return found


def _overlap(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)
