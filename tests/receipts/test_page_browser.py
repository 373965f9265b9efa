"""The receipts block in a real browser: headless Chromium over the DevTools protocol.

The review page's Content-Security-Policy allows only its own stylesheet and script, so the
inline SVG chart must draw with presentation attributes alone. Chromium reports every CSP
refusal as a ``securitypolicyviolation`` event (recorded by a script the test adds before the
page loads; DevTools scripts are not subject to the page's CSP): none may happen, the bars
and labels must be laid out, and no request may leave the page. A control page with one
``style`` attribute added shows that a violation would be seen. Skipped, saying so, where
Chromium is absent (CI sets SHAREBATCH_REQUIRE_CHROMIUM=1 so it cannot skip there).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sharebatch.receipts.page import refresh_receipts
from tests.support.chromium import chromium
from tests.support.quarterly import QuarterlyRun
from tests.support.usage_json import Download, build_usage

NOW = datetime.now(UTC).replace(microsecond=0)
FILES = {
    "reports/q3/summary.pdf": b"%PDF" + b"s" * 900,
    "partners/globex/statement.csv": b"globex,1\n" * 40,
    "partners/initech/statement.csv": b"initech,2\n" * 3,
}
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""
CHART = """
(() => {
  const svg = document.getElementById('receipts-chart');
  const box = svg.getBoundingClientRect();
  const bars = Array.from(svg.querySelectorAll('rect.bar')).map(r => {
    const b = r.getBoundingClientRect();
    return [r.dataset.day, r.dataset.series, Number(r.dataset.downloads), b.width, b.height,
            getComputedStyle(r).fill];
  });
  const labels = Array.from(svg.querySelectorAll('text')).map(t => [t.getAttribute('class'),
    t.textContent, t.getBoundingClientRect().width]);
  return {width: box.width, height: box.height, bars: bars, labels: labels,
          rows: Array.from(document.querySelectorAll('#receipts tbody tr'))
            .map(r => r.cells[1].textContent)};
})()
"""


async def browse(executable: str, pages: list[Path], profile: Path) -> list[dict[str, Any]]:
    """Open each page; what Chromium saw: violations, chart geometry, requests, errors."""
    seen = []
    async with chromium(executable, profile) as browser:
        for path in pages:
            page = await browser.new_page(1280, 900)
            await page.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_VIOLATIONS)
            await page.send("Page.navigate", url=path.as_uri())
            await page.wait_for("Page.loadEventFired")
            found: dict[str, Any] = await page.evaluate(CHART)
            found["violations"] = await page.evaluate("window.__violations")
            found["requests"] = [
                e["request"]["url"] for e in page.events("Network.requestWillBeSent")
            ]
            found["errors"] = [
                e["entry"]["text"]
                for e in page.events("Log.entryAdded")
                if e["entry"]["level"] == "error"
            ]
            seen.append(found)
    return seen


def test_receipts_chart_renders_under_the_pages_csp(
    executable: str, quarterly: QuarterlyRun, tmp_path: Path
) -> None:
    """No CSP violation; every bar drawn with its height and colour, the day, axis and legend
    labels laid out; nothing requested but the page itself. A style attribute would be seen."""
    run_dir = quarterly(FILES)
    downloads = [
        Download("q3", "globex", "reports/q3/summary.pdf", NOW - timedelta(days=3)),
        Download("q3", "globex", "partners/globex/statement.csv", NOW - timedelta(days=3)),
        Download("q3", "globex", "reports/q3/summary.pdf", NOW - timedelta(days=1)),
        Download("q3", "initech", "reports/q3/summary.pdf", NOW - timedelta(days=1)),
    ]
    usage = build_usage(run_dir, downloads, generated_at=NOW)
    page = run_dir / "index.html"
    assert refresh_receipts(page, usage.data) is not None
    control = tmp_path / "control.html"
    control.write_text(
        page.read_text(encoding="utf-8").replace(
            '<rect class="bar"', '<rect style="" class="bar"', 1
        ),
        encoding="utf-8",
    )
    seen, spoiled = asyncio.run(browse(executable, [page, control], tmp_path / "profile"))

    assert seen["violations"] == [] and seen["errors"] == []
    assert seen["requests"] == [page.as_uri()]
    daily = usage.data["daily"]
    assert sorted([d, s, n] for d, s, n, *_ in seen["bars"]) == sorted(
        [e["day"], f"{e['job']}/{e['recipient']}", e["downloads"]] for e in daily
    )
    for *_, width, height, fill in seen["bars"]:
        assert width > 0 and height > 0 and fill.startswith("rgb(")
    # Stacked on one scale: the day of 2 downloads is twice as tall as a day of 1.
    heights = {n: h for _, _, n, _, h, _ in seen["bars"]}
    assert sorted(heights) == [1, 2] and abs(heights[2] - 2 * heights[1]) < 0.5
    kinds = {(kind, text) for kind, text, width in seen["labels"] if width > 0}
    assert ("legend", "q3/globex (3)") in kinds and ("legend", "q3/initech (1)") in kinds
    assert ("axis", "2") in kinds and ("axis", "0") in kinds
    first_day = (NOW - timedelta(days=3)).strftime("%m-%d")
    assert ("day", first_day) in kinds
    assert seen["width"] > 0 and seen["height"] > 0
    assert seen["rows"] == ["globex", "initech"]

    # The control: one inline style attribute is a violation Chromium reports.
    assert spoiled["violations"] and spoiled["violations"][0].startswith("style-src")
