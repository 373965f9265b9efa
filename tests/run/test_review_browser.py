"""The review page in a real browser: headless Chromium over the DevTools protocol.

It renders with its own CSS and JavaScript (the Content-Security-Policy allows nothing else),
typing in the search box hides the rows that do not match, a column header sorts, no request
leaves the page, and a screenshot is taken. Skipped, saying so, where Chromium is absent;
CI (.ci/run) installs it and sets SHAREBATCH_REQUIRE_CHROMIUM=1 so the test cannot skip there.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from sharebatch.s3.probe import browser_url
from sharebatch.visible import visible
from tests.support.chromium import chromium
from tests.support.quarterly import QuarterlyRun

WIDTH, HEIGHT = 1280, 900

FILES = {
    "reports/q3/summary.pdf": b"%PDF" + b"s" * 5000,
    "reports/q3/data.csv": b"a,b\n1,2\n",
    "reports/q3/notes.txt": b"n" * 700,
    "partners/globex/statement.csv": b"globex,1\n" * 100,
    "partners/initech/statement.csv": b"initech,2\n" * 3,
}

VISIBLE_ROWS = """
Array.from(document.querySelectorAll('#files tbody tr'))
  .filter(r => !r.hidden && r.getClientRects().length > 0)
  .map(r => [r.cells[1].textContent, r.cells[2].textContent, Number(r.cells[3].dataset.sort)])
"""


def bundle_rows(run_dir: Path, recipient: str) -> list[dict[str, str]]:
    with (run_dir / "q3" / recipient / "links.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def browse(executable: str, page_path: Path, profile: Path) -> dict[str, Any]:
    """Open the page, search, sort and take a screenshot; return what was observed."""
    seen: dict[str, Any] = {}
    url = page_path.as_uri()
    async with chromium(executable, profile) as browser:
        page = await browser.new_page(WIDTH, HEIGHT)
        await page.send("Page.navigate", url=url)
        await page.wait_for("Page.loadEventFired")
        seen["title"] = await page.evaluate("document.title")
        seen["all"] = await page.evaluate(VISIBLE_ROWS)
        seen["count_before"] = await page.evaluate(
            "document.getElementById('files-count').textContent"
        )
        seen["styled"] = await page.evaluate(
            "getComputedStyle(document.querySelector('table')).borderCollapse"
        )

        # Type as a user would: focus the box, insert text (fires the input event).
        await page.evaluate("document.getElementById('search').focus()")
        await page.send("Input.insertText", text="GLOBEX")
        seen["globex"] = await page.evaluate(VISIBLE_ROWS)
        seen["count_globex"] = await page.evaluate(
            "document.getElementById('files-count').textContent"
        )
        seen["recipients_globex"] = await page.evaluate(
            "Array.from(document.querySelectorAll('#recipients tbody tr'))"
            ".filter(r => !r.hidden).map(r => r.cells[1].textContent)"
        )
        shot = await page.send("Page.captureScreenshot", format="png")
        seen["screenshot"] = base64.b64decode(shot["data"])

        await page.evaluate("document.getElementById('search').select()")
        await page.send("Input.insertText", text="statement initech")
        seen["two_words"] = await page.evaluate(VISIBLE_ROWS)
        await page.evaluate("document.getElementById('search').select()")
        await page.send("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                        windowsVirtualKeyCode=8)  # fmt: skip
        await page.send("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace",
                        windowsVirtualKeyCode=8)  # fmt: skip

        # Click the files table's Size header, as a mouse would, twice.
        box = await page.evaluate(
            "(() => { const b = Array.from(document.querySelectorAll('#files th button'))"
            ".find(b => b.textContent === 'Size').getBoundingClientRect();"
            " return [b.x + b.width / 2, b.y + b.height / 2]; })()"
        )
        for order in ("ascending", "descending"):
            for kind in ("mousePressed", "mouseReleased"):
                await page.send(
                    "Input.dispatchMouseEvent",
                    type=kind, x=box[0], y=box[1], button="left", clickCount=1,
                )  # fmt: skip
            seen[order] = await page.evaluate(VISIBLE_ROWS)

        seen["requests"] = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
        seen["exceptions"] = page.events("Runtime.exceptionThrown")
        seen["errors"] = [
            e["entry"] for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"
        ]
        seen["console"] = page.events("Runtime.consoleAPICalled")
    return seen


def test_review_page_in_chromium(
    executable: str, quarterly: QuarterlyRun, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The page renders, search filters rows, headers sort, nothing loads; a screenshot is taken."""
    run_dir = quarterly(FILES)
    seen = asyncio.run(browse(executable, run_dir / "index.html", tmp_path / "profile"))

    rows = bundle_rows(run_dir, "globex") + bundle_rows(run_dir, "initech")
    everything = [[r["recipient"], r["key"], int(r["size"])] for r in rows]
    assert seen["title"] == f"sharebatch review {run_dir.name}"
    assert seen["styled"] == "collapse"  # the inline stylesheet was allowed and applied
    assert seen["all"] == everything
    assert seen["count_before"] == f"{len(rows)} of {len(rows)} shown"

    globex = [row for row in everything if row[0] == "globex"]
    assert seen["globex"] == globex  # search is case-insensitive
    assert seen["count_globex"] == f"{len(globex)} of {len(rows)} shown"
    assert seen["recipients_globex"] == ["globex"]
    initech = "partners/initech/statement.csv"
    assert seen["two_words"] == [["initech", initech, len(FILES[initech])]]

    by_size = sorted(everything, key=lambda row: row[2])
    assert seen["ascending"] == by_size  # every row again: the search box was emptied
    assert seen["descending"] == by_size[::-1]

    assert all(url == (run_dir / "index.html").as_uri() for url in seen["requests"])
    assert seen["exceptions"] == [] and seen["errors"] == [] and seen["console"] == []

    png = seen["screenshot"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (WIDTH, HEIGHT)
    shot = tmp_path / "review.png"
    shot.write_bytes(png)
    artifacts = os.environ.get("SHAREBATCH_ARTIFACTS")
    if artifacts:  # CI keeps the screenshot for a human to look at
        shutil.copy(shot, Path(artifacts) / f"{request.node.name}.png")


# Where each character of each key cell is drawn: left edges in logical order.
KEY_GLYPHS = """
Array.from(document.querySelectorAll('#files td.key')).map(td => {
  const node = td.firstChild, range = document.createRange(), lefts = [];
  for (let i = 0; i < node.length; i++) {
    range.setStart(node, i); range.setEnd(node, i + 1);
    lefts.push(range.getBoundingClientRect().left);
  }
  return [td.textContent, lefts];
})
"""


async def key_cells(executable: str, page_path: Path, profile: Path) -> list[Any]:
    async with chromium(executable, profile) as browser:
        page = await browser.new_page(WIDTH, HEIGHT)
        await page.send("Page.navigate", url=page_path.as_uri())
        await page.wait_for("Page.loadEventFired")
        cells: list[Any] = await page.evaluate(KEY_GLYPHS)
        cells.append(await page.evaluate("document.querySelector('#files').innerText"))
    return cells


def test_hidden_characters_render_escaped_and_in_order(
    executable: str, quarterly: QuarterlyRun, tmp_path: Path
) -> None:
    """Chromium shows a key's U+202E, U+2028, ESC and BEL as escapes, and draws every
    character of it left to right: the override cannot reorder 'gnp.exe.pdf' into view."""
    keys = ["evil/\u202egnp.exe.pdf", "evil/line\u2028sep.txt", "evil/bell\x07esc\x1b[2J.txt"]
    share = "  - name: share\n    prefixes: [evil/]\n    recipients: [{id: alice}]\n"
    run_dir = quarterly(dict.fromkeys(keys, b"x"), share)
    *cells, table_text = asyncio.run(key_cells(executable, run_dir / "index.html", tmp_path / "p"))
    assert sorted(text for text, _ in cells) == sorted(visible(key) for key in keys)
    assert "evil/\\u202egnp.exe.pdf" in [text for text, _ in cells]
    for text, lefts in cells:
        assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts), text
    assert all(char not in table_text for char in "\u202e\u2028\x07\x1b\x00")


