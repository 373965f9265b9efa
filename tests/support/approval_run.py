"""A real run of the quarterly manifest on moto with a delivery plan written for it.

The run stage does not write ``delivery.json`` for this manifest (it has no ``notify:``), so the
helper writes one with ``write_plan`` for the bundles the run made: what approvals and
webhooks need, whatever the run stage does about pages.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sharebatch import audit
from sharebatch.models import NotifySettings, SmtpServer
from sharebatch.run.delivery_plan import (
    DeliveryEntry,
    DeliveryPlan,
    StoredPage,
    read_plan,
    write_plan,
)
from tests.support.quarterly import QuarterlyRun

FILES = {
    "reports/q3/summary.pdf": b"%PDF summary",
    "partners/globex/statement.csv": b"globex,1\n" * 40,
    "partners/initech/statement.csv": b"initech,2\n" * 40,
}

SETTINGS = NotifySettings(
    smtp=SmtpServer(host="127.0.0.1", port=2525, security="none"),
    sender="Acme Reports <reports@acme.example>",
    subject="2026-Q3 reports",
    require_approval=True,
)


def gated_run(quarterly: QuarterlyRun, *, require_approval: bool = True) -> Path:
    """Run the quarterly manifest; write a delivery plan for its two bundles; the run folder.

    globex has a page (a made-up digest: the plan is what approvals read), initech none.
    """
    run_dir = quarterly(FILES)
    audit.reset()  # the CLI pointed log lines at its own (now closed) stderr
    settings = dataclasses.replace(SETTINGS, require_approval=require_approval)
    page = StoredPage("_sharebatch/pages/x.html", "a" * 64, "2026-10-09T09:30:00Z")
    entries = (
        DeliveryEntry(
            "q3", "globex", "Globex Corporation", ("finance@globex.example",), True,
            settings, "q3/globex/links.json", page,
        ),
        DeliveryEntry(
            "q3", "initech", None, ("it@initech.example",), True, settings,
            "q3/initech/links.json",
        ),
    )  # fmt: skip
    write_plan(run_dir, DeliveryPlan(run_dir.name, entries))
    return run_dir


def with_page_digest(run_dir: Path, recipient: str, sha256: str) -> None:
    """Rewrite the run's plan with another page digest for ``recipient`` (a page refreshed)."""
    plan = read_plan(run_dir)
    assert plan is not None
    entries = tuple(
        dataclasses.replace(e, page=dataclasses.replace(e.page, sha256=sha256))
        if e.recipient == recipient and e.page is not None
        else e
        for e in plan.entries
    )
    write_plan(run_dir, DeliveryPlan(plan.run_id, entries))
