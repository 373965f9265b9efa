"""``delivery.json``: what a run hands to delivery (``notify``, ``remind``, ``approve``).

The run writes it (0600) beside ``summary.json`` when any grant has ``notify:`` settings or
was left out with ``notify: false``. Delivery reads only this file and the bundles: never the
manifest again, which may have been edited since. The templates' text is copied in, so a
later edit of a template file cannot change a message for a run already reviewed. It holds no
URL and no password (the page's URL lives in the bundle's header, ``page_url``; the password
is read from the environment when a message is sent).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from sharebatch.errors import LinkError
from sharebatch.files import write_json
from sharebatch.manifest.fields import check_address, check_slug, check_text
from sharebatch.manifest.notify import (
    MAX_TIMEOUT,
    check_host,
    check_mailbox,
    check_pages_prefix,
    check_rendered_subject,
    check_webhook_url,
    is_loopback,
)
from sharebatch.models import (
    DeliveryKind,
    NotifySettings,
    SmtpSecurity,
    SmtpServer,
    Webhook,
    WebhookFormat,
)
from sharebatch.visible import visible

PLAN_FILE = "delivery.json"
VERSION = 1
SMTP_SECURITIES: tuple[str, ...] = get_args(SmtpSecurity)
DELIVERY_KINDS: tuple[str, ...] = get_args(DeliveryKind)
WEBHOOK_FORMATS: tuple[str, ...] = get_args(WebhookFormat)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # as manifest.notify's password_env


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A recipient page the run stored: its key in the bundle's bucket, its digest, its end."""

    key: str
    sha256: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class DeliveryEntry:
    """One bundle (job x recipient) as delivery sees it.

    ``notify`` False: ``notify: false`` left it out on purpose. ``settings`` None: no
    ``notify:`` settings reached it at all. ``bundle`` is ``links.json``'s path relative to
    the run folder.
    """

    job: str
    recipient: str
    name: str | None
    addresses: tuple[str, ...]
    notify: bool
    settings: NotifySettings | None
    bundle: str
    page: StoredPage | None = None
    template_text: str | None = None
    template_html: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.job, self.recipient)


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    run_id: str
    entries: tuple[DeliveryEntry, ...]

    def webhooks(self) -> tuple[Webhook, ...]:
        """Every distinct webhook any entry's settings name, in first-seen order."""
        seen: dict[Webhook, None] = {}
        for entry in self.entries:
            if entry.settings is not None and entry.settings.webhook is not None:
                seen.setdefault(entry.settings.webhook)
        return tuple(seen)


def write_plan(run_dir: Path, plan: DeliveryPlan) -> str:
    """Write ``run_dir/delivery.json`` atomically and 0600; return its sha256."""
    return write_json(run_dir / PLAN_FILE, _plan_json(plan))


