"""A real run folder ready for ``notify``: bundles from a quarterly run on moto, a page per
bundle and the ``delivery.json`` the run will write itself once its page stage lands.

Each bundle's page is stored in the bucket and its presigned link written into the bundle
header's ``page_url``, as the run's page stage does; the plan's entries are made from the
bundles found, with the settings and addresses a test chooses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sharebatch import audit
from sharebatch.models import NotifySettings, SmtpServer
from sharebatch.run.delivery_plan import DeliveryEntry, DeliveryPlan, StoredPage, write_plan
from tests.support import secretsguard
from tests.support.quarterly import BUCKET, QuarterlyRun
from tests.support.s3 import S3
from tests.support.smtp import HOST

FILES = {
    "reports/q3/summary.pdf": b"%PDF summary",
    "partners/globex/ledger.csv": b"a,b\n1,2\n",
    "partners/initech/notes.txt": b"initech notes",
}
PASSWORD = "s3cret-smtp-pass"
secretsguard.KNOWN_SECRETS.add(PASSWORD)  # the guard fails any test that shows it


def settings(port: int, **changes: object) -> NotifySettings:
    """Plain SMTP on 127.0.0.1:``port``, our templates, page delivery; ``changes`` override."""
    smtp = SmtpServer(HOST, port, security="none", timeout=5.0)
    base = NotifySettings(
        smtp=smtp,
        sender="Acme Reports <reports@acme.example>",
        subject="Q3 reports for you",
        reply_to="ops@acme.example",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def bulk_job(count: int) -> str:
    """A second job whose ``count`` recipients share ``reports/q3/`` (for many messages)."""
    lines = ["  - name: bulk", "    prefixes: [reports/q3/]", "    recipients:"]
    lines += [f"      - id: r{n:03d}" for n in range(count)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class DeliveryRun:
    """A run folder with bundles, pages and ``delivery.json``."""

    run_dir: Path
    plan: DeliveryPlan

    def header(self, job: str, recipient: str) -> dict[str, object]:
        data = json.loads((self.run_dir / job / recipient / "links.json").read_text())
        header: dict[str, object] = data["header"]
        return header


def delivery_run(
    quarterly: QuarterlyRun,
    settings_for: Callable[[str, str], NotifySettings | None],
    *,
    addresses: Mapping[str, tuple[str, ...]] | None = None,
    notify_off: frozenset[str] = frozenset(),
    extra_jobs: str = "",
    templates: tuple[str | None, str | None] = (None, None),
) -> DeliveryRun:
    """Run the quarterly manifest (``FILES`` plus ``extra_jobs``), then ``write_plan_for``."""
    run_dir = quarterly(FILES, extra_jobs)
    audit.reset()  # the CLI configured stderr logging on its own stream, closed by now
    plan = write_plan_for(
        run_dir,
        quarterly.s3,
        settings_for,
        addresses=addresses,
        notify_off=notify_off,
        templates=templates,
    )
    return DeliveryRun(run_dir, plan)


def write_plan_for(
    run_dir: Path,
    s3: S3,
    settings_for: Callable[[str, str], NotifySettings | None],
    *,
    addresses: Mapping[str, tuple[str, ...]] | None = None,
    notify_off: frozenset[str] = frozenset(),
    templates: tuple[str | None, str | None] = (None, None),
) -> DeliveryPlan:
    """Store a page per bundle of ``run_dir``, put its link in the header, write the plan.

    ``addresses``: by recipient id (default ``<id>@partners.example``); ``notify_off``:
    recipient ids left out with ``notify: false``.
    """
    entries = []
    for bundle in sorted(run_dir.glob("*/*/links.json")):
        job, recipient = bundle.parent.parent.name, bundle.parent.name
        data = json.loads(bundle.read_text())
        page = f"<!DOCTYPE html><title>{recipient}</title>".encode()
        key = f"_sharebatch/pages/{hashlib.sha256(bundle.read_bytes()).hexdigest()[:24]}.html"
        s3.client.put_object(Bucket=BUCKET, Key=key, Body=page, ContentType="text/html")
        if "page_url" not in data["header"]:  # the run's own page, once its stage stores one
            data["header"]["page_url"] = s3.client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600
            )
            bundle.write_text(json.dumps(data, indent=2))
        off = recipient in notify_off
        entries.append(
            DeliveryEntry(
                job=job,
                recipient=recipient,
                name=data["header"]["recipient_name"],
                addresses=(addresses or {}).get(recipient, (f"{recipient}@partners.example",)),
                notify=not off,
                settings=None if off else settings_for(job, recipient),
                bundle=str(bundle.relative_to(run_dir)),
                page=StoredPage(
                    key, hashlib.sha256(page).hexdigest(), data["header"]["expires_at"]
                ),
                template_text=templates[0],
                template_html=templates[1],
            )
        )
    plan = DeliveryPlan(run_id=run_dir.name, entries=tuple(entries))
    write_plan(run_dir, plan)
    return plan
