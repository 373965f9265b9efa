"""Checking a presigned link over plain HTTP, as its recipient would (part of the S3 layer).

No boto here: a link is a bearer URL, and ``verify`` must see what a recipient's client sees.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from typing import Any

from sharebatch.models import LinkProbe

# The few bytes of an S3 error document that name the error; bodies are never read further.
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{0,200})</Message>")
_ACTUAL_SIZE = re.compile(rb"<ActualObjectSize>([0-9]{1,20})</ActualObjectSize>")

# An http(s) URL: scheme and authority, path, then query and fragment. For these "special"
# schemes WHATWG reads a backslash as a slash, in the authority's end too.
_HTTP_URL = re.compile(r"(?is)(https?:[/\\]{2}[^/\\?#]*)([^?#]*)(.*)")
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})
_SINGLE_DOT = frozenset({".", "%2e"})
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def browser_url(url: str) -> str:
    """``url`` as a browser sends it: the WHATWG URL standard's path rules applied.

    Leading and trailing controls and spaces go, tabs and newlines anywhere go, a backslash
    separates segments, and ``.``/``..`` segments (``%2e`` forms too, in any case) are
    resolved, so ``/b/a/%2e%2e/x`` is sent as ``/b/x``. curl removes literal dot segments
    the same way (RFC 3986). Percent-encoding is left as it is: S3's signer already encodes
    every character the standard would.
    """
    url = url.strip(_C0_AND_SPACE).translate({9: None, 10: None, 13: None})
    found = _HTTP_URL.fullmatch(url)
    if found is None:
        return url
    start, path, rest = found.groups()
    out: list[str] = []
    buffers = re.split(r"[/\\]", path[1:]) if path else [""]
    for position, buffer in enumerate(buffers):
        last = position == len(buffers) - 1
        if buffer.lower() in _DOUBLE_DOT:
            if out:
                out.pop()
            if last:
                out.append("")
        elif buffer.lower() in _SINGLE_DOT:
            if last:
                out.append("")
        else:
            out.append(buffer)
    return f"{start}/{'/'.join(out)}{rest}"


def probe_link(url: str, method: str, *, timeout: float = 15.0) -> LinkProbe:
    """Check a presigned link as a recipient would, without downloading the object.

    A signature covers the HTTP method, so a GET link is checked with a GET of one byte
    (``Range: bytes=0-0``; a HEAD would be refused) and a HEAD link with a HEAD. Blocking:
    callers run it in threads. Errors name a kind, never the URL. The URL is sent as a
    browser would send it (``browser_url``), not as urllib would.
    """
    url = browser_url(url)
    if not url.lower().startswith(("https://", "http://")):
        return LinkProbe(status=None, error="NotHttp", message="not an http(s) URL")
    headers = {"Range": "bytes=0-0"} if method == "GET" else {}
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _probe_answer(response.status, response.headers, b"")
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read(4096) if method != "HEAD" else b""
            return _probe_answer(exc.code, exc.headers, body)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None)
        # An OSError's text names the failure (refused, timed out), never the request's URL.
        detail = str(reason) if isinstance(reason, OSError | str) else type(exc).__name__
        return LinkProbe(status=None, error="ConnectionError", message=detail)


def _probe_answer(status: int, headers: Any, body: bytes) -> LinkProbe:
    etag = headers.get("ETag")
    size: int | None = None
    total = (headers.get("Content-Range") or "").rpartition("/")[2]
    if total.isdigit():
        size = int(total)
    elif status == 200 and str(headers.get("Content-Length", "")).isdigit():
        size = int(headers["Content-Length"])
    code = _ERROR_CODE.search(body)
    message = _ERROR_MESSAGE.search(body)
    actual = _ACTUAL_SIZE.search(body)
    if actual:  # a one-byte range of an empty object: 416, with the size in the error
        size = int(actual.group(1))
    return LinkProbe(
        status=status,
        size=size,
        etag=etag.strip('"') if etag else None,
        error=code.group(1).decode("utf-8", "replace") if code else None,
        message=message.group(1).decode("utf-8", "replace") if message else "",
    )
