"""ListObjectsV2 over plain HTTP for the common case, part of ``sharebatch.s3``.

Through botocore, one 1,000-key page costs ~25 ms of CPU: its generic request path (event
hooks, endpoint rules, user agent) and a second XML parse that only checks for errors. A
large listing is then bound by the client's CPU rather than by S3. This module sends the
same request with its own SigV4 header signature (``tests/s3/test_fastlist.py`` proves it equal
to botocore's) and reads the answer with ``listparse.read_page``: ~3 ms a page.

It covers the happy path only. It refuses configurations it was not proven on (the
presigner's rules, and proxies) with ``Unsupported``. A 403 or 404 hands that one request
to botocore, which reports it as before (and if botocore is let in where we were refused, the
lister switches itself off). Any other answer but a complete page (an error status, a
dropped connection, a timeout, a garbled body) hands that request to botocore and switches
the lister off for the rest of the run. From then on botocore's retries, backoff, throttling
and error reporting apply exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import aiohttp
from botocore.httpsession import get_cert_path
from yarl import URL

from sharebatch.audit import get_logger
from sharebatch.errors import UsageError
from sharebatch.models import BucketTarget, Credentials
from sharebatch.s3.listparse import Page, read_page
from sharebatch.s3.retry import RetryPolicy
from sharebatch.s3.sigv4 import QUERY_TABLE, HmacKey, S3Endpoint, Unsupported, encode, signing_key
from sharebatch.version import __version__

log = get_logger()

# botocore signs the (empty) payload of a GET over http and https alike: it leaves a payload
# unsigned only over TLS with a checksum header, which a GET does not send.
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

CredentialSource = Callable[[], Awaitable[Credentials | None]]


# Answers about one request, not about the connection or the service: the lister stays on.
# Throttling, 5xx, redirects and anything else switch it off (botocore's adaptive retries and
# region redirects then handle every later request).
_REFUSALS = frozenset({403, 404})


class HandOver(Exception):
    """This request was tried and did not give a page: botocore must send it, counting this
    try as its first (``SHAREBATCH_S3_ATTEMPTS`` counts every try). ``refused``: S3 said
    403/404 to this request alone."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


