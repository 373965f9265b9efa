"""The fast SigV4 presigner against botocore: the shared vectors, then botocore itself.

Every comparison freezes botocore's clock (``botocore.auth.get_current_datetime``) at the
instant handed to our presigner, builds the botocore client the way ``Signers.presigner``
does (``client_config`` of ``sharebatch.s3.clients``) and asserts byte equality, or that our
presigner refused the configuration with ``Unsupported`` (so the caller uses botocore).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import botocore.auth
import botocore.credentials
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sharebatch.models import LINK_ID_PARAM, AddressingStyle, BucketTarget, Credentials
from sharebatch.s3.clients import client_config
from sharebatch.s3.presigners import botocore_presigner
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported, botocore_overrides
from tests.support import tricky
from tests.support.paths import DATA

VECTORS = json.loads((DATA / "sigv4-presign.json").read_text())
ACCESS_KEY = VECTORS["access_key_id"]
SECRET_KEY = VECTORS["secret_access_key"]
AT = datetime(2024, 1, 15, 12, 34, 56, 789_000, tzinfo=UTC)

AWS_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-west-2", "sa-east-1", "il-central-1"]
CUSTOM_REGIONS = ["us-east-1", "eu-west-1", "minio", "garage-1"]
ENDPOINTS = [
    "http://127.0.0.1:9000",
    "https://minio.example.com",
    "http://minio.example.com",
    "http://localhost:9000/",
    "https://MinIO.Example.COM:443",
    "http://10.1.2.3:80",
]
STYLES: list[AddressingStyle] = ["auto", "virtual", "path"]
TOKENS = [None, "FQoGZXIvYXdzE//token+with/special=chars"]  # more in test_session_tokens

_CLIENTS: dict[tuple[str, str | None, str, str | None], Any] = {}
_SESSION: list[botocore.session.Session] = []  # one session: its loaded models make clients cheap
_OURS: dict[tuple[str, str | None, str, str | None], SigV4Presigner] = {}
_NOW = [AT]  # what our cached presigners' clock returns


def _botocore(region: str, endpoint: str | None, style: AddressingStyle, token: str | None) -> Any:
    key = (region, endpoint, style, token)
    if key not in _CLIENTS:
        if not _SESSION:
            _SESSION.append(botocore.session.Session())
        _CLIENTS[key] = _SESSION[0].create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            aws_session_token=token,
            config=client_config(BucketTarget("b", region, endpoint, style), 1),
        )
    return _CLIENTS[key]


def _ours(
    region: str, endpoint: str | None, style: AddressingStyle, token: str | None
) -> SigV4Presigner:
    key = (region, endpoint, style, token)
    if key not in _OURS:
        _OURS[key] = SigV4Presigner(
            Credentials(ACCESS_KEY, SECRET_KEY, token),
            region=region,
            endpoint_url=endpoint,
            addressing_style=style,
            clock=lambda: _NOW[0],
        )
    return _OURS[key]


def botocore_url(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    method: str,
    bucket: str,
    key: str,
    expires: int,
    params: Mapping[str, str],
) -> str:
    """What ``Signers.presigner`` returns for these arguments at the instant ``at``."""
    client = _botocore(*config)
    operation = {"GET": "get_object", "PUT": "put_object"}[method]
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        return str(
            client.generate_presigned_url(
                operation,
                Params={"Bucket": bucket, "Key": key, **params},
                ExpiresIn=expires,
                HttpMethod=method,
            )
        )


def both(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    method: str,
    bucket: str,
    key: str,
    expires: int,
    params: Mapping[str, str],
) -> tuple[str | None, str | None]:
    """(ours, botocore's) URL; None where that side refused (Unsupported / botocore error)."""
    _NOW[0] = at
    try:
        ours: str | None = _ours(*config)(method, bucket, key, expires, params)
    except Unsupported:
        ours = None
    try:
        theirs: str | None = botocore_url(config, at, method, bucket, key, expires, params)
    except Exception:  # noqa: BLE001 - any botocore refusal must be ours too
        theirs = None
    return ours, theirs


def must_support(config: tuple[str, str | None, AddressingStyle, str | None]) -> bool:
    """What the project uses: AWS endpoints in any style, custom endpoints with path style."""
    region, endpoint, style, _ = config
    return region in AWS_REGIONS if endpoint is None else style == "path"


def _vector_label(case: dict[str, Any]) -> str:
    i = case["input"]
    return f"{i['method']}-{i['style']}-{i['region']}-{i.get('endpoint')}-{i['key']!r}"[:90]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=_vector_label)
