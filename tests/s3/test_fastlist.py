"""Direct listing: botocore's signature and botocore's reading of each page, ~8x less CPU.

moto checks no signature, so the header signature is proven against botocore itself under a
frozen clock: its S3SigV4Auth on the same request, and the request its own client sends.
Pages are proven against botocore's parser on generated answers. On moto, the direct lister
must list exactly what botocore lists, and any trouble must hand the listing to botocore.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch
from urllib.parse import quote
from xml.sax.saxutils import escape

import botocore.auth
import botocore.config
import botocore.handlers
import botocore.session
import pytest
from aiobotocore.parsers import AioRestXMLParser
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.audit import capture
from sharebatch.errors import S3ListingError, UsageError
from sharebatch.models import BucketTarget, Connection, Credentials, ObjectRef
from sharebatch.s3.fastlist import HeaderSigner, list_query
from sharebatch.s3.gateway import S3Gateway
from sharebatch.s3.listparse import Page, _fast_page, objects_of, read_page
from sharebatch.s3.sigv4 import S3Endpoint
from tests.support.faultproxy import FaultProxy, fault_proxy
from tests.support.s3 import ACCESS_KEY, S3

FROZEN = datetime(2026, 11, 29, 12, 34, 56, tzinfo=UTC)
OUTPUT = (
    botocore.session.get_session()
    .get_service_model("s3")
    .operation_model("ListObjectsV2")
    .output_shape
)
# Printable text, and the characters URL and XML encodings treat specially.
awkward = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs", "Cc")),
        st.sampled_from(list(" +=&?#%!$'()*,;:@~/<>\"\\")),
    ),
    max_size=40,
)


# --- the header signature -------------------------------------------------------------


def _botocore_headers(url: str, credentials: Credentials, region: str) -> dict[str, str]:
    request = AWSRequest(method="GET", url=url)
    boto = BotoCredentials(
        credentials.access_key_id, credentials.secret_access_key, credentials.session_token
    )
    botocore.auth.S3SigV4Auth(boto, "s3", region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@settings(max_examples=300, deadline=None)
@given(
    prefix=awkward,
    delimiter=st.sampled_from([None, "/", "|"]),
    token=st.none()
    | st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=60
    ),
    session_token=st.sampled_from([None, "", "FwoGZXIvYXdzE+/token=="]),
    place=st.sampled_from(
        [
            ("eu-west-1", None, "auto", "reports-bucket"),
            ("us-east-1", None, "virtual", "reports-bucket"),
            ("ap-southeast-2", None, "auto", "dotted.bucket.name"),
            ("eu-central-1", None, "path", "reports-bucket"),
            ("eu-west-1", "http://127.0.0.1:9000", "auto", "reports-bucket"),
            ("us-east-1", "https://S3.Example.COM:443", "virtual", "reports-bucket"),
            ("garage", "http://minio.local:80", "path", "reports-bucket"),
        ]
    ),
)
def test_header_signature_is_botocores(
    prefix: str,
    delimiter: str | None,
    token: str | None,
    session_token: str | None,
    place: tuple[str, str | None, Any, str],
) -> None:
    """For every prefix, token, credentials kind, region, endpoint and addressing style, the
    signed headers are exactly the ones botocore's S3SigV4Auth adds to the same request."""
    region, endpoint, style, bucket = place
    credentials = Credentials(ACCESS_KEY, "secret/with+odd=chars", session_token)
    base, path, host = S3Endpoint(
        region=region, endpoint_url=endpoint, addressing_style=style, environ={}
    ).api_route(bucket)
    query = list_query(prefix, delimiter, token)
    url = f"{base}{'' if path else '/'}?{query}"
    ours = HeaderSigner(region).headers(
        credentials, method="GET", host=host, path=path or "/", query=query, now=FROZEN
    )
    with patch.object(botocore.auth, "get_current_datetime", lambda: FROZEN):
        theirs = _botocore_headers(url, credentials, region)
    assert {k.lower(): v for k, v in ours.items() if k != "host"} == theirs


