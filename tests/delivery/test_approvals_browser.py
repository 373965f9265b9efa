"""The review page's approvals, as Chromium shows them after `sharebatch approve`.

Headless Chromium over the DevTools protocol (tests/support/chromium.py): the refreshed page
still runs under its Content-Security-Policy (no error, no request), the approvals table shows
each bundle's state, and the search box filters it like the page's other tables. Skipped,
saying so, where Chromium is absent; CI sets SHAREBATCH_REQUIRE_CHROMIUM=1 so it cannot skip.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sharebatch.delivery.approvals import approve
from tests.support.approval_run import gated_run
from tests.support.chromium import chromium
from tests.support.quarterly import QuarterlyRun

APPROVAL_ROWS = """
Array.from(document.querySelectorAll('#approvals tbody tr'))
  .filter(r => !r.hidden && r.getClientRects().length > 0)
  .map(r => Array.from(r.cells).map(c => c.textContent))
"""


async def browse(executable: str, page_path: Path, profile: Path) -> dict[str, Any]:
    """Open the page, read the approvals table, search for one recipient; what was seen."""
    seen: dict[str, Any] = {}
    async with chromium(executable, profile) as browser:
        page = await browser.new_page(1280, 900)
        await page.send("Page.navigate", url=page_path.as_uri())
        await page.wait_for("Page.loadEventFired")
        seen["rows"] = await page.evaluate(APPROVAL_ROWS)
        seen["note"] = await page.evaluate("document.getElementById('approvals-note').textContent")
        seen["count"] = await page.evaluate(
            "document.getElementById('approvals-count').textContent"
        )
        await page.evaluate("document.getElementById('search').focus()")
        await page.send("Input.insertText", text="initech")
        seen["initech"] = await page.evaluate(APPROVAL_ROWS)
        seen["requests"] = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
        seen["exceptions"] = page.events("Runtime.exceptionThrown")
        seen["errors"] = [
            e["entry"] for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"
        ]
    return seen


def test_approvals_show_in_the_review_page_in_chromium(
    executable: str, quarterly: QuarterlyRun, tmp_path: Path
) -> None:
    """After approving one recipient, Chromium shows it approved (by whom, when), the other
    not, and filters the table; the page loads nothing and logs no error."""
    run_dir = gated_run(quarterly)
    now = datetime(2026, 10, 2, 9, 45, tzinfo=UTC)
    approve(run_dir, by="alice", only=["globex"], now=now)
    page = run_dir / "index.html"
    seen = asyncio.run(browse(executable, page, tmp_path / "profile"))
    assert seen["rows"] == [
        ["q3", "globex", "approved", "yes", "alice", "2026-10-02T09:45:00Z"],
        ["q3", "initech", "not approved", "yes", "", ""],
    ]
    assert seen["note"].startswith("1 of 2 bundles to be mailed are approved")
    assert seen["count"] == "2 of 2 shown"
    assert seen["initech"] == [["q3", "initech", "not approved", "yes", "", ""]]
    assert all(url == page.as_uri() for url in seen["requests"])
    assert seen["exceptions"] == [] and seen["errors"] == []
