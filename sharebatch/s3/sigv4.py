"""SigV4 presigned S3 GET/PUT URLs, byte for byte what botocore makes, ~60x faster.

botocore spends ~350 us per URL on request objects, the endpoint ruleset and event hooks; the
signature itself is two SHA-256 passes. This module reproduces botocore's output for the
configuration of ``clients.client_config`` (SigV4, an addressing style, checksums only when
required) and raises ``Unsupported`` for everything it was not proven against, so the caller
can hand that case to botocore instead. ``tests/test_sigv4.py`` compares it with botocore.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from sharebatch.models import LINK_ID_PARAM, MAX_EXPIRES_IN, Credentials

__all__ = [
    "QUERY_TABLE",
    "HmacKey",
    "S3Endpoint",
    "SigV4Presigner",
    "Unsupported",
    "botocore_overrides",
    "encode",
    "signing_key",
]

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def _table(safe: bytes) -> list[str]:
    return [chr(i) if i in safe else f"%{i:02X}" for i in range(256)]


# Translating the UTF-8 bytes (seen as latin-1) through a 256-entry table gives exactly
# urllib's quote() at a third of its cost: botocore uses percentencode(key, safe="/~") for
# the key and percentencode(value) (safe "-_.~") for query values.
_KEY_TABLE = _table(_UNRESERVED + b"/")
QUERY_TABLE = _table(_UNRESERVED)
_SAFE = {id(_KEY_TABLE): _UNRESERVED + b"/", id(QUERY_TABLE): _UNRESERVED}

# Partition "aws" (dnsSuffix amazonaws.com); other partitions differ in hosts and rules.
_AWS_REGION = re.compile(r"(?:us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]+")
# Custom endpoints only put the region in the credential scope; "-global" pseudo-regions
# change the signing region inside botocore, so they stay with botocore.
_CUSTOM_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Today's S3 bucket naming rules. Uppercase, "_" and ARNs route through other rules.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# S3 Express, its access points and Outposts aliases have their own endpoint rules.
_SPECIAL_SUFFIXES = ("--x-s3", "--xa-s3", "--op-s3")
_LABEL = re.compile(r"(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")  # botocore VALID_HOST_LABEL_RE
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")  # botocore IPV4_RE
_ENDPOINT = re.compile(
    r"(?P<scheme>https?)://(?P<host>(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)[A-Za-z0-9-]{1,63}"
    r"(?<!-))(?::(?P<port>[0-9]{1,5}))?/?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_GET_QUERY = {
    "ResponseContentDisposition": "response-content-disposition",
    "ResponseContentType": "response-content-type",
    LINK_ID_PARAM: LINK_ID_PARAM,
}
# botocore drops this one content type from presigned requests (SigV4QueryAuth).
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"

# Settings that change botocore's S3 endpoint or signing when set in the environment or in
# the profile; botocore would also read them, so their presence means "use botocore".
_STEERING_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_USE_FIPS_ENDPOINT",
                 "AWS_USE_DUALSTACK_ENDPOINT", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
                 "AWS_DEFAULTS_MODE", "AWS_DATA_PATH")  # fmt: skip
_STEERING_PROFILE = ("endpoint_url", "services", "use_fips_endpoint", "use_dualstack_endpoint",
                     "s3_us_east_1_regional_endpoint", "defaults_mode", "data_path")  # fmt: skip


class Unsupported(Exception):
    """This configuration or call is outside what the fast signer reproduces: use botocore."""


def botocore_overrides(
    environ: Mapping[str, str], profile_config: Mapping[str, object] | None = None
) -> list[str]:
    """Names of environment variables or profile settings that steer botocore's S3 URLs."""
    found = [name for name in _STEERING_ENV if name in environ]
    profile = profile_config or {}
    found += [f"profile:{name}" for name in _STEERING_PROFILE if name in profile]
    s3_section = profile.get("s3")
    # Config(s3={"addressing_style": ...}) overrides only that key of the profile's section.
    if isinstance(s3_section, Mapping):
        found += [f"profile:s3.{name}" for name in s3_section if name != "addressing_style"]
    elif s3_section is not None:
        found.append("profile:s3")
    return found


def _utcnow() -> datetime:
    return datetime.now(UTC)