def test_signature_is_the_one_botocores_client_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's own client, asked for the same page, sends the same Authorization header:
    same host, path and canonical query (its parameter order differs; the canonical form is
    sorted)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FROZEN)
    sent: list[AWSRequest] = []

    class Stop(Exception):
        pass

    def capture_request(request: AWSRequest, **_: object) -> None:
        sent.append(request)
        raise Stop

    credentials = Credentials(ACCESS_KEY, "test-secret", "a-session-token")
    for endpoint, style in ((None, "auto"), ("http://127.0.0.1:9000", "path")):
        client = botocore.session.Session().create_client(
            "s3",
            region_name="eu-west-1",
            endpoint_url=endpoint,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": style}),
        )
        client.meta.events.register("before-send.s3", capture_request)
        with pytest.raises(Stop):
            client.list_objects_v2(
                Bucket="reports-bucket", Prefix="q3 reports/é+&", Delimiter="/",
                ContinuationToken="1abc+/=",
            )  # fmt: skip
        client.close()
        base, path, host = S3Endpoint(
            region="eu-west-1", endpoint_url=endpoint, addressing_style=style, environ={}
        ).api_route("reports-bucket")
        ours = HeaderSigner("eu-west-1").headers(
            credentials,
            method="GET",
            host=host,
            path=path or "/",
            query=list_query("q3 reports/é+&", "/", "1abc+/="),
            now=FROZEN,
        )
        assert sent[-1].url.split("?")[0] == f"{base}{'' if path else '/'}"
        assert sent[-1].headers["Authorization"] == ours["Authorization"].encode()


# --- reading a page -------------------------------------------------------------------

stamp = st.datetimes(min_value=datetime(1970, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
)


@st.composite
def s3_pages(draw: st.DrawFn) -> bytes:
    """Answers laid out as S3 lays them out (the fast reading), keys url-encoded or not."""
    url = draw(st.booleans())

    def name(text: str) -> str:
        return escape(quote(text, safe="/") if url else text)

    rows = []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(awkward | st.sampled_from(["folder/", "a/b/", "x"]))
        size = draw(st.sampled_from([0, 1, 5 * 2**40]))
        etag = draw(st.text("0123456789abcdef", min_size=32, max_size=32))
        quote_mark = draw(st.sampled_from(["&quot;", '"', "&#34;"]))
        checksum = draw(st.sampled_from(["", "<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"]))
        rows.append(
            f"<Contents><Key>{name(key)}</Key><LastModified>{draw(stamp)}</LastModified>"
            f"<ETag>{quote_mark}{etag}{quote_mark}</ETag>{checksum}<Size>{size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    folders = [
        f"<CommonPrefixes><Prefix>{name(p)}</Prefix></CommonPrefixes>"
        for p in draw(st.lists(awkward, max_size=3))
    ]
    truncated = draw(st.booleans())
    head = "<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
    if url:
        head += "<EncodingType>url</EncodingType>"
    head += f"<IsTruncated>{str(truncated).lower()}</IsTruncated>"
    tail = "<NextContinuationToken>1+token/=</NextContinuationToken>" if truncated else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        + head
        + "".join(rows + folders)
        + tail
        + "</ListBucketResult>"
    ).encode()


def _botocore_page(body: bytes) -> Page:
    """What the botocore path makes of ``body``: its parser, its url-decoding, our filter."""

    async def parse() -> dict[str, Any]:
        parser = AioRestXMLParser()
        response = {"body": body, "headers": {}, "status_code": 200}
        parsed: dict[str, Any] = await parser.parse(response, OUTPUT)
        return parsed

    parsed = asyncio.run(parse())
    context = {"encoding_type_auto_set": True}
    botocore.handlers.decode_list_object_v2(parsed, context)
    return Page(
        objects=objects_of("b", parsed.get("Contents", ())),
        folders=[p["Prefix"] for p in parsed.get("CommonPrefixes", ())],
        next_token=parsed.get("NextContinuationToken") if parsed.get("IsTruncated") else None,
    )


@settings(max_examples=300, deadline=None)
@given(s3_pages())
def test_pages_read_as_botocore_reads_them(body: bytes) -> None:
    """Objects (keys decoded, folder markers dropped), sub-folders and the next token are
    what the botocore path gives, for S3's layout (the fast reading)."""
    assert read_page(body, "b") == _botocore_page(body)
    assert _fast_page(body.decode(), "b") == _botocore_page(body)  # not the ElementTree path