def test_shared_vectors_match_byte_for_byte(case: dict[str, Any]) -> None:
    """Every vector of tests/data/sigv4-presign.json comes out identical, at its X-Amz-Date."""
    i = case["input"]
    # Most vectors share the file's signing time; the AWS documentation example has its own.
    stamp = case["url"].split("X-Amz-Date=")[1][:16]
    at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    presign = SigV4Presigner(
        Credentials(VECTORS["access_key_id"], VECTORS["secret_access_key"], i.get("sessionToken")),
        region=i["region"],
        endpoint_url=i.get("endpoint"),
        addressing_style=i["style"],
        clock=lambda: at,
    )
    names = {
        "responseContentDisposition": "ResponseContentDisposition",
        "responseContentType": "ResponseContentType",
        "contentType": "ContentType",
    }
    params = {boto: i[field] for field, boto in names.items() if field in i}
    assert presign(i["method"], i["bucket"], i["key"], i["expires"], params) == case["url"]


# Keys: runs of awkward pieces and arbitrary UTF-8 text (control characters included).
AWKWARD = [
    "/", "//", "..", ".", " ", "  ", "+", "=", "&", "?", "#", "%", "%20", "%2F", "!", "$", "'",
    "(", ")", "*", ",", ";", ":", "@", "~", "\t", "\n", "\r", "\x00", "\x7f", "ü", "日本語",
    "😀", "\u00a0", "\u2028", "\ufeff", "[", "]", "{", "}", "|", "^", "`", '"', "<", ">", "\\",
]  # fmt: skip
keys = (
    st.lists(
        st.one_of(st.sampled_from(AWKWARD), st.text(st.characters(codec="utf-8"), max_size=40)),
        min_size=1,
        max_size=40,
    )
    .map("".join)
    .filter(lambda k: 0 < len(k.encode()) <= 1024)
)
plain_buckets = st.from_regex(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", fullmatch=True).filter(
    lambda b: not b.endswith(("--x-s3", "--xa-s3", "--op-s3"))  # S3 Express, Outposts
)
dotted_buckets = st.from_regex(
    r"[a-z0-9]{1,10}(?:[.-][a-z0-9]{1,10}){1,4}(?:\.[a-z0-9]{1,10})", fullmatch=True
).filter(lambda b: len(b) <= 63)
buckets = st.one_of(plain_buckets, dotted_buckets, st.sampled_from(["1.2.3.4", "a..b", "a-.b"]))
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
param_text = st.text(st.characters(codec="utf-8"), max_size=60)
get_params = st.lists(
    st.tuples(st.sampled_from(["ResponseContentDisposition", "ResponseContentType"]), param_text),
    max_size=2,
    unique_by=lambda kv: kv[0],
).map(dict)  # botocore keeps the caller's order in the URL: so must we
supported_configs = st.one_of(
    st.tuples(
        st.sampled_from(AWS_REGIONS), st.none(), st.sampled_from(STYLES), st.sampled_from(TOKENS)
    ),
    st.tuples(
        st.sampled_from(CUSTOM_REGIONS),
        st.sampled_from(ENDPOINTS),
        st.just("path"),
        st.sampled_from(TOKENS),
    ),
)
all_configs = st.tuples(
    st.sampled_from(["us-east-1", "eu-west-1", "minio"]),
    st.sampled_from([None, *ENDPOINTS]),
    st.sampled_from(STYLES),
    st.sampled_from(TOKENS),
)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    config=supported_configs,
    at=instants,
    bucket=buckets,
    key=keys,
    expires=st.integers(1, 604_800),
    params=get_params,
)
@example(("us-east-1", None, "auto", None), AT, "my-bucket", "é" * 512, 3600, {})
@example(("eu-west-1", None, "virtual", None), AT, "my-bucket", "/" * 1024, 3600, {})
@example(("eu-west-1", "http://127.0.0.1:9000", "path", None), AT, "b.c", "a " * 512, 1, {})
def test_get_equals_botocore_where_the_project_needs_it(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    bucket: str,
    key: str,
    expires: int,
    params: dict[str, str],
) -> None:
    """Default AWS endpoints with any style and custom endpoints with path style: never
    Unsupported, and the GET URL equals botocore's for any key, bucket, time and parameters."""
    ours, theirs = both(config, at, "GET", bucket, key, expires, params)
    assert theirs is not None
    assert ours == theirs