def read_plan(run_dir: Path) -> DeliveryPlan | None:
    """The run's delivery plan; None when the run wrote none (no ``notify:`` settings).

    A file that is not a plan this version wrote raises ``LinkError`` naming it; so does an
    entry holding what the manifest loader refuses (an edit after the run), naming the entry
    and the field.
    """
    path = run_dir / PLAN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LinkError(f"{path}: not a delivery plan ({type(exc).__name__})") from None
    try:
        return _plan(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise LinkError(f"{path}: not a delivery plan this version wrote ({exc})") from None


def entry_digest(entry: DeliveryEntry) -> str:
    """sha256 of the entry as this file holds it (sorted keys), its ``page`` left out.

    An approval records it: who gets the mail and how (addresses, settings, templates) is
    then bound to the approval like the bundle's bytes. The page has its own digest, which a
    refreshed page changes without a new review of the rest.
    """
    data = _entry_json(entry)
    del data["page"]
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plan_json(plan: DeliveryPlan) -> dict[str, Any]:
    return {
        "version": VERSION,
        "run_id": plan.run_id,
        "entries": [_entry_json(entry) for entry in plan.entries],
    }


def _entry_json(entry: DeliveryEntry) -> dict[str, Any]:
    data = asdict(entry)
    data["addresses"] = list(entry.addresses)
    return data


class _Refused(Exception):
    """One field of an entry that the manifest loader would have refused."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Name the field whose value a check inside refuses (a missing key or a wrong type too)."""
    try:
        yield
    except _Refused:
        raise
    except KeyError:
        raise _Refused(name, "missing") from None
    except (TypeError, ValueError) as exc:
        raise _Refused(name, str(exc) or type(exc).__name__) from None


def _plan(data: Any, path: Path) -> DeliveryPlan:
    if not isinstance(data, Mapping) or data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version') if isinstance(data, Mapping) else None}")
    entries = []
    for number, entry in enumerate(data["entries"], 1):
        try:
            entries.append(_entry(entry))
        except _Refused as bad:
            raise LinkError(
                f"{path}: entry {number} ({_where(entry)}), {bad.field}: {bad.reason}"
            ) from None
    return DeliveryPlan(run_id=str(data["run_id"]), entries=tuple(entries))


def _where(entry: object) -> str:
    if not isinstance(entry, Mapping):
        return "not a mapping"
    return f"{visible(str(entry.get('job')))}/{visible(str(entry.get('recipient')))}"


# Checked again when read, with the manifest's own checks: the file can be edited after the
# run (and after approval), and what it holds reaches mail headers, servers and file names.


def _entry(data: Any) -> DeliveryEntry:
    if not isinstance(data, Mapping):
        raise _Refused("entry", "not a mapping")
    with _field("job"):
        job = check_slug(_string(data["job"]), "job name")
    with _field("recipient"):
        recipient = check_slug(_string(data["recipient"]), "recipient id")
    with _field("name"):
        name = _optional(data.get("name"))
    with _field("addresses"):
        addresses = tuple(check_address(_string(a), "address") for a in _list(data["addresses"]))
    with _field("notify"):
        notify = _bool(data["notify"])
    settings = data["settings"] if "settings" in data else _missing("settings")
    with _field("bundle"):
        bundle = _string(data["bundle"])
        if bundle not in (f"{job}/{recipient}/links.json", f"{job}/{recipient}/links.csv"):
            raise ValueError(f"{visible(bundle)} is not this entry's links.json or links.csv")
    page = data.get("page")
    with _field("page"):
        stored = None if page is None else StoredPage(**{k: _string(page[k]) for k in page})
    with _field("template_text"):
        template_text = _optional(data.get("template_text"))
    with _field("template_html"):
        template_html = _optional(data.get("template_html"))
    return DeliveryEntry(
        job=job,
        recipient=recipient,
        name=name,
        addresses=addresses,
        notify=notify,
        settings=None if settings is None else _settings(settings),
        bundle=bundle,
        page=stored,
        template_text=template_text,
        template_html=template_html,
    )


def _settings(data: Any) -> NotifySettings:
    with _field("settings"):
        fields = dict(_mapping(data))
    fields["smtp"] = _smtp(fields["smtp"] if "smtp" in fields else _missing("settings.smtp"))
    hook = fields.get("webhook")
    fields["webhook"] = None if hook is None else _webhook(hook)
    checks: dict[str, Callable[[Any], object]] = {
        "sender": lambda v: check_mailbox(_string(v), "from"),
        "reply_to": lambda v: None if v is None else check_mailbox(_string(v), "reply_to"),
        "subject": lambda v: check_rendered_subject(_string(v)),
        "delivery": lambda v: _one_of(v, DELIVERY_KINDS),
        "pages_prefix": lambda v: check_pages_prefix(_string(v)),
        "template": _optional,
        "per_address": _bool,
        "require_approval": _bool,
    }
    for name, check in checks.items():
        if name in fields:
            with _field(f"settings.{name}"):
                fields[name] = check(fields[name])
    with _field("settings"):
        return NotifySettings(**fields)


def _smtp(data: Any) -> SmtpServer:
    with _field("settings.smtp"):
        fields = dict(_mapping(data))
    checks: dict[str, Callable[[Any], object]] = {
        "host": lambda v: check_host(_string(v)),
        "port": _port,
        "security": lambda v: _one_of(v, SMTP_SECURITIES),
        "username": lambda v: None if v is None else check_text(_string(v), "username"),
        "password_env": _env_name,
        "timeout": _timeout,
    }
    for name, check in checks.items():
        if name in fields:
            with _field(f"settings.smtp.{name}"):
                fields[name] = check(fields[name])
    with _field("settings.smtp"):
        smtp = SmtpServer(**fields)
    if smtp.security == "none" and not is_loopback(smtp.host):
        raise _Refused(
            "settings.smtp.security",
            "none sends the password and every link in clear text; it is allowed only towards"
            " this machine (localhost, 127.0.0.1)",
        )
    return smtp


def _webhook(data: Any) -> Webhook:
    with _field("settings.webhook"):
        fields = dict(_mapping(data))
    if "url" in fields:
        with _field("settings.webhook.url"):
            fields["url"] = check_webhook_url(_string(fields["url"]))
    if "format" in fields:
        with _field("settings.webhook.format"):
            fields["format"] = _one_of(fields["format"], WEBHOOK_FORMATS)
    with _field("settings.webhook"):
        return Webhook(**fields)


def _missing(field: str) -> Any:
    raise _Refused(field, "missing")


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _optional(value: object) -> str | None:
    return None if value is None else _string(value)


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _mapping(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {type(value).__name__}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _one_of(value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return str(value)


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be a whole number from 1 to 65535")
    return value


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected seconds, got {type(value).__name__}")
    if not 0 < value <= MAX_TIMEOUT:
        raise ValueError(f"must be more than 0 and at most {MAX_TIMEOUT} seconds")
    return float(value)


def _env_name(value: object) -> str:
    if not _ENV_NAME.fullmatch(_string(value)):
        raise ValueError("must name an environment variable: letters, digits and '_'")
    return str(value)