# The path a browser sends for each URL, by Chromium's own WHATWG URL parser.
WHATWG_PATHS = [
    "/b/a/./b.pdf", "/b/evil/../../etc/passwd", "/b/a/%2e%2E/x", "/b/a/.%2e/x", "/b/a/%2E./x",
    "/b/a/%2e/x", "/b/a/..", "/b/a/.", "/b/a\\..\\x", "/b/a//x", "/b/a/.../x",
    "/b/a/%252e%252e/x", "/..", "/b/a/%2e%2e", "/b/..%2f/x", "/b/x/..;/y",
]  # fmt: skip


async def chromium_paths(executable: str, profile: Path) -> list[str]:
    async with chromium(executable, profile) as browser:
        page = await browser.new_page(WIDTH, HEIGHT)
        found: list[str] = await page.evaluate(
            f"{json.dumps(WHATWG_PATHS)}.map(p => new URL('http://127.0.0.1:9' + p).pathname)"
        )
    return found


def test_browser_url_resolves_paths_as_chromium_does(executable: str, tmp_path: Path) -> None:
    """verify's resolver agrees with Chromium on every dot-segment form, %2e included."""
    found = asyncio.run(chromium_paths(executable, tmp_path / "profile"))
    ours = [urlsplit(browser_url("http://127.0.0.1:9" + path)).path for path in WHATWG_PATHS]
    assert ours == found
    assert found[:2] == ["/b/a/b.pdf", "/etc/passwd"]
