"""Uploading as a recipient would, with nothing but HTTP: a PUT to a URL, a POST of a form."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping


def _send(request: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.read()


def put(url: str, data: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """PUT ``data`` with exactly ``headers``; (status, body).

    urllib would label the body application/x-www-form-urlencoded (which moto stores empty)
    when no type is given, so an untyped upload goes as application/octet-stream.
    """
    sent = dict(headers or {})
    sent.setdefault("Content-Type", "application/octet-stream")
    return _send(urllib.request.Request(url, data=data, headers=sent, method="PUT"))


def multipart(
    fields: Mapping[str, str], filename: str, data: bytes, file_type: str
) -> tuple[bytes, str]:
    """A multipart/form-data body with the fields in order and the file last (S3's rule)."""
    boundary = "sharebatch-" + secrets.token_hex(8)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {file_type}\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_form(
    url: str,
    fields: Mapping[str, str],
    filename: str,
    data: bytes,
    file_type: str = "application/octet-stream",
) -> tuple[int, bytes]:
    """POST a browser-style upload form; (status, body)."""
    body, content_type = multipart(fields, filename, data, file_type)
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type}, method="POST"
    )
    return _send(request)