@FAST
@given(
    config=all_configs,
    at=instants,
    bucket=st.one_of(buckets, st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True)),
    key=keys,
    expires=st.integers(1, 604_800),
    params=get_params,
)
def test_get_equals_botocore_or_is_unsupported_anywhere(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    bucket: str,
    key: str,
    expires: int,
    params: dict[str, str],
) -> None:
    """Over every style/endpoint/region mix and legacy bucket names (uppercase, "_", too
    long), the URL equals botocore's or our presigner raised Unsupported: it never differs,
    and it never signs what botocore refuses."""
    ours, theirs = both(config, at, "GET", bucket, key, expires, params)
    if ours is not None:
        assert ours == theirs


@FAST
@given(
    config=all_configs,
    bucket=buckets,
    key=keys,
    content_type=st.one_of(
        st.none(),
        param_text,
        st.sampled_from(
            [
                "text/plain; charset=utf-8",
                "  spaced \t out  ",
                "application/x-www-form-urlencoded; charset=utf-8",
                "application/x-www-form-urlencoded",
                "",
            ]
        ),
    ),
)
def test_put_equals_botocore_with_and_without_content_type(
    config: tuple[str, str | None, AddressingStyle, str | None],
    bucket: str,
    key: str,
    content_type: str | None,
) -> None:
    """PUT URLs equal botocore's; a ContentType becomes the signed header content-type (its
    whitespace collapsed), not a query parameter, except the form type botocore drops."""
    params = {} if content_type is None else {"ContentType": content_type}
    ours, theirs = both(config, AT, "PUT", bucket, key, 3600, params)
    if must_support(config):
        assert ours is not None
    if ours is not None:
        assert ours == theirs
        signed = ours.split("X-Amz-SignedHeaders=")[1].split("&")[0]
        dropped = content_type in (None, "application/x-www-form-urlencoded; charset=utf-8")
        assert signed == ("host" if dropped else "content-type%3Bhost")
        assert "content-type=" not in ours.lower().split("?")[1]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "tök en\n",
        "IQoJb3JpZ2luX2VjE" + "A/b+C=d" * 150,
        "FQoGZXIvYXdzE//token+with/special=chars",
    ],
)
@pytest.mark.parametrize(
    ("region", "endpoint", "style"),
    [("us-east-1", None, "auto"), ("eu-west-1", "http://127.0.0.1:9000", "path")],
)
def test_session_tokens_go_after_signed_headers_and_are_signed(
    token: str, region: str, endpoint: str | None, style: AddressingStyle
) -> None:
    """A session token (even an empty one) is X-Amz-Security-Token, placed after
    X-Amz-SignedHeaders in the URL but signed in sorted position, exactly as botocore does."""
    params = {"ResponseContentType": "text/plain", "ResponseContentDisposition": "attachment"}
    for method, extra in [("GET", params), ("PUT", {"ContentType": "image/png"})]:
        ours, theirs = both(
            (region, endpoint, style, token), AT, method, "my-bucket", "k", 60, extra
        )
        assert ours == theirs
        assert ours is not None
        assert "&X-Amz-SignedHeaders=" in ours.split("&X-Amz-Security-Token=")[0]


