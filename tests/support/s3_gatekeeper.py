"""A stand-in for the checks S3 makes on presigned PUT URLs and POST policies, which moto skips.

moto accepts any signature, any expiry and any POST policy, so refusals cannot be shown
against it. This small HTTP server (127.0.0.1, random port) applies what AWS documents for
the two upload paths, and answers with S3's error codes:

* presigned PUT (SigV4 query auth): recomputes the signature from the request as received
  (method, raw path, query, the signed headers with the values actually sent,
  ``UNSIGNED-PAYLOAD``), so a Content-Type other than the signed one is
  ``SignatureDoesNotMatch``; refuses use after ``X-Amz-Date + X-Amz-Expires``; refuses any
  ``x-amz-*`` header not among the signed ones (S3's ``AccessDenied``, "There were headers
  present in the request which were not signed"), so an uploader cannot add
  ``x-amz-tagging`` (forged scan tags), ``x-amz-acl`` or the like to a slot's PUT.
* POST form (SigV4 browser upload): verifies the policy's signature, its expiration, every
  condition (``eq``, ``starts-with``, ``content-length-range``: ``EntityTooLarge``), and that
  no field lacks a condition ("Extra input fields"; ``policy``, ``x-amz-signature``,
  ``file`` and ``x-ignore-*`` are exempt); fields after ``file`` are ignored, as S3 does.

It is a model of S3's documented rules, not S3: it shows that the links carry the intended
signatures and conditions, not how AWS itself evaluates them. ``now`` is the server's clock,
which tests move forward to show expiry without waiting. Accepted uploads are kept in
``objects`` as (bytes, content type).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote

_EXEMPT = {"policy", "x-amz-signature", "file"}


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def signing_key(secret: str, day: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


@dataclass
class Gatekeeper:
    """The server's state: known keys, its clock, and what it accepted."""

    secrets: dict[str, str]
    region: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    objects: dict[tuple[str, str], tuple[bytes, str | None]] = field(default_factory=dict)
    endpoint: str = ""

    def secret(self, credential: str) -> tuple[str, str]:
        """(secret, day) for an ``AKID/day/region/s3/aws4_request`` credential."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[2:] != [self.region, "s3", "aws4_request"]:
            raise Refusal(400, "AuthorizationQueryParametersError", "malformed credential")
        if parts[0] not in self.secrets:
            raise Refusal(403, "InvalidAccessKeyId", "unknown access key")
        return self.secrets[parts[0]], parts[1]

    def check_put(self, method: str, raw_path: str, raw_query: str, headers: Any) -> None:
        pairs = [p.partition("=") for p in raw_query.split("&") if p]
        query = {unquote(k): unquote(v) for k, _, v in pairs}
        if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            raise Refusal(403, "AccessDenied", "not a SigV4 presigned request")
        secret, day = self.secret(query.get("X-Amz-Credential", ""))
        stamp = query["X-Amz-Date"]
        expires = int(query["X-Amz-Expires"])
        if not 1 <= expires <= 604800:
            raise Refusal(400, "AuthorizationQueryParametersError", "X-Amz-Expires out of range")
        signed = query["X-Amz-SignedHeaders"].split(";")
        unsigned = sorted(
            name.lower()
            for name in headers
            if name.lower().startswith("x-amz-") and name.lower() not in signed
        )
        if unsigned:
            raise Refusal(
                403,
                "AccessDenied",
                "There were headers present in the request which were not signed: "
                + ", ".join(unsigned),
            )
        canonical_query = "&".join(
            sorted(f"{_encode(k)}={_encode(v)}" for k, v in query.items() if k != "X-Amz-Signature")
        )
        canonical_headers = "".join(
            f"{name}:{' '.join((headers.get(name) or '').split())}\n" for name in signed
        )
        request = "\n".join(
            [method, raw_path, canonical_query, canonical_headers, ";".join(signed)]
        )
        request += "\nUNSIGNED-PAYLOAD"
        scope = f"{day}/{self.region}/s3/aws4_request"
        digest = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        expected = hmac.new(
            signing_key(secret, day, self.region), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, query.get("X-Amz-Signature", "")):
            raise Refusal(403, "SignatureDoesNotMatch", "signature does not match")
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if self.now > signed_at + timedelta(seconds=expires):
            raise Refusal(403, "AccessDenied", "Request has expired")

    def check_post(
        self, bucket: str, fields: list[tuple[str, str]], filename: str, size: int
    ) -> str:
        """Apply the POST policy; return the object key."""
        form = {name.lower(): value for name, value in fields}
        for name in ("policy", "x-amz-signature", "x-amz-credential", "key"):
            if name not in form:
                raise Refusal(400, "InvalidArgument", f"missing form field {name}")
        secret, day = self.secret(form["x-amz-credential"])
        expected = hmac.new(
            signing_key(secret, day, self.region), form["policy"].encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, form["x-amz-signature"]):
            raise Refusal(403, "SignatureDoesNotMatch", "policy signature does not match")
        policy = json.loads(base64.b64decode(form["policy"]))
        expiration = datetime.strptime(policy["expiration"][:19], "%Y-%m-%dT%H:%M:%S")
        if self.now > expiration.replace(tzinfo=UTC):
            raise Refusal(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        key = form["key"].replace("${filename}", filename)
        values = form | {"bucket": bucket, "key": key}
        covered: set[str] = set()
        for condition in policy["conditions"]:
            if isinstance(condition, dict):
                [(name, value)] = condition.items()
                op, name = "eq", name.lower()
            elif condition[0] == "content-length-range":
                low, high = condition[1], condition[2]
                if size > high:
                    raise Refusal(400, "EntityTooLarge", "Your proposed upload exceeds the max")
                if size < low:
                    raise Refusal(400, "EntityTooSmall", "Your proposed upload is too small")
                continue
            else:
                op, name, value = (
                    condition[0].lower(),
                    condition[1].lstrip("$").lower(),
                    condition[2],
                )
            covered.add(name)
            got = values.get(name)
            ok = got == value if op == "eq" else got is not None and got.startswith(value)
            if not ok:
                raise Refusal(
                    403,
                    "AccessDenied",
                    "Invalid according to Policy: Policy Condition failed: "
                    + json.dumps(condition),
                )
        extra = [
            name
            for name in form
            if name not in covered | _EXEMPT and not name.startswith("x-ignore-")
        ]
        if extra:
            raise Refusal(
                403, "AccessDenied", f"Invalid according to Policy: Extra input fields: {extra[0]}"
            )
        return key


def parse_multipart(body: bytes, content_type: str) -> tuple[list[tuple[str, str]], str, bytes]:
    """(fields before the file, file name, file bytes) of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields: list[tuple[str, str]] = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = next(
            line for line in head.decode().split("\r\n") if line.lower().startswith("content-disp")
        )
        params = dict(p.strip().split("=", 1) for p in disposition.split(";")[1:] if "=" in p)
        name = params["name"].strip('"')
        if name == "file":  # S3 ignores every field after the file
            return fields, params.get("filename", "").strip('"'), data
        fields.append((name, data.decode()))
    raise Refusal(400, "InvalidArgument", "POST requires exactly one file upload per request")


def _handler(state: Gatekeeper) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, code: str = "", message: str = "") -> None:
            body = (
                f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                if code
                else b""
            )
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            raw_path, _, raw_query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                state.check_put("PUT", raw_path, raw_query, self.headers)
            except Refusal as refusal:
                self._answer(refusal.status, refusal.code, refusal.message)
                return
            bucket, _, key = unquote(raw_path).lstrip("/").partition("/")
            state.objects[(bucket, key)] = (body, self.headers.get("Content-Type"))
            self._answer(200)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            bucket = unquote(self.path.partition("?")[0]).strip("/")
            try:
                fields, filename, data = parse_multipart(body, self.headers["Content-Type"])
                key = state.check_post(bucket, fields, filename, len(data))
            except Refusal as refusal:
                self._answer(refusal.status, refusal.code, refusal.message)
                return
            content_type = {k.lower(): v for k, v in fields}.get("content-type")
            state.objects[(bucket, key)] = (data, content_type)
            self._answer(204)

    return Handler


@contextmanager
def gatekeeper(secrets: dict[str, str], region: str) -> Iterator[Gatekeeper]:
    """Run the stand-in on 127.0.0.1 for the block; ``endpoint`` is its URL."""
    state = Gatekeeper(secrets, region)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
