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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sharebatch.errors import LinkError
from sharebatch.files import write_json
from sharebatch.models import NotifySettings, SmtpServer, Webhook

PLAN_FILE = "delivery.json"
VERSION = 1


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

    A file that is not a plan this version wrote raises ``LinkError`` naming it.
    """
    path = run_dir / PLAN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LinkError(f"{path}: not a delivery plan ({type(exc).__name__})") from None
    try:
        return _plan(data)
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


def _plan(data: Any) -> DeliveryPlan:
    if not isinstance(data, Mapping) or data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version') if isinstance(data, Mapping) else None}")
    return DeliveryPlan(
        run_id=str(data["run_id"]), entries=tuple(_entry(e) for e in data["entries"])
    )


def _entry(data: Mapping[str, Any]) -> DeliveryEntry:
    settings = data["settings"]
    page = data.get("page")
    return DeliveryEntry(
        job=str(data["job"]),
        recipient=str(data["recipient"]),
        name=_text(data.get("name")),
        addresses=tuple(str(a) for a in data["addresses"]),
        notify=bool(data["notify"]),
        settings=None if settings is None else _settings(settings),
        bundle=str(data["bundle"]),
        page=None if page is None else StoredPage(**{k: str(page[k]) for k in page}),
        template_text=_text(data.get("template_text")),
        template_html=_text(data.get("template_html")),
    )


def _settings(data: Mapping[str, Any]) -> NotifySettings:
    fields = dict(data)
    fields["smtp"] = SmtpServer(**data["smtp"])
    hook = data.get("webhook")
    fields["webhook"] = None if hook is None else Webhook(**hook)
    return NotifySettings(**fields)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
