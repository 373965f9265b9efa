"""Headless Chromium driven over the DevTools protocol, for the review and recipient pages.

No browser-automation dependency: Chromium from the Debian package, its remote debugging
websocket, and aiohttp's websocket client (already installed with aiobotocore). Every wait
is on a protocol event or a reply, bounded by a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# The flags the lead's probe found necessary here: without the background-networking ones
# Chromium tries to reach Google's servers at start-up and is refused.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--remote-debugging-port=0",
)
TIMEOUT = 60.0


def require_chromium(test: str) -> str:
    """Chromium's path for ``test``; the test is skipped without one, or fails where CI asks
    for it (``SHAREBATCH_REQUIRE_CHROMIUM=1``), so a missing browser never passes silently."""
    found = find_chromium()
    if found is None:
        message = (
            f"Chromium is not installed, so {test} did not run "
            "(apt-get install chromium, or set SHAREBATCH_CHROMIUM; .ci/run installs it)"
        )
        if os.environ.get("SHAREBATCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def find_chromium() -> str | None:
    """``SHAREBATCH_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    configured = os.environ.get("SHAREBATCH_CHROMIUM")
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Session:
    """One page's DevTools session: commands with replies, and every event kept in order."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self.id = session_id

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.send(method, session_id=self.id, **params)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def events(self, method: str) -> list[dict[str, Any]]:
        return [
            e["params"]
            for e in self._browser.events
            if e["method"] == method and e.get("sessionId") == self.id
        ]

    async def wait_for(self, method: str) -> dict[str, Any]:
        """The first ``method`` event of this session, waiting for it if need be."""
        await self._browser.wait(lambda: bool(self.events(method)))
        return self.events(method)[0]


class Browser:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                reply = self._pending.pop(data["id"], None)
                if reply is None:
                    continue  # the Browser.close sent without waiting
                if "error" in data:
                    reply.set_exception(AssertionError(f"DevTools error: {data['error']}"))
                else:
                    reply.set_result(data.get("result", {}))
            else:
                async with self._changed:
                    self.events.append(data)
                    self._changed.notify_all()

    async def wait(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), TIMEOUT)

    async def send(self, method: str, session_id: str | None = None, **params: Any) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        reply = asyncio.get_running_loop().create_future()
        self._pending[self._next] = reply
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(reply, TIMEOUT)

    async def new_page(self, width: int, height: int) -> Session:
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Session(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


@asynccontextmanager
async def chromium(executable: str, profile: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with an empty profile; yield a connected ``Browser``."""
    process = await asyncio.create_subprocess_exec(
        executable,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    drain: asyncio.Task[None] | None = None
    try:
        address = None
        while address is None:
            line = await asyncio.wait_for(process.stderr.readline(), TIMEOUT)
            assert line, f"Chromium exited ({await process.wait()}) before DevTools listened"
            found = re.search(rb"DevTools listening on (ws://\S+)", line)
            address = found[1].decode() if found else None
        drain = asyncio.create_task(_drain(process.stderr))  # keep its stderr pipe from filling
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(address, max_msg_size=0) as ws,
        ):
            browser = Browser(ws)
            reader = asyncio.create_task(browser.read())
            try:
                yield browser
                # The browser closes the socket as it exits: wait for that, not for a reply.
                await ws.send_str(json.dumps({"id": 0, "method": "Browser.close"}))
                await asyncio.wait_for(process.wait(), TIMEOUT)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if drain is not None:
            await asyncio.wait_for(drain, TIMEOUT)
