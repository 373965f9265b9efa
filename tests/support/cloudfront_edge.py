"""A CloudFront edge for the tests: checks signed URLs as CloudFront documents it, serves S3.

No CloudFront runs here, so this small HTTP server on a loopback address stands in for a
distribution whose behaviour requires signed URLs (a trusted key group) and whose origin is a
moto bucket. For every GET or HEAD it checks, in CloudFront's order and as
sharebatch/cloudfront's docstrings cite from the CloudFront Developer Guide:

1. the signing parameters: ``Signature`` and ``Key-Pair-Id``, exactly one of ``Expires``
   (canned) and ``Policy`` (custom), none twice, ``Hash-Algorithm`` absent (SHA-1) or
   ``SHA256``;
2. the key pair id is in the edge's key group (``keys``: id -> public key);
3. the policy: canned, rebuilt from the request URL minus the signing parameters plus
   ``Expires``; custom, the decoded ``Policy``, whose ``Resource`` must match the request URL
   (``*`` and ``?`` wildcards as CloudFront reads them);
4. the signature with that public key over the policy's exact bytes (RSA PKCS#1 v1.5 with the
   URL's hash; ECDSA P-256 with SHA-256);
5. ``DateLessThan`` against the edge's clock (refused from that second on), ``DateGreaterThan``
   (refused before it) and ``AWS:SourceIp`` against the connecting address.

The clock is ``edge.clock`` (a function returning epoch seconds), so a test sets the time it
means instead of depending on today's date. A refusal is a 403 with CloudFront's short XML
error body (``AccessDenied``/"Access denied", ``MissingKey``, ``MalformedPolicy``,
``InvalidKey``); which rule refused is in the ``X-Edge-Reason`` header and ``edge.log``, for
the tests only. A request that passes is served from the edge's bucket: the path
percent-decoded to the key, ``Range`` honoured (206 with ``Content-Range``), and
``response-content-disposition`` from the query sent back as ``Content-Disposition``, as S3
does when the origin request policy forwards that query string.

The edge binds any 127.0.0.x (on Linux the whole of 127/8 is loopback); ``fetch`` connects
from a chosen loopback source address, which is how a test shows the IP rule (a link for
127.0.0.1/32 fetched from 127.0.0.2). Nothing is logged: request lines hold signatures.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sharebatch.cloudfront.read import (
    CloudFrontFacts,
    NotCloudFrontUrl,
    read_cloudfront_url,
    split_signing_params,
    verify_signature,
)
from tests.support.s3 import S3

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_MESSAGES = {
    "AccessDenied": "Access denied",
    "MissingKey": "Missing Key-Pair-Id query parameter or cookie value",
    "MalformedPolicy": "Malformed Policy",
    "InvalidKey": "Unknown Key",
}


class Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class Edge:
    """A running edge. ``origin`` is the ``domain`` to sign for (``http://127.0.0.x:PORT``)."""

    host: str
    port: int
    bucket: str
    keys: dict[str, PublicKey]
    clock: Callable[[], float]
    # (client address, "served" or the refusal's reason), in arrival order.
    log: list[tuple[str, str]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason in self.log]


def _resource_matches(pattern: str, url: str) -> bool:
    """CloudFront's Resource matching: ``*`` any run of characters, ``?`` exactly one."""
    regex = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(regex, url, re.DOTALL) is not None


def check(edge: Edge, url: str, client: str) -> CloudFrontFacts:
    """CloudFront's checks of a signed request for ``url`` from ``client``; ``Refused``."""
    _, found = split_signing_params(url)
    if "Key-Pair-Id" not in found:
        raise Refused("MissingKey", "missing key pair id")
    if "Signature" not in found or not ({"Expires", "Policy"} & set(found)):
        raise Refused("AccessDenied", "missing signature or policy")
    try:
        facts = read_cloudfront_url(url)
    except NotCloudFrontUrl as exc:
        raise Refused("MalformedPolicy", f"malformed: {exc}") from exc
    public_key = edge.keys.get(facts.key_pair_id)
    if public_key is None:
        raise Refused("InvalidKey", "unknown key pair id")
    if not verify_signature(facts, public_key):
        raise Refused("AccessDenied", "signature")
    if not facts.canned and not _resource_matches(facts.policy_resource, facts.resource):
        raise Refused("AccessDenied", "resource")
    now = edge.clock()
    if now >= facts.expires.timestamp():
        raise Refused("AccessDenied", "expired")
    if facts.not_before is not None and now < facts.not_before.timestamp():
        raise Refused("AccessDenied", "not yet valid")
    if facts.source_ip is not None and ipaddress.ip_address(client) not in ipaddress.ip_network(
        facts.source_ip
    ):
        raise Refused("AccessDenied", "source ip")
    return facts


def _handler(edge: Edge, s3: S3) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            client = self.client_address[0]
            url = f"http://{self.headers.get('Host', '')}{self.path}"
            try:
                check(edge, url, client)
            except Refused as refused:
                edge.log.append((client, refused.reason))
                text = (
                    '<?xml version="1.0" encoding="UTF-8"?><Error>'
                    f"<Code>{refused.code}</Code><Message>{_MESSAGES[refused.code]}</Message>"
                    "</Error>"
                ).encode()
                headers = {"Content-Type": "text/xml", "X-Edge-Reason": refused.reason}
                self._send(403, headers, text if body else b"", len(text))
                return
            edge.log.append((client, "served"))
            self._serve(urlsplit(url), body=body)

        def _serve(self, parts: SplitResult, *, body: bool) -> None:
            key = unquote(parts.path[1:])
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            request: dict[str, str] = {"Bucket": edge.bucket, "Key": key}
            if "Range" in self.headers:
                request["Range"] = self.headers["Range"]
            try:
                answer = s3.client.get_object(**request)
            except ClientError as exc:
                status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
                code = str(exc.response["Error"]["Code"])
                text = f"<Error><Code>{code}</Code></Error>".encode()
                self._send(status, {"Content-Type": "text/xml"}, text if body else b"", len(text))
                return
            data = answer["Body"].read()
            headers = {
                "Content-Type": answer.get("ContentType", "binary/octet-stream"),
                "ETag": answer["ETag"],
                "Accept-Ranges": "bytes",
            }
            if "ContentRange" in answer:
                headers["Content-Range"] = answer["ContentRange"]
            if "response-content-disposition" in query:
                headers["Content-Disposition"] = query["response-content-disposition"]
            status = 206 if "ContentRange" in answer else 200
            self._send(status, headers, data if body else b"", len(data))

        def _send(self, status: int, headers: Mapping[str, str], data: bytes, length: int) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if data:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Silent: a request line holds the link's signature."""

    return Handler


EdgeFactory = Callable[..., Edge]
"""The ``cloudfront_edges`` fixture: ``make(bucket, keys, *, host=..., clock=...) -> Edge``."""


@contextmanager
def cloudfront_edge(
    s3: S3,
    bucket: str,
    keys: Mapping[str, PublicKey],
    *,
    host: str = "127.0.0.1",
    clock: Callable[[], float] = time.time,
) -> Iterator[Edge]:
    """An edge on ``host`` (a loopback address, random port) in front of ``bucket``."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("the test edge binds loopback addresses only")
    edge = Edge(host, 0, bucket, dict(keys), clock)
    server = ThreadingHTTPServer((host, 0), _handler(edge, s3))
    server.daemon_threads = True
    edge.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield edge
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(
    url: str, *, source: str = "127.0.0.1", headers: Mapping[str, str] | None = None
) -> Response:
    """GET ``url`` exactly as written (no re-encoding), connecting from ``source``."""
    parts = urlsplit(url)
    if parts.hostname is None or not ipaddress.ip_address(parts.hostname).is_loopback:
        raise ValueError("tests fetch from loopback addresses only")
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=30, source_address=(source, 0)
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers=dict(headers or {}))
        answer = connection.getresponse()
        return Response(
            answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        )
    finally:
        connection.close()