@pytest.mark.parametrize(
    ("access_key", "secret"),
    [
        ("ASIAY34FZKBOKMUTVV7A", "x" * 60),  # "AWS4" + secret is exactly one SHA-256 block
        ("ASIAY34FZKBOKMUTVV7A", "y" * 61),  # one byte more: HMAC must hash the key first
        ("ASIAY34FZKBOKMUTVV7A", "z/+=" * 50),
        ("key with space/é+", "sécret/日本+="),
    ],
)
def test_credentials_of_any_shape_sign_like_botocore(access_key: str, secret: str) -> None:
    """Secrets longer than HMAC's block, unicode secrets and odd access key ids (which end up
    percent-encoded in X-Amz-Credential) give botocore's URL."""
    creds = Credentials(access_key, secret, "tok")
    configs: list[tuple[str, str | None, AddressingStyle]] = [
        ("eu-west-1", None, "auto"),
        ("minio", ENDPOINTS[0], "path"),
    ]
    for region, endpoint, style in configs:
        client = botocore.session.Session().create_client(
            "s3",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            aws_session_token="tok",
            config=client_config(BucketTarget("b", region, endpoint, style), 1),
        )
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=AT):
            expected = client.generate_presigned_url(
                "put_object",
                Params={"Bucket": "my-bucket", "Key": "k y", "ContentType": "text/csv"},
                ExpiresIn=60,
                HttpMethod="PUT",
            )
        presign = SigV4Presigner(
            creds, region=region, endpoint_url=endpoint, addressing_style=style, clock=lambda: AT
        )
        assert presign("PUT", "my-bucket", "k y", 60, {"ContentType": "text/csv"}) == expected


def test_every_aws_partition_region_matches() -> None:
    """Each region botocore lists for the aws partition gives botocore's URL in every style,
    for plain and dotted buckets, GET and PUT."""
    data = Path(botocore.__file__).parent / "data" / "partitions.json"
    partitions = json.loads(data.read_text())["partitions"]
    regions = [r for p in partitions if p["id"] == "aws" for r in p["regions"] if r != "aws-global"]
    assert len(regions) > 25
    for region in regions:
        for style in STYLES:
            for bucket, method in [("my-bucket", "GET"), ("my.dotted.bucket", "PUT")]:
                ours, theirs = both(
                    (region, None, style, None), AT, method, bucket, "a b/c", 60, {}
                )
                assert ours == theirs, (region, style, bucket)


def test_other_partitions_are_unsupported() -> None:
    """China, GovCloud, ISO and EU sovereign regions (and the -global pseudo-regions) have
    other hosts or signing regions: the presigner refuses them at construction."""
    data = Path(botocore.__file__).parent / "data" / "partitions.json"
    partitions = json.loads(data.read_text())["partitions"]
    regions = [r for p in partitions if p["id"] != "aws" for r in p["regions"]] + ["aws-global"]
    for region in regions:
        with pytest.raises(Unsupported):
            SigV4Presigner(
                Credentials(ACCESS_KEY, SECRET_KEY),
                region=region,
                endpoint_url=None,
                addressing_style="auto",
            )
    cn = botocore_url(("cn-north-1", None, "path", None), AT, "GET", "b-1", "k", 60, {})
    assert cn.startswith("https://s3.cn-north-1.amazonaws.com.cn/")


@pytest.mark.parametrize(
    ("endpoint", "style"),
    [
        (None, "auto"),
        (None, "virtual"),
        ("http://127.0.0.1:9000", "path"),
        ("https://minio.example.com", "virtual"),
    ],
)
def test_the_clock_is_read_per_call_across_seconds_days_and_zones(
    endpoint: str | None, style: AddressingStyle
) -> None:
    """One presigner follows its clock: cached timestamps roll over at each second and the
    signing key at each UTC day, backwards too; naive readings count as UTC, aware ones in
    any zone are converted."""
    moments = [
        datetime(2024, 1, 15, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 1, 16, 0, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 16, 0, 0, 0, 500_000, tzinfo=UTC),
        datetime(2024, 1, 16, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 15, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 16, 1, 30, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 1, 15, 23, 30, 0),  # naive
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
    ]
    now = [moments[0]]
    presign = SigV4Presigner(
        Credentials(ACCESS_KEY, SECRET_KEY),
        region="eu-west-1",
        endpoint_url=endpoint,
        addressing_style=style,
        clock=lambda: now[0],
    )
    for moment in moments:
        now[0] = moment
        utc = moment if moment.tzinfo is None else moment.astimezone(UTC)
        config = ("eu-west-1", endpoint, style, None)
        expected = botocore_url(config, utc, "GET", "my-bucket", "k", 60, {})
        assert presign("GET", "my-bucket", "k", 60, {}) == expected, moment