class HeaderSigner:
    """SigV4 ``Authorization`` headers for bodiless S3 requests, as botocore's S3SigV4Auth
    makes them (signed headers: host, x-amz-content-sha256, x-amz-date, and the session
    token when there is one)."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._keys: dict[tuple[str, str], HmacKey] = {}

    def _key(self, secret: str, day: str) -> HmacKey:
        found = self._keys.get((secret, day))
        if found is None:
            self._keys.clear()  # one day and one secret at a time is all a run needs
            found = signing_key(f"AWS4{secret}".encode(), day, self._region)
            self._keys[(secret, day)] = found
        return found

    def headers(
        self,
        credentials: Credentials,
        *,
        method: str,
        host: str,
        path: str,
        query: str,
        now: datetime,
    ) -> dict[str, str]:
        """The headers to send; ``query`` is already encoded and sorted by name."""
        amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        scope = f"{amz_date[:8]}/{self._region}/s3/aws4_request"
        headers = {
            "host": host,
            "x-amz-content-sha256": _EMPTY_SHA256,
            "x-amz-date": amz_date,
        }
        if credentials.session_token:  # botocore leaves an empty token out
            headers["x-amz-security-token"] = credentials.session_token
        signed = ";".join(headers)  # inserted in sorted order above
        canonical = "\n".join(
            [
                method,
                path,
                query,
                "".join(f"{name}:{' '.join(value.split())}\n" for name, value in headers.items()),
                signed,
                headers["x-amz-content-sha256"],
            ]
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        signature = self._key(credentials.secret_access_key, amz_date[:8]).hexdigest(
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode()
        )
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key_id}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        return headers


def list_query(prefix: str, delimiter: str | None, token: str | None) -> str:
    """ListObjectsV2's query string, encoded and sorted as SigV4's canonical query is."""
    pairs = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
    if delimiter is not None:
        pairs["delimiter"] = delimiter
    if token is not None:
        pairs["continuation-token"] = token
    return "&".join(f"{name}={encode(pairs[name], QUERY_TABLE)}" for name in sorted(pairs))


def direct_listing(environ: Mapping[str, str]) -> bool:
    """``SHAREBATCH_S3_DIRECT_LISTING``: on (the default) or off, which leaves all to botocore."""
    value = environ.get("SHAREBATCH_S3_DIRECT_LISTING", "").strip().lower() or "on"
    if value not in ("on", "off"):
        raise UsageError(f"SHAREBATCH_S3_DIRECT_LISTING={value!r}: expected on or off")
    return value == "on"


class FastLister:
    """One bucket target's listing requests, sent directly; see the module's docstring."""

    def __init__(
        self,
        target: BucketTarget,
        *,
        region: str,
        credentials: CredentialSource,
        max_connections: int,
        policy: RetryPolicy,
        profile_config: Mapping[str, object],
        ca_bundle: str | None,
        clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        if set(urllib.request.getproxies_environment()) - {"no"}:
            raise Unsupported("a proxy is set (HTTP_PROXY and the like): botocore honours it")
        endpoint = S3Endpoint(
            region=region,
            endpoint_url=target.endpoint_url,
            addressing_style=target.addressing_style,
            environ=environ,
            profile_config=profile_config,
        )
        self._bucket = target.bucket
        # (URL up to the path, canonical path, Host): Unsupported for an unusual bucket name.
        self._route = endpoint.api_route(target.bucket)
        # The certificates botocore trusts: its ca_bundle setting (AWS_CA_BUNDLE, the
        # profile), else REQUESTS_CA_BUNDLE, else certifi's bundle.
        self._cafile = ca_bundle or environ.get("REQUESTS_CA_BUNDLE") or get_cert_path(True)
        self._signer = HeaderSigner(region)
        self._credentials = credentials
        self._clock = clock
        self._connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            sock_connect=policy.connect_timeout, sock_read=policy.read_timeout
        )
        self._http: aiohttp.ClientSession | None = None
        self.off: str | None = None  # why the lister stopped, once it has

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            context = ssl.create_default_context(cafile=self._cafile)
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=context),
                timeout=self._timeout,
                auto_decompress=False,
            )
        return self._http

    def switch_off(self, reason: str) -> None:
        """Leave every later request of this run to botocore."""
        self._stop(reason)

    def _stop(self, reason: str) -> HandOver:
        if self.off is None:
            self.off = reason
            log.info("fast_listing_off", bucket=self._bucket, reason=reason)
        return HandOver(reason)

    async def page(
        self,
        prefix: str,
        delimiter: str | None,
        token: str | None,
        slot: asyncio.Semaphore | None = None,
    ) -> Page | None:
        """One page; None when the lister is off (then botocore sends every request).

        Raises ``HandOver`` when this request was sent and did not give a page.
        """
        if self.off is not None:
            return None
        credentials = await self._credentials()
        if credentials is None:
            self._stop("no credentials")  # botocore reports that in its own words
            return None
        base, path, host = self._route
        query = list_query(prefix, delimiter, token)
        headers = self._signer.headers(
            credentials,
            method="GET",
            host=host,
            path=path or "/",
            query=query,
            now=self._clock(),
        )
        headers["User-Agent"] = f"sharebatch/{__version__}"
        # encoded=True: yarl would otherwise re-quote the query, and S3 would check the
        # signature against a different request.
        url = URL(f"{base}{'' if path else '/'}?{query}", encoded=True)
        async with slot or contextlib.nullcontext():
            try:
                async with self._session().get(
                    url, headers=headers, allow_redirects=False
                ) as answer:
                    status = answer.status
                    body = await answer.read()
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                # OSError: also an unreadable CA bundle, found when the first request is made.
                raise self._stop(type(exc).__name__) from None
        # The slot is free before the answer is read (~2 ms of CPU for 1,000 keys). Yielding
        # once lets the listing woken by that release send its request first, so requests
        # overlap with reading instead of queuing behind every answer that came in meanwhile.
        await asyncio.sleep(0)
        if status in _REFUSALS:
            # S3 refused this request (a policy denying one prefix, a missing bucket): botocore
            # asks once more and reports it in its words; other requests are not affected.
            raise HandOver(f"HTTP {status}", refused=True)
        if status != 200:
            raise self._stop(f"HTTP {status}")
        found = read_page(body, self._bucket)
        if found is None:
            raise self._stop("an incomplete or unexpected answer")
        return found