def encode(text: str, table: list[str]) -> str:
    if text.isascii():  # O(1) in CPython; spares the UTF-8 round trip for most text
        # Text that is all safe characters (most keys, every link id) is its own encoding:
        # stripping them in C finds that out several times faster than translating.
        safe = _SAFE.get(id(table))
        if safe is not None and not text.encode().rstrip(safe):
            return text
        return text.translate(table)
    try:
        return text.encode().decode("latin-1").translate(table)
    except UnicodeEncodeError:  # lone surrogates: botocore raises its own error
        raise Unsupported("text that is not valid UTF-8") from None


class HmacKey:
    """HMAC-SHA256 with the key's inner and outer pads hashed once (RFC 2104).

    ``hmac.new`` re-derives both pads on every call, which costs more than the two
    hashes a URL needs.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # only "AWS4" + a long secret: HMAC hashes keys beyond one block
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def hexdigest(self, msg: bytes) -> str:
        inner = self.inner.copy()
        inner.update(msg)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def signing_key(secret: bytes, day: str, region: str) -> HmacKey:
    """SigV4's S3 signing key for one day and region; ``secret`` is ``b"AWS4" + secret``."""
    key = secret
    for part in (day, region, "s3", "aws4_request"):
        key = bytes.fromhex(HmacKey(key).hexdigest(part.encode()))
    return HmacKey(key)