@pytest.mark.parametrize(
    ("method", "params", "expires"),
    [
        ("GET", {"ContentType": "text/plain"}, 60),
        ("PUT", {"ResponseContentType": "text/plain"}, 60),
        ("GET", {"VersionId": "1"}, 60),
        ("DELETE", {}, 60),
        ("HEAD", {}, 60),
        ("get", {}, 60),
        ("GET", {}, 0),
        ("GET", {}, 604_801),
        ("GET", {}, True),
        ("GET", {}, 60.0),
    ],
)
def test_calls_outside_the_proven_set_raise_unsupported(
    method: str, params: dict[str, str], expires: Any
) -> None:
    """Other methods, parameters and expiries are left to botocore, never guessed."""
    presign = _ours("eu-west-1", None, "path", None)
    with pytest.raises(Unsupported):
        presign(method, "my-bucket", "k", expires, params)


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        ("my-bucket", ""),
        ("my-bucket", "lone \udc80 surrogate"),
        ("My-Bucket", "k"),
        ("my_bucket", "k"),
        ("ab", "k"),
        ("b" * 64, "k"),
        ("arn:aws:s3:us-west-2:123456789012:accesspoint/ap", "k"),
        ("my-bucket--x-s3", "k"),
        ("my-bucket--xa-s3", "k"),
        ("my-bucket--op-s3", "k"),
    ],
)
def test_buckets_and_keys_outside_the_proven_set_raise_unsupported(bucket: str, key: str) -> None:
    """Empty or non-UTF-8 keys, legacy or special bucket names (ARNs, S3 Express, Outposts)."""
    with pytest.raises(Unsupported):
        _ours("eu-west-1", None, "auto", None)("GET", bucket, key, 60, {})


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://s3-accelerate.amazonaws.com",
        "http://[::1]:9000",
        "http://user:pw@minio.example.com",
        "http://minio.example.com/prefix",
        "http://minio.example.com?x=1",
        "ftp://minio.example.com",
        "minio.example.com",
        "http://minio.example.com:99999",
        "http://-bad.example.com",
    ],
)
def test_endpoints_outside_the_proven_set_raise_unsupported(endpoint: str) -> None:
    """Accelerate, IPv6, credentials, base paths, queries and malformed URLs stay with botocore."""
    with pytest.raises(Unsupported):
        SigV4Presigner(
            Credentials(ACCESS_KEY, SECRET_KEY),
            region="eu-west-1",
            endpoint_url=endpoint,
            addressing_style="path",
        )


@pytest.mark.parametrize(
    ("variable", "value", "region", "style"),
    [
        ("AWS_USE_FIPS_ENDPOINT", "true", "us-west-2", "path"),
        ("AWS_USE_DUALSTACK_ENDPOINT", "true", "eu-west-1", "virtual"),
        ("AWS_S3_US_EAST_1_REGIONAL_ENDPOINT", "regional", "us-east-1", "virtual"),
        ("AWS_DEFAULTS_MODE", "standard", "us-east-1", "path"),
        ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000", "eu-west-1", "path"),
    ],
)
def test_environment_that_steers_botocore_makes_the_presigner_unsupported(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, region: str, style: AddressingStyle
) -> None:
    """Each of these variables changes botocore's URL, so with it set we refuse to sign."""
    plain = _ours(region, None, style, None)
    _NOW[0] = AT
    without = plain("GET", "my-bucket", "k", 60, {})
    monkeypatch.setenv(variable, value)
    client = botocore.session.Session().create_client(
        "s3",
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=client_config(BucketTarget("b", region, None, style), 1),
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=AT):
        steered = client.generate_presigned_url(
            "get_object", Params={"Bucket": "my-bucket", "Key": "k"}, ExpiresIn=60
        )
    assert steered != without
    with pytest.raises(Unsupported, match=variable):
        SigV4Presigner(
            Credentials(ACCESS_KEY, SECRET_KEY),
            region=region,
            endpoint_url=None,
            addressing_style=style,
        )


