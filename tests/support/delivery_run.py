"""A real run folder ready for ``notify``: the quarterly manifest with a ``notify:`` section,
run through the CLI on moto, so the run itself stores the pages, writes ``page_url`` into the
bundle headers and writes ``delivery.json``.

Tests choose settings as ``NotifySettings`` values (per job and recipient); ``notify_yaml``
writes them as the manifest's ``notify:`` mapping, each recipient its own, and the manifest
loader reads them back. What the product cannot do (a hand-edited ``delivery.json``) is left to
``edit_plan``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from sharebatch import audit
from sharebatch.cli import app
from sharebatch.models import NotifySettings, SmtpServer
from sharebatch.run.delivery_plan import DeliveryEntry, DeliveryPlan, read_plan, write_plan
from tests.support import secretsguard
from tests.support.quarterly import BUCKET, MANIFEST, QuarterlyRun
from tests.support.s3 import write_manifest
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


def notify_yaml(chosen: NotifySettings) -> dict[str, Any]:
    """``chosen`` as the manifest's ``notify:`` mapping (the subject taken as a template)."""
    smtp = dataclasses.asdict(chosen.smtp)
    if smtp["username"] is None:
        del smtp["username"]
    data: dict[str, Any] = {
        "smtp": smtp,
        "from": chosen.sender,
        "subject": chosen.subject,
        "delivery": chosen.delivery,
        "pages_prefix": chosen.pages_prefix,
        "per_address": chosen.per_address,
        "require_approval": chosen.require_approval,
    }
    if chosen.reply_to is not None:
        data["reply_to"] = chosen.reply_to
    if chosen.template is not None:
        data["template"] = chosen.template
    if chosen.webhook is not None:
        data["webhook"] = dataclasses.asdict(chosen.webhook)
    return data


@dataclass(frozen=True)
class DeliveryRun:
    """A run folder with bundles, pages and ``delivery.json``, all written by the run."""

    run_dir: Path
    plan: DeliveryPlan
    manifest: Path

    def header(self, job: str, recipient: str) -> dict[str, object]:
        data = json.loads((self.run_dir / job / recipient / "links.json").read_text())
        header: dict[str, object] = data["header"]
        return header


def notify_manifest(
    folder: Path,
    settings_for: Callable[[str, str], NotifySettings | None],
    *,
    addresses: Mapping[str, tuple[str, ...]] | None = None,
    notify_off: frozenset[str] = frozenset(),
    extra_jobs: str = "",
    templates: tuple[str | None, str | None] = (None, None),
) -> Path:
    """The quarterly manifest (plus ``extra_jobs``) with a ``notify:`` and ``email:`` per
    recipient, written in ``folder``; its path.

    ``addresses``: by recipient id (default ``<id>@partners.example``; empty: no ``email:``);
    ``notify_off``: recipient ids given ``notify: false``; ``templates``: the text and HTML
    template files' contents (written beside the manifest), None for ours.
    """
    data = yaml.safe_load(MANIFEST + extra_jobs)
    template = None
    if templates[0] is not None:
        template = folder / "partner.txt"
        template.write_text(templates[0], encoding="utf-8")
        if templates[1] is not None:
            template.with_suffix(".html").write_text(templates[1], encoding="utf-8")
    for job in data["jobs"]:
        for recipient in job["recipients"]:
            rid = recipient["id"]
            people = (addresses or {}).get(rid, (f"{rid}@partners.example",))
            recipient.pop("email", None)
            if people:
                recipient["email"] = list(people) if len(people) > 1 else people[0]
            if rid in notify_off:
                recipient["notify"] = False
                continue
            chosen = settings_for(job["name"], rid)
            if chosen is not None:
                if template is not None:
                    chosen = replace(chosen, template=template.name)
                recipient["notify"] = notify_yaml(chosen)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return write_manifest(folder / "delivery.yml", text)


def delivery_run(
    quarterly: QuarterlyRun,
    settings_for: Callable[[str, str], NotifySettings | None],
    *,
    addresses: Mapping[str, tuple[str, ...]] | None = None,
    notify_off: frozenset[str] = frozenset(),
    extra_jobs: str = "",
    templates: tuple[str | None, str | None] = (None, None),
    files: Mapping[str, bytes] = FILES,
) -> DeliveryRun:
    """Seed ``files``, run ``notify_manifest``'s manifest through the CLI; the run folder."""
    quarterly.s3.bucket(BUCKET, dict(files))
    manifest = notify_manifest(
        quarterly.folder,
        settings_for,
        addresses=addresses,
        notify_off=notify_off,
        extra_jobs=extra_jobs,
        templates=templates,
    )
    result = CliRunner().invoke(
        app,
        ["run", str(manifest), "--out", str(quarterly.folder / "out"),
         "--endpoint-url", quarterly.s3.endpoint],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    audit.reset()  # the CLI configured stderr logging on its own stream, closed by now
    run_dir = Path(result.stdout.strip().splitlines()[0])
    plan = read_plan(run_dir)
    assert plan is not None, "the run wrote no delivery.json"
    return DeliveryRun(run_dir, plan, manifest)


def edit_plan(run: DeliveryRun, change: Callable[[DeliveryEntry], DeliveryEntry]) -> DeliveryRun:
    """Rewrite the run's ``delivery.json`` with each entry changed: a hand-edited plan, which
    the manifest loader would have refused (what delivery must still defend against)."""
    plan = DeliveryPlan(run.plan.run_id, tuple(change(e) for e in run.plan.entries))
    write_plan(run.run_dir, plan)
    return dataclasses.replace(run, plan=plan)
