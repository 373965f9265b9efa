"""A recipient page in a real browser: headless Chromium over the DevTools protocol, on moto.

The page opens through its presigned link, a download link saves the file's exact bytes under
its download name, and the upload form, with a file picked through the protocol
(``DOM.setFileInputFiles``), puts that file in the recipient's slot. No request leaves for
anywhere but the S3 endpoint, and the browser reports no error (a CSP refusal would be one).
Skipped, saying so, where Chromium is absent; CI sets SHAREBATCH_REQUIRE_CHROMIUM=1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.chromium import Browser, Session, chromium
from tests.support.pages import BUCKET, FILES, run_with_pages, settings
from tests.support.s3 import S3

WIDTH, HEIGHT = 1280, 900
BIDI_KEY = "partners/globex/\u202egnp.exe.pdf"
RETURNED = b"signed statement\n" + bytes(range(256)) * 40


def browser_events(browser: Browser, method: str) -> list[dict[str, Any]]:
    return [e["params"] for e in browser.events if e["method"] == method]


async def download(browser: Browser, page: Session, index: int, folder: Path) -> tuple[str, bytes]:
    """Click the ``index``-th download link; (the name Chromium chose, the saved bytes)."""
    await page.evaluate(f"document.querySelectorAll('a.download')[{index}].click()")
    await browser.wait(
        lambda: any(
            e["state"] == "completed" for e in browser_events(browser, "Browser.downloadProgress")
        )
    )
    (begun,) = browser_events(browser, "Browser.downloadWillBegin")
    return begun["suggestedFilename"], (folder / begun["guid"]).read_bytes()


async def upload(browser: Browser, page: Session, file: Path) -> dict[str, Any]:
    """Pick ``file`` in the first upload form and submit it; S3's answer to the POST."""
    document = await page.send("DOM.getDocument")
    found = await page.send(
        "DOM.querySelector",
        nodeId=document["root"]["nodeId"],
        selector="form.upload input[type=file]",
    )
    await page.send("DOM.setFileInputFiles", files=[str(file)], nodeId=found["nodeId"])
    picked = await page.evaluate(
        "document.querySelector('form.upload input[type=file]').files[0].name"
    )
    assert picked == file.name
    action = await page.evaluate("document.querySelector('form.upload').action")
    await page.evaluate("document.querySelector('form.upload button').click()")

    def answered() -> list[dict[str, Any]]:
        return [
            e["response"]
            for e in page.events("Network.responseReceived")
            if e["response"]["url"] == action
        ]

    await browser.wait(lambda: bool(answered()))
    return answered()[0]


async def visit(executable: str, url: str, profile: Path, file: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    downloads = profile.parent / "downloads"
    downloads.mkdir()
    async with chromium(executable, profile) as browser:
        await browser.send(
            "Browser.setDownloadBehavior",
            behavior="allowAndName",
            downloadPath=str(downloads),
            eventsEnabled=True,
        )
        page = await browser.new_page(WIDTH, HEIGHT)
        await page.send("Page.navigate", url=url)
        await page.wait_for("Page.loadEventFired")
        seen["title"] = await page.evaluate("document.title")
        seen["styled"] = await page.evaluate(
            "getComputedStyle(document.querySelector('table')).borderCollapse"
        )
        seen["keys"] = await page.evaluate(
            "Array.from(document.querySelectorAll('#files .key')).map(k => k.textContent)"
        )
        index = seen["keys"].index("partners/globex/\\u202egnp.exe.pdf")
        seen["name"], seen["bytes"] = await download(browser, page, index, downloads)
        seen["answer"] = await upload(browser, page, file)
        seen["requests"] = [e["request"]["url"] for e in page.events("Network.requestWillBeSent")]
        seen["exceptions"] = page.events("Runtime.exceptionThrown")
        seen["errors"] = [
            e["entry"] for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"
        ]
    return seen


def test_a_partner_downloads_and_returns_a_file_through_the_page(
    executable: str, s3: S3, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Opened by its link, the page downloads a file byte for byte under its download name and
    its form puts the picked file into the slot on moto; nothing else is requested."""
    run = run_with_pages(s3, tmp_path, {"globex": settings()})
    url = run.bundle("globex")["header"]["page_url"]
    file = tmp_path / "statement-q3.pdf"
    file.write_bytes(RETURNED)
    # The browser's profile keeps its history (the page's URL) in *.log files: a recipient's
    # browser, not sharebatch's logs, so it lives outside the folder the secrets guard reads.
    browser_home = tmp_path_factory.mktemp("browser")
    seen = asyncio.run(visit(executable, url, browser_home / "profile", file))

    assert seen["title"] == "Files for Globex <b>Corporation</b> & Sons"
    assert seen["styled"] == "collapse"  # the inline stylesheet was allowed by its hash
    assert len(seen["keys"]) == 5
    assert seen["name"] == "gnp.exe.pdf"  # the bidi override dropped from the saved name
    assert seen["bytes"] == FILES[BIDI_KEY]
    assert seen["answer"]["status"] == 204
    held = s3.client.get_object(Bucket=BUCKET, Key=f"inbox/globex/{file.name}")
    assert held["Body"].read() == RETURNED
    assert all(r.startswith(s3.endpoint + "/") for r in seen["requests"]), seen["requests"]
    assert seen["exceptions"] == [] and seen["errors"] == []