def test_profile_settings_that_steer_botocore_are_reported() -> None:
    """Profile keys that change S3 endpoints are named; harmless ones (region, the
    addressing style the client config overrides anyway) are not."""
    assert botocore_overrides({}, {"region": "eu-west-1", "s3": {"addressing_style": "path"}}) == []
    assert botocore_overrides(
        {"AWS_PROFILE": "x"},
        {"use_fips_endpoint": "true", "s3": {"use_accelerate_endpoint": "true"}},
    ) == ["profile:use_fips_endpoint", "profile:s3.use_accelerate_endpoint"]
    with pytest.raises(Unsupported, match="endpoint_url"):
        SigV4Presigner(
            Credentials(ACCESS_KEY, SECRET_KEY),
            region="eu-west-1",
            endpoint_url=None,
            addressing_style="auto",
            profile_config={"endpoint_url": "http://localhost:9000"},
        )


def test_empty_credentials_are_unsupported() -> None:
    """An empty access key or secret is botocore's business (it may refuse to sign)."""
    for creds in [Credentials("", SECRET_KEY), Credentials(ACCESS_KEY, "")]:
        with pytest.raises(Unsupported):
            SigV4Presigner(creds, region="eu-west-1", endpoint_url=None, addressing_style="auto")


# Link ids (issue 15): x-sharebatch-id signed into every link.
LINK_ID = "0123456789abcdef"
hex_ids = st.binary(min_size=8, max_size=8).map(bytes.hex)
_FALLBACKS: dict[tuple[str, str | None, str, str | None], Any] = {}


def oracle_url(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    method: str,
    bucket: str,
    key: str,
    expires: int,
    params: Mapping[str, str],
    link_id: str,
) -> str:
    """botocore's ``S3SigV4QueryAuth`` at ``at`` over an ``AWSRequest`` whose URL carries the
    id after the operation's parameters: where botocore's URL for the call leads (its endpoint
    rules), with that call's own query and headers."""
    plain = urlsplit(botocore_url(config, at, method, bucket, key, expires, params))
    query = [p for p in plain.query.split("&") if not p.startswith("X-Amz-")]
    query.append(f"{LINK_ID_PARAM}={quote(link_id, safe='-_.~')}")
    # The region botocore signs for (the global endpoint still signs for the client's).
    scope = parse_qs(plain.query)["X-Amz-Credential"][0].split("/")[2]
    headers = {"Content-Type": params["ContentType"]} if "ContentType" in params else {}
    request = AWSRequest(
        method, urlunsplit((plain.scheme, plain.netloc, plain.path, "&".join(query), "")), headers
    )
    signer = botocore.auth.S3SigV4QueryAuth(
        botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY, config[3]), "s3", scope, expires
    )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        signer.add_auth(request)
    return str(request.url)


def fallback_url(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    method: str,
    bucket: str,
    key: str,
    expires: int,
    params: Mapping[str, str],
) -> str:
    """What the production botocore fallback (``presigners.botocore_presigner``) signs."""
    region, endpoint, style, token = config
    if config not in _FALLBACKS:
        if not _SESSION:
            _SESSION.append(botocore.session.Session())
        _FALLBACKS[config] = botocore_presigner(
            _SESSION[0],
            BucketTarget("b", region, endpoint, style),
            region,
            Credentials(ACCESS_KEY, SECRET_KEY, token),
        )
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        return str(_FALLBACKS[config](method, bucket, key, expires, params))