class S3Endpoint:
    """Where botocore sends an S3 request for a bucket, for one region/endpoint/style.

    Raises ``Unsupported`` for anything outside the rules reproduced here: a setting that
    steers botocore's endpoints (environment or profile), a region outside the aws
    partition, an endpoint that is not scheme://host[:port], an unusual bucket name.
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None,
        addressing_style: Literal["auto", "virtual", "path"],
        environ: Mapping[str, str] | None = None,
        profile_config: Mapping[str, object] | None = None,
    ) -> None:
        overrides = botocore_overrides(os.environ if environ is None else environ, profile_config)
        if overrides:
            raise Unsupported(f"botocore settings in effect: {', '.join(overrides)}")
        if addressing_style not in ("auto", "virtual", "path"):
            raise Unsupported(f"addressing style {addressing_style!r}")
        self._style = addressing_style
        self._region = region
        self._custom: tuple[str, str, str, bool] | None = None
        if endpoint_url is None:
            if not _AWS_REGION.fullmatch(region):
                raise Unsupported(f"region {region!r} outside the aws partition")
        else:
            found = _ENDPOINT.fullmatch(endpoint_url)
            if (
                found is None
                or found["host"].startswith("s3-accelerate.")
                or int(found["port"] or 0) > 65535
            ):
                raise Unsupported("endpoint is not scheme://host[:port]")
            if not _CUSTOM_REGION.fullmatch(region) or region.endswith("global"):
                raise Unsupported(f"region {region!r}")
            scheme, name, port = found["scheme"], found["host"], found["port"]
            netloc = name if port is None else f"{name}:{port}"
            # The Host header botocore signs: lowercase, numeric port, default port dropped.
            host = name.lower()
            if port is not None and int(port) != _DEFAULT_PORTS[scheme]:
                host = f"{host}:{int(port)}"
            self._custom = (scheme, netloc, host, _IPV4.fullmatch(name) is not None)

    def presign_route(self, bucket: str) -> tuple[str, str, str]:
        """(URL up to the key, canonical URI up to the key, Host header) of a presigned URL."""
        return self._route(bucket, presign=True)

    def api_route(self, bucket: str) -> tuple[str, str, str]:
        """The same for a request sent by the client (a listing, say)."""
        return self._route(bucket, presign=False)

    def _route(self, bucket: str, *, presign: bool) -> tuple[str, str, str]:
        """(URL up to the key, canonical URI up to the key, Host header), as botocore's S3
        endpoint ruleset picks them for ``bucket``."""
        if not _BUCKET.fullmatch(bucket) or bucket.endswith(_SPECIAL_SUFFIXES):
            raise Unsupported(f"bucket name {bucket!r}")
        label = "." not in bucket  # _BUCKET already makes a dot-free name a valid host label
        if self._custom is None:
            region_host = "s3.amazonaws.com"
            if self._region != "us-east-1":
                region_host = f"s3.{self._region}.amazonaws.com"
            if label and self._style == "auto" and presign:
                # botocore presigns "auto" on the global endpoint, still scoped to the region.
                return f"https://{bucket}.s3.amazonaws.com", "", f"{bucket}.s3.amazonaws.com"
            if label and self._style in ("auto", "virtual"):
                return f"https://{bucket}.{region_host}", "", f"{bucket}.{region_host}"
            return f"https://{region_host}/{bucket}", f"/{bucket}", region_host
        scheme, netloc, host, is_ip = self._custom
        # A custom endpoint is path style unless "virtual" was asked for explicitly; then an
        # IP endpoint stays path style, and dotted names go virtual over plain http only.
        if self._style == "virtual" and (
            (label and not is_ip)
            or (
                not label
                and scheme == "http"
                and not _IPV4.fullmatch(bucket)
                and all(_LABEL.fullmatch(part) for part in bucket.split("."))
            )
        ):
            return f"{scheme}://{bucket}.{netloc}", "", f"{bucket}.{host}"
        return f"{scheme}://{netloc}/{bucket}", f"/{bucket}", host


_Second = tuple[datetime, datetime, bytes, str, HmacKey, datetime]


class SigV4Presigner:
    """A ``Presigner`` for one credentials/region/endpoint/addressing style combination.

    ``clock`` returns the signing time (naive values are taken as UTC, like botocore's
    ``get_current_datetime``); it is read on each call, and the formatted timestamp and the
    derived signing key are reused while the second (or the day) stays the same.

    botocore also reads settings from the environment (``environ``, by default
    ``os.environ``) and from the profile; pass ``profile_config`` (botocore's
    ``session.get_scoped_config()``) when the botocore path would use a profile. Any setting
    that steers S3 URLs makes the constructor raise ``Unsupported``.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        region: str,
        endpoint_url: str | None,
        addressing_style: Literal["auto", "virtual", "path"],
        clock: Callable[[], datetime] = _utcnow,
        environ: Mapping[str, str] | None = None,
        profile_config: Mapping[str, object] | None = None,
    ) -> None:
        self._endpoint = S3Endpoint(
            region=region,
            endpoint_url=endpoint_url,
            addressing_style=addressing_style,
            environ=environ,
            profile_config=profile_config,
        )
        if not credentials.access_key_id or not credentials.secret_access_key:
            raise Unsupported("empty credentials")
        self._region = region
        try:
            self._secret = f"AWS4{credentials.secret_access_key}".encode()
        except UnicodeEncodeError:
            raise Unsupported("secret key is not valid UTF-8") from None
        self._access_key = credentials.access_key_id
        token = credentials.session_token
        # botocore adds the token whenever it is not None, even when empty.
        self._token = "" if token is None else f"&X-Amz-Security-Token={encode(token, QUERY_TABLE)}"
        self._clock = clock
        self._routes: dict[str, tuple[str, str, str]] = {}
        self._day: tuple[str, str, HmacKey] | None = None  # (date, encoded credential, key)
        # (from, until, string-to-sign prefix, query prefix, key, X-Amz-Date) for the current
        # second, one tuple so that threads sharing a presigner never mix two seconds; empty
        # until the first call reads the clock.
        self._second: _Second | None = None
        # GET parameter names, in the caller's order -> their query names in URL order and
        # whether the canonical (sorted) order differs from it.
        self._layouts: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...], bool]] = {}

    def _refresh(self, now: datetime) -> _Second:
        utc = now if now.tzinfo is None else now.astimezone(UTC).replace(tzinfo=None)
        amz_date = utc.strftime("%Y%m%dT%H%M%SZ")  # botocore's own formatting, once a second
        scope = f"{amz_date[:8]}/{self._region}/s3/aws4_request"
        if self._day is None or self._day[0] != amz_date[:8]:
            credential = encode(f"{self._access_key}/{scope}", QUERY_TABLE)
            self._day = (
                amz_date[:8],
                credential,
                signing_key(self._secret, amz_date[:8], self._region),
            )
        _, credential, mac = self._day
        start = now.replace(microsecond=0)
        self._second = (
            start,
            start + timedelta(seconds=1),
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n".encode(),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
            f"{credential}&X-Amz-Date={amz_date}&X-Amz-Expires=",
            mac,
            # X-Amz-Date as the moment it names (what sign.signed_window reads back).
            utc.replace(microsecond=0, tzinfo=UTC),
        )
        return self._second

    def _current(self) -> _Second:
        now = self._clock()
        second = self._second
        try:
            fresh = second is not None and second[0] <= now < second[1]
        except TypeError:  # the clock switched between naive and aware datetimes
            fresh = False
        if not fresh or second is None:
            second = self._refresh(now)
        return second

    def _route_of(self, bucket: str) -> tuple[str, str, str]:
        route = self._routes.get(bucket)
        if route is None:
            route = self._routes[bucket] = self._endpoint.presign_route(bucket)
        return route

    def __call__(
        self, method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
    ) -> str:
        """The presigned URL botocore's ``generate_presigned_url`` would return now."""
        _, _, sts, auth_prefix, mac, _ = self._current()
        base, path, host = self._route_of(bucket)
        if type(expires_in) is not int or not 0 < expires_in <= MAX_EXPIRES_IN:
            raise Unsupported(f"expiry {expires_in!r}")
        if not isinstance(key, str) or not key:
            raise Unsupported("empty key")
        encoded_key = encode(key, _KEY_TABLE)
        headers = f"host:{host}"
        signed = "host"
        op_query = canon_extra = ""
        if method == "GET":
            if params:
                pairs = []
                for name, value in params.items():
                    query_name = _GET_QUERY.get(name)
                    if query_name is None or not isinstance(value, str):
                        raise Unsupported(f"GET parameter {name!r}")
                    pairs.append(f"{query_name}={encode(value, QUERY_TABLE)}")
                if query_name != LINK_ID_PARAM and LINK_ID_PARAM in params:
                    # The id goes last whatever the caller's order: see below.
                    pairs.append(pairs.pop(list(params).index(LINK_ID_PARAM)))
                # Where botocore puts a parameter appended to the request's URL before
                # signing (the botocore fallback of presigners.py does so): after the
                # operation's own, already in that URL, and before the X-Amz-* ones.
                op_query = "&".join(pairs) + "&"
                # Sorting "name=value" sorts by name: no name is a prefix of another, and
                # every one sorts after the X-Amz-* names (lowercase after uppercase).
                canon_extra = "&" + "&".join(sorted(pairs))
        elif method == "PUT":
            for name, value in params.items():
                if not isinstance(value, str):
                    raise Unsupported(f"PUT parameter {name!r}")
                if name == LINK_ID_PARAM:
                    # The one query parameter of a PUT: signed, never a header.
                    pair = f"{LINK_ID_PARAM}={encode(value, QUERY_TABLE)}"
                    op_query, canon_extra = f"{pair}&", f"&{pair}"
                elif name != "ContentType":
                    raise Unsupported(f"PUT parameter {name!r}")
                elif value != _FORM_CONTENT_TYPE:
                    # A signed header, not a query parameter: the upload must send it.
                    headers = f"content-type:{' '.join(value.split())}\n{headers}"
                    signed = "content-type;host"
        else:
            raise Unsupported(f"method {method!r}")
        encoded_signed = "content-type%3Bhost" if signed != "host" else "host"
        auth = f"{auth_prefix}{expires_in}"
        # The canonical query is sorted (the token before SignedHeaders); the URL keeps
        # botocore's insertion order (operation parameters first, the token last).
        canonical = (
            f"{method}\n{path}/{encoded_key}\n"
            f"{auth}{self._token}&X-Amz-SignedHeaders={encoded_signed}{canon_extra}\n"
            f"{headers}\n\n{signed}\nUNSIGNED-PAYLOAD"
        )
        try:
            digest = hashlib.sha256(canonical.encode()).hexdigest()
        except UnicodeEncodeError:  # a lone surrogate in ContentType: botocore's to refuse
            raise Unsupported("content type is not valid UTF-8") from None
        signature = mac.hexdigest(sts + digest.encode())
        return (
            f"{base}/{encoded_key}?{op_query}{auth}&X-Amz-SignedHeaders={encoded_signed}{self._token}"
            f"&X-Amz-Signature={signature}"
        )

    def _layout(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        """For GET parameters given in ``names``' order: their query names in URL order, the
        index in ``names`` of each, and whether the canonical query needs sorting."""
        found = self._layouts.get(names)
        if found is not None:
            return found
        order = list(range(len(names)))
        if LINK_ID_PARAM in names:  # the id goes last whatever the caller's order (__call__)
            order.remove(names.index(LINK_ID_PARAM))
            order.append(names.index(LINK_ID_PARAM))
        query: list[str] = []
        for index in order:
            query_name = _GET_QUERY.get(names[index])
            if query_name is None:
                raise Unsupported(f"GET parameter {names[index]!r}")
            query.append(query_name)
        # Sorting "name=value" sorts by name (see __call__): sorted names need no sort.
        found = (tuple(query), tuple(order), query != sorted(query))
        self._layouts[names] = found
        return found

    def get_many(
        self, bucket: str, expires_in: int, requests: Iterable[tuple[str, Mapping[str, str]]]
    ) -> tuple[list[str], datetime]:
        """For each (key, params): the URL ``self("GET", bucket, key, expires_in, params)``
        returns, all of them signed within one second (the clock is read once); and that
        second, the moment their ``X-Amz-Date`` names.

        The same bytes as one call per URL in that second (a test compares them): what a
        batch shares (route, expiry, the query's layout) is worked out once, not per URL.
        """
        _, _, sts, auth_prefix, mac, signed_at = self._current()
        base, path, host = self._route_of(bucket)
        if type(expires_in) is not int or not 0 < expires_in <= MAX_EXPIRES_IN:
            raise Unsupported(f"expiry {expires_in!r}")
        auth = f"{auth_prefix}{expires_in}"
        canonical_auth = f"GET\n{path}/"
        canonical_query = f"{auth}{self._token}&X-Amz-SignedHeaders=host"
        canonical_tail = f"\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
        url_tail = f"{auth}&X-Amz-SignedHeaders=host{self._token}&X-Amz-Signature="
        sha256, table, inner_pad, outer_pad = hashlib.sha256, QUERY_TABLE, mac.inner, mac.outer
        key_safe, query_safe = _SAFE[id(_KEY_TABLE)], _SAFE[id(QUERY_TABLE)]
        urls = []
        last: tuple[str, ...] = ()
        names: tuple[str, ...] = ()
        order: tuple[int, ...] = ()
        unsorted = False
        for key, params in requests:
            if not isinstance(key, str) or not key:
                raise Unsupported("empty key")
            # encode(), inlined for ASCII: this runs three times for every link of a run.
            if not key.isascii():
                encoded_key = encode(key, _KEY_TABLE)
            elif key.encode().rstrip(key_safe):
                encoded_key = key.translate(_KEY_TABLE)
            else:
                encoded_key = key
            op_query = canon_extra = ""
            if params:
                given = tuple(params)
                if given != last:  # a batch's parameters nearly always come in one layout
                    names, order, unsorted = self._layout(given)
                    last = given
                values = list(params.values())
                pairs = []
                for name, index in zip(names, order, strict=True):
                    value = values[index]
                    if not isinstance(value, str):
                        raise Unsupported(f"GET parameter {name!r}")
                    if not value.isascii():
                        value = encode(value, table)
                    elif value.encode().rstrip(query_safe):
                        value = value.translate(table)
                    pairs.append(f"{name}={value}")
                query = "&".join(pairs)
                op_query = query + "&"
                canon_extra = "&" + ("&".join(sorted(pairs)) if unsorted else query)
            canonical = (
                f"{canonical_auth}{encoded_key}\n{canonical_query}{canon_extra}{canonical_tail}"
            )
            # Every part is ASCII here (the key and values percent-encoded): no UnicodeError.
            # HmacKey.hexdigest, inlined: this runs for every link of a run.
            inner = inner_pad.copy()
            inner.update(sts + sha256(canonical.encode()).hexdigest().encode())
            outer = outer_pad.copy()
            outer.update(inner.digest())
            urls.append(f"{base}/{encoded_key}?{op_query}{url_tail}{outer.hexdigest()}")
        return urls, signed_at
