"""A real run of the quarterly manifest on moto whose bundles wait for approval.

globex is mailed its page (``delivery: page``: the run stores it, and its digest is in
``delivery.json``), initech its links (no page); both require approval unless told otherwise.
``with_page_digest`` stands in for a page refreshed after approval (a later ``remind``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sharebatch.run.delivery_plan import DeliveryPlan, read_plan, write_plan
from tests.support.delivery_run import delivery_run, settings
from tests.support.quarterly import QuarterlyRun

FILES = {
    "reports/q3/summary.pdf": b"%PDF summary",
    "partners/globex/statement.csv": b"globex,1\n" * 40,
    "partners/initech/statement.csv": b"initech,2\n" * 40,
}


def gated_run(quarterly: QuarterlyRun, *, require_approval: bool = True) -> Path:
    """Run the quarterly manifest with notify: settings requiring approval; the run folder."""
    gated = settings(2525, subject="2026-Q3 reports", require_approval=require_approval)
    links = dataclasses.replace(gated, delivery="links")
    run = delivery_run(
        quarterly,
        lambda job, r: gated if r == "globex" else links,
        addresses={"globex": ("finance@globex.example",), "initech": ("it@initech.example",)},
        files=FILES,
    )
    return run.run_dir


def page_digest(run_dir: Path, recipient: str) -> str:
    """The sha256 of ``recipient``'s page as the run recorded it in ``delivery.json``."""
    plan = read_plan(run_dir)
    assert plan is not None
    [entry] = [e for e in plan.entries if e.recipient == recipient]
    assert entry.page is not None
    return entry.page.sha256


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