def three(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    method: str,
    bucket: str,
    key: str,
    expires: int,
    params: Mapping[str, str],
    link_id: str,
) -> tuple[str, str, str]:
    """(ours, the oracle's, the botocore fallback's) URL of a link carrying ``link_id``."""
    _NOW[0] = at
    with_id = {**params, LINK_ID_PARAM: link_id}
    ours = _ours(*config)(method, bucket, key, expires, with_id)
    oracle = oracle_url(config, at, method, bucket, key, expires, params, link_id)
    return ours, oracle, fallback_url(config, at, method, bucket, key, expires, with_id)


@pytest.mark.parametrize(
    ("config", "method", "params", "expected_query"),
    [
        (
            ("eu-west-1", None, "auto", None),
            "GET",
            {},
            f"{LINK_ID_PARAM}={LINK_ID}&X-Amz-Algorithm=",
        ),
        (
            ("us-east-1", None, "virtual", TOKENS[1]),
            "GET",
            {"ResponseContentDisposition": "attachment", "ResponseContentType": "text/csv"},
            "response-content-disposition=attachment&response-content-type=text%2Fcsv"
            f"&{LINK_ID_PARAM}={LINK_ID}&X-Amz-Algorithm=",
        ),
        (
            ("minio", "http://127.0.0.1:9000", "path", None),
            "PUT",
            {"ContentType": "application/pdf"},
            f"{LINK_ID_PARAM}={LINK_ID}&X-Amz-Algorithm=",
        ),
        (
            ("eu-west-1", None, "path", TOKENS[1]),
            "PUT",
            {},
            f"{LINK_ID_PARAM}={LINK_ID}&X-Amz-Algorithm=",
        ),
    ],
)
def test_link_id_sits_after_the_operation_parameters_as_botocore_signs_it(
    config: tuple[str, str | None, AddressingStyle, str | None],
    method: str,
    params: dict[str, str],
    expected_query: str,
) -> None:
    """The id comes after the response-* parameters and before every X-Amz-* one, in ours,
    the oracle's and the fallback's URL alike, and it changes the signature."""
    ours, oracle, fallback = three(config, AT, method, "my-bucket", "a b/c", 60, params, LINK_ID)
    assert ours == oracle == fallback
    assert urlsplit(ours).query.startswith(expected_query)
    _, plain = both(config, AT, method, "my-bucket", "a b/c", 60, params)
    assert plain is not None
    assert plain.split("X-Amz-Signature=")[1] != ours.split("X-Amz-Signature=")[1]
    assert parse_qs(urlsplit(ours).query)[LINK_ID_PARAM] == [LINK_ID]


@FAST
@given(
    config=supported_configs,
    at=instants,
    bucket=buckets,
    key=keys,
    expires=st.integers(1, 604_800),
    params=get_params,
    link_id=st.one_of(hex_ids, param_text),
)
@example(("us-east-1", None, "auto", None), AT, "my-bucket", "k", 1, {}, "")
@example(("eu-west-1", None, "virtual", None), AT, "b.c", "k", 60, {}, "a+b=c&d é")
def test_get_with_link_id_equals_the_botocore_oracle(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    bucket: str,
    key: str,
    expires: int,
    params: dict[str, str],
    link_id: str,
) -> None:
    """A GET link with any id (our hex ones, or any text) is byte for byte what botocore's
    S3SigV4QueryAuth signs over a request carrying it, and what the botocore fallback makes."""
    ours, oracle, fallback = three(config, at, "GET", bucket, key, expires, params, link_id)
    assert ours == oracle == fallback


@FAST
@given(
    config=supported_configs,
    bucket=buckets,
    key=keys,
    content_type=st.one_of(
        st.none(), param_text, st.just("application/x-www-form-urlencoded; charset=utf-8")
    ),
    link_id=hex_ids,
)
def test_put_with_link_id_equals_the_botocore_oracle(
    config: tuple[str, str | None, AddressingStyle, str | None],
    bucket: str,
    key: str,
    content_type: str | None,
    link_id: str,
) -> None:
    """A PUT upload URL with an id and any content type matches the oracle and the fallback."""
    params = {} if content_type is None else {"ContentType": content_type}
    ours, oracle, fallback = three(config, AT, "PUT", bucket, key, 3600, params, link_id)
    assert ours == oracle == fallback
    assert f"?{LINK_ID_PARAM}={link_id}&X-Amz-Algorithm=" in ours