@settings(max_examples=100, deadline=None)
@given(s3_pages(), st.data())
def test_other_layouts_are_read_by_elementtree_alike(body: bytes, data: st.DataObject) -> None:
    """Whitespace between tags or another element order leaves the fast reading: the answer
    is read by ElementTree, still exactly as botocore reads it."""
    text = body.decode()
    reshaped = data.draw(
        st.sampled_from(
            [
                text.replace("><Contents>", ">\n  <Contents>"),
                text.replace("<StorageClass>STANDARD</StorageClass>", "").replace(
                    "<Contents>", "<Contents><StorageClass>GLACIER</StorageClass>"
                ),
            ]
        )
    ).encode()
    assert read_page(reshaped, "b") == _botocore_page(reshaped)


@settings(max_examples=100, deadline=None)
@given(s3_pages(), st.data())
def test_cut_answers_are_not_pages(body: bytes, data: st.DataObject) -> None:
    """A body cut anywhere (a dropped connection that still ended the HTTP message) is not
    taken for a page: botocore, with its retries, must ask again."""
    cut = data.draw(st.integers(0, len(body) - 1))
    assert read_page(body[:cut], "b") is None


def test_errors_sent_with_200_are_not_pages() -> None:
    """S3 sometimes sends an error with status 200; that is botocore's to retry, not a page."""
    error = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code></Error>"
    assert read_page(error, "b") is None
    assert read_page(b"", "b") is None


# --- on moto --------------------------------------------------------------------------

KEYS = [f"big/{i:05d}.bin" for i in range(25)] + [
    "odd/spaces and +plus%25.txt",
    "odd/ünïcödé/ファイル.pdf",
    "odd/a&b<c>'d\".txt",
    "odd/~!$()*,;:@=?#.txt",
    "odd/sub/",  # a folder marker: never a link
    "odd/sub/inner.txt",
]


async def _listing(endpoint: str, prefix: str, delimiter: bool = False) -> Any:
    async with S3Gateway(Connection(endpoint_url=endpoint)) as gateway:
        target = BucketTarget("fast-bucket", "eu-west-1", endpoint, "path")
        if delimiter:
            return await gateway.listing.probe_level(target, prefix)
        return [o async for page in gateway.listing.list_pages(target, prefix) for o in page]


@pytest.fixture
def seeded(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3, FaultProxy]]:
    """KEYS in moto, behind the fault proxy, which makes pages of 10 keys (S3 may return
    fewer keys than asked for), so that a few objects span several pages."""
    s3.bucket("fast-bucket", {key: b"" if key.endswith("/") else key.encode() for key in KEYS})
    monkeypatch.setenv("SHAREBATCH_S3_READ_TIMEOUT", "1")
    with fault_proxy(s3.endpoint) as proxy:
        proxy.page_size = 10
        yield s3, proxy