def test_link_id_in_a_put_is_signed_but_never_a_header() -> None:
    """Unlike ContentType, the id is a query parameter of a PUT: the signed headers stay as
    they were, so the upload command sends nothing new."""
    config: tuple[str, str | None, AddressingStyle, str | None] = ("eu-west-1", None, "auto", None)
    ours, _, _ = three(config, AT, "PUT", "my-bucket", "k", 60, {"ContentType": "a/b"}, LINK_ID)
    assert "X-Amz-SignedHeaders=content-type%3Bhost&" in ours
    ours, _, _ = three(config, AT, "PUT", "my-bucket", "k", 60, {}, LINK_ID)
    assert "X-Amz-SignedHeaders=host&" in ours


def test_link_id_goes_last_whatever_the_callers_order() -> None:
    """Given before the response-* parameters, the id still lands after them, as the botocore
    fallback (which appends it to the URL) would put it."""
    config: tuple[str, str | None, AddressingStyle, str | None] = ("eu-west-1", None, "auto", None)
    params = {"ResponseContentType": "text/csv", "ResponseContentDisposition": "attachment"}
    ours, oracle, fallback = three(config, AT, "GET", "my-bucket", "k", 60, params, LINK_ID)
    _NOW[0] = AT
    first = _ours(*config)("GET", "my-bucket", "k", 60, {LINK_ID_PARAM: LINK_ID, **params})
    assert first == ours == oracle == fallback
    assert "response-content-disposition=attachment&x-sharebatch-id=" in first


def _signed_at(url: str) -> datetime:
    [stamp] = parse_qs(urlsplit(url).query)["X-Amz-Date"]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


batch_params = st.lists(
    st.tuples(
        st.sampled_from(["ResponseContentDisposition", "ResponseContentType", LINK_ID_PARAM]),
        st.one_of(param_text, tricky.texts()),
    ),
    max_size=3,
    unique_by=lambda kv: kv[0],
).map(dict)


@FAST
@given(
    config=supported_configs,
    at=instants,
    bucket=buckets,
    requests=st.lists(
        st.tuples(st.one_of(keys, tricky.texts(min_size=1)), batch_params), max_size=5
    ),
    expires=st.integers(1, 604_800),
)
def test_a_batch_of_gets_is_the_same_urls_as_one_call_each(
    config: tuple[str, str | None, AddressingStyle, str | None],
    at: datetime,
    bucket: str,
    requests: list[tuple[str, dict[str, str]]],
    expires: int,
) -> None:
    """get_many gives, for any keys and parameters in any order, the URLs one call each gives
    in the same second (or refuses what a call refuses), and names that second."""
    _NOW[0] = at
    ours = _ours(*config)
    try:
        one_by_one = [ours("GET", bucket, key, expires, params) for key, params in requests]
    except Unsupported:
        with pytest.raises(Unsupported):
            ours.get_many(bucket, expires, requests)
        return
    urls, signed_at = ours.get_many(bucket, expires, requests)
    assert urls == one_by_one
    assert signed_at == at.replace(microsecond=0)
    assert {_signed_at(url) for url in urls} <= {signed_at}


def test_a_batch_reads_the_clock_once() -> None:
    """Every URL of a batch is signed in the second the clock said when the batch began."""
    seconds = iter([AT, AT + timedelta(seconds=1)])
    presign = SigV4Presigner(
        Credentials(ACCESS_KEY, SECRET_KEY),
        region="eu-west-1",
        endpoint_url=None,
        addressing_style="auto",
        clock=lambda: next(seconds),
        environ={},
    )
    urls, signed_at = presign.get_many("my-bucket", 60, [("a", {}), ("b", {})])
    assert {_signed_at(url) for url in urls} == {signed_at} == {AT.replace(microsecond=0)}