@pytest.mark.parametrize("prefix", ["big/", "odd/", ""])
def test_direct_listing_lists_what_botocore_lists(
    seeded: tuple[S3, FaultProxy], monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    """Over several pages and awkward keys, the direct lister finds the same objects in the
    same order as botocore (switched on with SHAREBATCH_S3_DIRECT_LISTING=off)."""
    with capture() as events:
        direct = asyncio.run(_listing(seeded[1].url, prefix))
    assert [e["lister"] for e in events if e["event"] == "lister_selected"] == ["direct"]
    assert not [e for e in events if e["event"] == "fast_listing_off"]
    monkeypatch.setenv("SHAREBATCH_S3_DIRECT_LISTING", "off")
    with capture() as events:
        botocore_listed = asyncio.run(_listing(seeded[1].url, prefix))
    assert [e["lister"] for e in events if e["event"] == "lister_selected"] == ["botocore"]
    assert direct == botocore_listed
    expected = sorted(k for k in KEYS if k.startswith(prefix) and k != "odd/sub/")
    assert [o.key for o in direct] == sorted(expected, key=str.encode)
    assert all(isinstance(o, ObjectRef) and o.etag == hashlib.md5(o.key.encode()).hexdigest()  # noqa: S324 - what moto computes
               for o in direct)  # fmt: skip


def test_direct_probe_sees_objects_and_folders(seeded: tuple[S3, FaultProxy]) -> None:
    """The delimiter probe, sent directly, reads the level's objects and its sub-folders."""
    level = asyncio.run(_listing(seeded[1].url, "odd/", delimiter=True))
    assert level.complete
    assert level.folders == ["odd/sub/", "odd/ünïcödé/"]
    assert {o.key for o in level.objects} == {
        "odd/spaces and +plus%25.txt",
        "odd/a&b<c>'d\".txt",
        "odd/~!$()*,;:@=?#.txt",
    }


@pytest.mark.parametrize("kind", ["slowdown", "error500", "reset", "truncate"])
def test_trouble_hands_the_listing_to_botocore(seeded: tuple[S3, FaultProxy], kind: Any) -> None:
    """At the first sign of trouble on a later page, the lister steps aside: botocore asks
    again with its retries, lists every remaining page, and the listing is complete."""
    _, flaky = seeded
    flaky.add(kind, "big/", times=1, later_pages=True)
    with capture() as events:
        listed = asyncio.run(_listing(flaky.url, "big/"))
    assert [o.key for o in listed] == [k for k in KEYS if k.startswith("big/")]
    off = [e for e in events if e["event"] == "fast_listing_off"]
    assert len(off) == 1 and off[0]["bucket"] == "fast-bucket"
    seen = flaky.requests_for("big/")
    assert [s.fault for s in seen] == [None, kind, None, None]
    assert [s.later_page for s in seen] == [False, True, True, True]


def test_a_proxy_leaves_listing_to_botocore(seeded: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTPS_PROXY set (botocore honours it; the direct lister does not try), every
    request goes through botocore; the reason is in the audit log."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # moto itself is reached directly
    with capture() as events:
        listed = asyncio.run(_listing(seeded[1].url, "odd/"))
    chosen = [e for e in events if e["event"] == "lister_selected"]
    assert [(e["lister"], "proxy" in e["reason"]) for e in chosen] == [("botocore", True)]
    assert len(listed) == 5


def test_the_switch_only_takes_on_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHAREBATCH_S3_DIRECT_LISTING other than on/off is a usage error (exit 2), named."""
    monkeypatch.setenv("SHAREBATCH_S3_DIRECT_LISTING", "maybe")
    with pytest.raises(UsageError, match="SHAREBATCH_S3_DIRECT_LISTING"):
        S3Gateway()


def test_a_refused_prefix_leaves_the_lister_on(seeded: tuple[S3, FaultProxy]) -> None:
    """S3 refusing one prefix (403 AccessDenied, as a bucket policy does) fails that prefix
    as before, through botocore; the other prefixes are still listed directly."""
    _, proxy = seeded
    proxy.add("denied", "odd/", times=None)

    async def main() -> list[ObjectRef]:
        async with S3Gateway(Connection(endpoint_url=proxy.url)) as gateway:
            target = BucketTarget("fast-bucket", "eu-west-1", proxy.url, "path")
            with pytest.raises(S3ListingError, match="AccessDenied"):
                [o async for page in gateway.listing.list_pages(target, "odd/") for o in page]
            return [o async for page in gateway.listing.list_pages(target, "big/") for o in page]

    with capture() as events:
        listed = asyncio.run(main())
    assert [o.key for o in listed] == [k for k in KEYS if k.startswith("big/")]
    assert not [e for e in events if e["event"] == "fast_listing_off"]
    # One direct try, then botocore's (S3 does not retry a 403); then big/'s three pages.
    assert [s.fault for s in proxy.requests_for("odd/")] == ["denied", "denied"]
    assert len(proxy.requests_for("big/")) == 3


def test_refused_where_botocore_is_let_in_switches_the_lister_off(
    seeded: tuple[S3, FaultProxy],
) -> None:
    """A 403 for the direct request that botocore's request does not get means the fault is
    ours: the lister steps aside for the rest of the run, and the listing is complete."""
    _, proxy = seeded
    proxy.add("denied", "big/", times=1)
    with capture() as events:
        listed = asyncio.run(_listing(proxy.url, "big/"))
    assert [o.key for o in listed] == [k for k in KEYS if k.startswith("big/")]
    off = [e["reason"] for e in events if e["event"] == "fast_listing_off"]
    assert off == ["refused where botocore was let in"]
    assert [s.fault for s in proxy.requests_for("big/")] == ["denied", None, None, None]
