"""S3 server access log records parsed as AWS documents them, and as S3 really writes them."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.receipts.accesslog import (
    AccessRecord,
    BadLine,
    _parse_slowly,
    link_id_of,
    parse_line,
    parse_lines,
)
from tests.support.accesslog import QUOTE_FLOODS, log_line

# The example log of the S3 user guide, "Amazon S3 server access log format", as published in
# awsdocs/amazon-s3-userguide, doc_source/LogFormat.md (commit 0bd3dc39): five records with the
# fields up to TLS version. Verbatim.
USER_GUIDE_2021 = [
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /awsexamplebucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV2 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.1',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 891CE47D2EXAMPLE REST.GET.LOGGING_STATUS - "GET /awsexamplebucket1?logging HTTP/1.1" 200 - 242 - 11 - "-" "S3Console/0.4" - 9vKBE6vMhrNiWHZmb2L0mXOcqPGzQOI5XLnCtZNPxev+Hf+7tpT6sxDwDty4LHBUOZJG96N1234= SigV2 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.1',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be A1206F460EXAMPLE REST.GET.BUCKETPOLICY - "GET /awsexamplebucket1?policy HTTP/1.1" 404 NoSuchBucketPolicy 297 - 38 - "-" "S3Console/0.4" - BNaBsXZQQDbssi6xMBdBU2sLt+Yf5kZDmeBUP35sFoKa3sLLeMC78iwEIWxs99CRUrbS4n11234= SigV2 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.1',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:01:00 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 7B4A0FABBEXAMPLE REST.GET.VERSIONING - "GET /awsexamplebucket1?versioning HTTP/1.1" 200 - 113 - 33 - "-" "S3Console/0.4" - Ke1bUcazaN1jWuUlPJaxF64cQVpUEhoZKEG/hmy/gijN/I1DeWqDfFvnpybfEseEME/u7ME1234= SigV2 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.1',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:01:57 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DD6CC733AEXAMPLE REST.PUT.OBJECT s3-dg.pdf "PUT /awsexamplebucket1/s3-dg.pdf HTTP/1.1" 200 - - 4406583 41754 28 "-" "S3Console/0.4" - 10S62Zv81kBW7BB6SX4XJ48o6kpcl6LPwEoizZQQxJd5qDSCTLX0TgS37kYUBKQW3+bPdrg1234= SigV4 ECDHE-RSA-AES128-SHA AuthHeader awsexamplebucket1.s3.us-west-1.amazonaws.com TLSV1.1',  # noqa: E501
]
# The same guide as published now (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
# LogFormat.html): access point ARN and "ACL required" appended; the China regions' copy
# (https://docs.amazonaws.cn/en_us/AmazonS3/latest/userguide/LogFormat.md) also has the source
# region. Verbatim.
USER_GUIDE_NOW = [
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 891CE47D2EXAMPLE REST.GET.LOGGING_STATUS - "GET /amzn-s3-demo-bucket1?logging HTTP/1.1" 200 - 242 - 11 - "-" "S3Console/0.4" - 9vKBE6vMhrNiWHZmb2L0mXOcqPGzQOI5XLnCtZNPxev+Hf+7tpT6sxDwDty4LHBUOZJG96N1234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com TLSV1.2 - - us-east-1',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be amzn-s3-demo-bucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /amzn-s3-demo-bucket1?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader amzn-s3-demo-bucket1.s3.us-west-1.amazonaws.com.cn TLSV1.2 arn:aws-cn:s3:us-west-1:123456789012:accesspoint/example-AP Yes us-east-1',  # noqa: E501
]
# The guide's example of 2014 (https://docs.aws.amazon.com/AmazonS3/latest/dev/LogFormat.html,
# as archived): records that stop after the version id. Verbatim.
USER_GUIDE_2014 = [
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be mybucket [06/Feb/2014:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - "GET /mybucket?versioning HTTP/1.1" 200 - 113 - 7 - "-" "S3Console/0.4" -',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be mybucket [06/Feb/2014:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be A1206F460EXAMPLE REST.GET.BUCKETPOLICY - "GET /mybucket?policy HTTP/1.1" 404 NoSuchBucketPolicy 297 - 38 - "-" "S3Console/0.4" -',  # noqa: E501
    '79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be mybucket [06/Feb/2014:00:01:57 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DD6CC733AEXAMPLE REST.PUT.OBJECT s3-dg.pdf "PUT /mybucket/s3-dg.pdf HTTP/1.1" 200 - - 4406583 41754 28 "-" "S3Console/0.4" -',  # noqa: E501
]
# Real records with a raw quote inside a quoted field, as reported by people whose parsers they
# broke: a Request-URI (cocoonlife/s3-log-parse issue 1, 2019) and a User-Agent
# (aws-samples/siem-on-amazon-opensearch-service pull request 34, 2020; its owner and request
# id were masked there, and its masked IP "xxx.xxxx.xx.xxx" is replaced by 192.0.2.44 here).
# Verbatim otherwise.
RAW_QUOTE_IN_URI = 'f383580bf9c9bd19055832f1bf43164c3e6c444a758287727f8f40ab00d461bc testing-1234xxx [20/Jun/2019:03:51:36 +0000] 1.2.3.4 - 63DAF67A2BC0B6C3 REST.GET.OBJECT %2522 "GET /" HTTP/1.1" 403 AccessDenied 243 - 8 - "referer test" "curl/7.38.0" - uidORkMVUSKEFetTC9FJG1qrSdT9DlxA97GPF8m2IsJlDxHLkV5VGzmkuTb8pXIym7B/J5XZlGU= - ECDHE-RSA-AES128-GCM-SHA256 - testing-1234xxx.s3.amazonaws.com TLSv1.2'  # noqa: E501
RAW_QUOTE_IN_AGENT = 'BucketOwner email-contents.sansan.com [24/Dec/2020:20:00:00 +0000] 192.0.2.44 - xxxxxIDxxxx REST.GET.OBJECT aaa/fizzbuzz.txt "GET /some-path/fizzbuzz.txt HTTP/1.1" 200 - 49851 49851 23 22 "https://example,com/some/url" "Mozilla/5.0 (iPad; CPU OS 13_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0.1 Mobile/15E148 Safari/604.1"" - someIDstring - ECDHE-RSA-AES128-GCM-SHA256 - s3-ap-northeast-1.amazonaws.com TLSv1.2'  # noqa: E501

AT = datetime(2026, 12, 2, 13, 45, 6, tzinfo=UTC)
ID = "3f9a0c7d1e2b4a58"
SIGNED = (
    "GET /q3-share/reports/q3.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261202%2Feu-west-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date=20261202T134500Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host"
    f"&x-sharebatch-id={ID}&X-Amz-Signature=ab12 HTTP/1.1"
)


def line(**fields: object) -> str:
    """A record of a GET through one of our links, with ``fields`` changed."""
    values: dict[str, object] = {
        "bucket": "q3-share",
        "time": AT,
        "request_uri": SIGNED,
        "key": "reports/q3.pdf",
        "bytes_sent": 4096,
        "object_size": 4096,
    }
    values.update(fields)
    return log_line(**values)  # type: ignore[arg-type]


def test_the_user_guides_example_records_parse_field_by_field() -> None:
    """Each of the guide's five records gives its bucket, time, IP, operation and numbers."""
    records = [parse_line(text) for text in USER_GUIDE_2021]
    assert [r.operation for r in records] == [
        "REST.GET.VERSIONING",
        "REST.GET.LOGGING_STATUS",
        "REST.GET.BUCKETPOLICY",
        "REST.GET.VERSIONING",
        "REST.PUT.OBJECT",
    ]
    policy, put = records[2], records[4]
    assert policy == AccessRecord(
        bucket="awsexamplebucket1",
        time=datetime(2019, 2, 6, 0, 0, 38, tzinfo=UTC),
        remote_ip="192.0.2.3",
        requester="79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
        operation="REST.GET.BUCKETPOLICY",
        key=None,
        request_uri="GET /awsexamplebucket1?policy HTTP/1.1",
        status=404,
        error_code="NoSuchBucketPolicy",
        bytes_sent=297,
        object_size=None,
        user_agent="S3Console/0.4",
        link_id=None,
    )
    assert (put.key, put.status, put.bytes_sent, put.object_size) == ("s3-dg.pdf", 200, 0, 4406583)
    assert put.time == datetime(2019, 2, 6, 0, 1, 57, tzinfo=UTC)
    assert [r.bytes_sent for r in records] == [113, 242, 297, 113, 0]


def test_newer_trailing_fields_are_accepted_and_ignored() -> None:
    """The records of today's guide, with access point ARN, ACL required and source region,
    read the same as the older ones: trailing fields never change the fields before them."""
    records = [parse_line(text) for text in USER_GUIDE_NOW]
    assert {r.bucket for r in records} == {"amzn-s3-demo-bucket1"}
    assert [(r.status, r.bytes_sent, r.user_agent) for r in records] == [
        (200, 113, "S3Console/0.4"),
        (200, 242, "S3Console/0.4"),
        (200, 113, "S3Console/0.4"),
    ]
    future = USER_GUIDE_NOW[2] + " some-field-of-2030 42 -"
    assert parse_line(future) == records[2]


def test_old_records_without_the_trailing_fields_parse() -> None:
    """The 2014 records stop after the version id, and the oldest after the user agent."""
    records = [parse_line(text) for text in USER_GUIDE_2014]
    assert [(r.operation, r.status, r.error_code) for r in records] == [
        ("REST.GET.VERSIONING", 200, None),
        ("REST.GET.BUCKETPOLICY", 404, "NoSuchBucketPolicy"),
        ("REST.PUT.OBJECT", 200, None),
    ]
    oldest = USER_GUIDE_2014[2].removesuffix(" -")
    assert parse_line(oldest) == records[2]
    assert parse_line(line(trailing=False)) == parse_line(line())


def test_a_raw_quote_in_the_request_uri_stays_in_it() -> None:
    """S3 writes a client's quote unescaped; the Request-URI still ends where the status
    fields begin, and the referer and user agent after it are read right."""
    record = parse_line(RAW_QUOTE_IN_URI)
    assert record.request_uri == 'GET /" HTTP/1.1'
    assert (record.status, record.error_code, record.bytes_sent) == (403, "AccessDenied", 243)
    assert record.user_agent == "curl/7.38.0"
    assert record.key == "%2522"


def test_a_raw_quote_in_the_user_agent_stays_in_it() -> None:
    """A user agent ending in a stray quote keeps it; the fields around it are unchanged."""
    record = parse_line(RAW_QUOTE_IN_AGENT)
    assert record.user_agent is not None
    assert record.user_agent.endswith('Safari/604.1"')
    assert (record.status, record.bytes_sent, record.object_size) == (200, 49851, 49851)


def test_quotes_and_spaces_inside_our_request_uri_keep_the_link_id() -> None:
    """Quotes (raw, or written with a backslash by a tool) and raw spaces in the target leave
    the id and the status fields where they are; a backslash is taken as written."""
    for target in (
        'GET /q3-share/a "quoted" name.pdf?x-sharebatch-id=' + ID + " HTTP/1.1",
        'GET /q3-share/a \\"quoted\\" name.pdf?x-sharebatch-id=' + ID + " HTTP/1.1",
    ):
        record = parse_line(line(request_uri=target, referer='see "this"', user_agent='a "b" c'))
        assert (record.request_uri, record.link_id, record.status) == (target, ID, 200)
        assert record.user_agent == 'a "b" c'


def test_a_forged_status_inside_the_request_uri_is_refused_not_guessed() -> None:
    """A quote in the target followed by fake status fields could turn a refused request
    into a download: the line is ambiguous, and says so instead of picking one reading."""
    forged = f'GET /q3-share/k?x-sharebatch-id={ID}" 200 - 99999 99999 1 1 "x HTTP/1.1'
    text = line(request_uri=forged, status=403, error_code="AccessDenied", bytes_sent=243)
    with pytest.raises(ValueError, match="ambiguous"):
        parse_line(text)


def test_dash_means_empty_in_every_field_that_may_hold_it() -> None:
    """``-`` and ``"-"`` are empty: no Request-URI, no status, 0 bytes sent, no size, no
    requester, no key, no error, no user agent; the record still parses."""
    text = line(
        request_uri=None,
        key=None,
        status=None,
        bytes_sent=None,
        object_size=None,
        requester=None,
        user_agent=None,
        remote_ip="-",
    )
    record = parse_line(text)
    assert record == AccessRecord(
        "q3-share", AT, "-", None, "REST.GET.OBJECT", None, None, None, None, 0, None, None, None
    )
    quoted_dash = text.replace(" - 200 ", ' "-" 200 ')
    assert parse_line(quoted_dash).request_uri is None


def test_ipv6_remote_addresses_parse_and_a_non_address_is_named() -> None:
    """Dual-stack endpoints log IPv6 addresses; anything that is not an address is refused."""
    for address in ("2001:db8::8a2e:370:7334", "::ffff:192.0.2.128", "2001:DB8:0:0:0:0:0:1"):
        assert parse_line(line(remote_ip=address)).remote_ip == address
    for bad in ("999.1.2.3", "2001:db8::g", "1.2.3", "not-an-ip"):
        with pytest.raises(ValueError, match="remote_ip is not an IP address"):
            parse_line(line(remote_ip=bad))


def _is_address(text: str) -> bool:
    """What Python's ipaddress accepts, without zone indexes (S3 logs none)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda a: a.exploded),
        st.text("0123456789abcdefABCDEF:.", min_size=1, max_size=45),
    )
)
def test_remote_ip_is_checked_exactly_as_ipaddress_would(text: str) -> None:
    """The pattern that checks the address agrees with ``ipaddress`` on every address, in
    every spelling, and on near misses."""
    if _is_address(text):
        assert parse_line(line(remote_ip=text)).remote_ip == text
    else:
        with pytest.raises(ValueError, match="remote_ip is not an IP address"):
            parse_line(line(remote_ip=text))


@pytest.mark.parametrize(
    ("operation", "request_uri", "status", "error_code"),
    [
        ("REST.PUT.OBJECT", f"PUT /q3-share/in/x.csv?x-sharebatch-id={ID} HTTP/1.1", 200, None),
        (
            "REST.HEAD.OBJECT",
            f"HEAD /q3-share/reports/q3.pdf?x-sharebatch-id={ID} HTTP/1.1",
            200,
            None,
        ),
        ("REST.POST.UPLOAD", f"POST /q3-share/?x-sharebatch-id={ID} HTTP/1.1", 204, None),
        ("BATCH.DELETE.OBJECT", None, 204, None),
        ("WEBSITE.GET.OBJECT", "GET /index.html HTTP/1.1", 404, "NoSuchKey"),
        ("S3.TRANSITION_SIA.OBJECT", None, None, None),
        ("S3.EXPIRE.OBJECT", None, None, None),
        ("REST.COPY.OBJECT_GET", "PUT /q3-share/copy.pdf HTTP/1.1", 200, None),
    ],
)
def test_other_operations_parse(
    operation: str, request_uri: str | None, status: int | None, error_code: str | None
) -> None:
    """Uploads, HEADs, batch deletes, website reads, lifecycle actions and copies parse, each
    with its own operation, status and (where the URI has one) link id."""
    record = parse_line(
        line(operation=operation, request_uri=request_uri, status=status, error_code=error_code)
    )
    assert (record.operation, record.status, record.error_code) == (operation, status, error_code)
    assert record.link_id == (ID if request_uri and "sharebatch" in request_uri else None)


@pytest.mark.parametrize(
    ("request_uri", "expected"),
    [
        (SIGNED, ID),
        (f"GET /b/k?x-sharebatch-id={ID} HTTP/1.1", ID),
        (f"GET /b/k?x-sharebatch-id={ID}", ID),
        ("GET /b/k?x-sharebatch-id=%33f9a0c7d1e2b4a58 HTTP/1.1", ID),
        (f"GET /b/k?x%2Dsharebatch%2did={ID}&X-Amz-Signature=1 HTTP/1.1", ID),
        (f"GET /b/k?%78%2D%73%68%61%72%65%62%61%74%63%68%2D%69%64={ID} HTTP/1.1", ID),
        (f"GET /b/k?a=1&x-sharebatch-id={ID}&x-sharebatch-id=ffffffffffffffff HTTP/1.1", ID),
        ("GET /b/k?x-sharebatch-id= HTTP/1.1", ""),
        ("GET /b/k?x-sharebatch-id=forged%00value HTTP/1.1", "forged\x00value"),
        (f"GET /b/k?x-sharebatch-idx={ID} HTTP/1.1", None),
        (f"GET /b/k?my-x-sharebatch-id={ID} HTTP/1.1", None),
        (f"GET /b/x-sharebatch-id={ID} HTTP/1.1", None),
        ("GET /b/k?X-Amz-Credential=A%2F1 HTTP/1.1", None),
        ("GET /b/k HTTP/1.1", None),
        (None, None),
    ],
)
def test_the_link_id_is_read_from_the_query_only(
    request_uri: str | None, expected: str | None
) -> None:
    """The id is the value of the query parameter named exactly ``x-sharebatch-id``, decoded
    (name or value percent-encoded alike), the first one when repeated; never from the path."""
    assert link_id_of(request_uri) == expected
    if request_uri is not None:
        assert parse_line(line(request_uri=request_uri)).link_id == expected


def test_times_are_utc_and_a_bad_time_is_named() -> None:
    """The bracketed time becomes an aware UTC datetime, converting another offset; a time
    that is not ``[dd/Mon/yyyy:hh:mm:ss +hhmm]`` is a problem that names the field."""
    text = line()
    assert parse_line(text).time == AT
    shifted = text.replace("[02/Dec/2026:13:45:06 +0000]", "[02/Dec/2026:15:45:06 +0200]")
    assert parse_line(shifted).time == AT
    for bad in ("[02/Dex/2026:13:45:06 +0000]", "[31/Feb/2026:13:45:06 +0000]", "[2026-12-02]"):
        with pytest.raises(ValueError, match="time is not"):
            parse_line(text.replace("[02/Dec/2026:13:45:06 +0000]", bad))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ((" 200 - 4096 ", " 2OO - 4096 "), "http_status is not a number: '2OO'"),
        ((" 200 - 4096 ", " 200 - 4O96 "), "bytes_sent is not a number: '4O96'"),
        ((" 200 - 4096 4096 ", " 200 - 4096 \u0664\u0660 "), "object_size is not a number"),
        ((" 200 - 4096 4096 7 ", " 200 - 4096 4096 x "), "total_time is not a number"),
        ((' "-" "curl', ' nope "curl'), "referer is neither quoted nor '-'"),
        (("[02/Dec", "02/Dec"), "field 3 (time) does not start with '['"),
    ],
)
def test_a_broken_field_is_named(change: tuple[str, str], problem: str) -> None:
    """A field that breaks the format gives a ValueError that names that field."""
    text = line().replace(*change)
    assert text != line()
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_line(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '{"Records": [{"eventVersion": "1.08", "eventSource": "s3.amazonaws.com"}]}',
        "2026-12-02T13:45:06Z GET /q3-share/x 200",
        line()[:120],
        line().split(' "GET')[0],
        "\x00\x01\x02\xff",
    ],
)
def test_what_is_not_a_record_is_a_value_error(text: str) -> None:
    """Empty lines, JSON, other logs, truncated records and binary noise raise ValueError."""
    with pytest.raises(ValueError, match=r".") as caught:
        parse_line(text)
    assert str(caught.value)


def test_line_endings_are_not_part_of_the_record() -> None:
    """A record read with its newline, or with CRLF from a file copied through Windows,
    parses the same as without."""
    text = line()
    assert parse_line(text + "\n") == parse_line(text + "\r\n") == parse_line(text)
    assert parse_line(line(trailing=False) + "\r\n") == parse_line(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_a_record_or_a_value_error(text: str) -> None:
    """Hostile input never escapes as another exception: arbitrary text either parses or
    raises ValueError with a message."""
    problem = None
    try:
        parse_line(text)
    except ValueError as exc:
        problem = str(exc)
    assert problem is None or problem


FIELD_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(
    agent=FIELD_TEXT,
    referer=FIELD_TEXT,
    path=FIELD_TEXT.filter(lambda p: '" ' not in p and "?" not in p),
    status=st.integers(100, 599),
    sent=st.integers(0, 10**12),
)
def test_hostile_free_text_fields_never_move_the_numbers(
    agent: str, referer: str, path: str, status: int, sent: int
) -> None:
    """Whatever a client puts in its user agent, referer or request target, the status and
    bytes read back are the ones S3 wrote, and the link id is ours, or the line is refused."""
    target = f"GET /q3-share/{path}?x-sharebatch-id={ID} HTTP/1.1"
    text = line(
        request_uri=target, user_agent=agent, referer=referer, status=status, bytes_sent=sent
    )
    try:
        record = parse_line(text)
    except ValueError:
        return
    assert (record.status, record.bytes_sent, record.request_uri) == (status, sent, target)
    assert record.link_id == ID


def test_parse_lines_numbers_from_the_first_and_skips_empty_lines() -> None:
    """A batch of lines gives records in order and a bad line at its own number, counting
    from ``first``; an empty line holds nothing and gives nothing."""
    text = line()
    found = parse_lines("logs/a", 10, [text, "", "not a record", "  ", text])
    assert found == [parse_line(text), BadLine("logs/a", 12, found[1].problem), parse_line(text)]
    assert isinstance(found[1], BadLine)
    assert found[1].problem.startswith("not an S3 server access log record")


def bare(text: str) -> str:
    """``text`` with its empty Referer and its User-Agent written as bare ``-``, as S3 may."""
    assert ' "-" "curl/8.5.0" ' in text
    return text.replace(' "-" "curl/8.5.0" ', " - - ")


def test_a_forged_status_behind_a_bare_referer_and_user_agent_is_refused() -> None:
    """A refused request whose target closes its quote and forges status fields, its real
    Referer and User-Agent bare ``-``, is ambiguous on the fast path as on the slow one: a
    bad line, never a 200 download of 999999 bytes."""
    forged = f'GET /q3-share/k?x-sharebatch-id={ID}" 200 - 999999 999999 1 1 "x" "y HTTP/1.1'
    text = bare(line(request_uri=forged, status=403, error_code="AccessDenied", bytes_sent=243))
    (item,) = parse_lines("logs/a", 7, [text])
    assert isinstance(item, BadLine)
    assert (item.file, item.line) == ("logs/a", 7)
    assert "ambiguous" in item.problem
    honest = bare(line(request_uri=f"GET /q3-share/k?x-sharebatch-id={ID} HTTP/1.1"))
    assert (parse_line(honest).status, parse_line(honest).user_agent) == (200, None)


NUMBER_LIKE = st.sampled_from(["200", "-", "999999", "x"])
# What a hostile target holds after a quote: six fields that may read as status fields, then
# what may read as a Referer and the start of a User-Agent.
FORGED = st.builds(
    lambda fields, referer, agent: " ".join([*fields, referer, agent]),
    st.tuples(
        NUMBER_LIKE,
        st.sampled_from(["-", "AccessDenied", '"']),
        NUMBER_LIKE,
        NUMBER_LIKE,
        NUMBER_LIKE,
        NUMBER_LIKE,
    ),
    st.sampled_from(['"x"', "-", '"', "x"]),
    st.sampled_from(['"y', "-", '"y"', "y"]),
)
TRAILING = st.lists(st.sampled_from(["-", "1", '"', "SigV4", '"z"']), max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(
    forged=FORGED,
    referer=st.sampled_from(["-", '"-"', '"r"', '"r" 1']),
    agent=st.sampled_from(["-", '"-"', '"ua"', '"u" 1 - 2 3 4 5 "v"']),
    after=TRAILING,
    error=st.sampled_from(["AccessDenied", "-", 'x"', '"']),
    sent=st.sampled_from(["243", "-"]),
)
def test_the_fast_path_agrees_with_the_slow_path_on_hostile_quotes(
    forged: str, referer: str, agent: str, after: str, error: str, sent: str
) -> None:
    """Whatever status-like fields and quotes a target, error code, Referer, User-Agent and
    the trailing fields hold, the one-pattern fast path gives what the field-by-field slow
    path gives: the same record, or a bad line where the slow path refuses the line."""
    target = f'GET /q3-share/k?x-sharebatch-id={ID}" {forged} HTTP/1.1'
    text = line(request_uri=target, status=403, error_code="AccessDenied", bytes_sent=243)
    text = text.replace(" 403 AccessDenied 243 ", f" 403 {error} {sent} ")
    text = text.replace(' "-" "curl/8.5.0" - ', f" {referer} {agent} {after} - ")
    try:
        slow: AccessRecord | str = _parse_slowly(text)
    except ValueError as exc:
        slow = str(exc)
    (fast,) = parse_lines("f", 1, [text])
    assert fast == (BadLine("f", 1, slow) if isinstance(slow, str) else slow)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("02/Dec/2026", "31/Feb/2026"), "time is not"),
        (("+0000]", "+9900]"), "time is not"),
        (("02/Dec/2026:13:45:06 +0000", "01/Jan/0001:00:00:00 +0100"), "time is not"),
        (("02/Dec/2026:13:45:06 +0000", "31/Dec/9999:23:59:59 -0100"), "time is not"),
        ((" 200 - 4096 ", " " + "2" * 5000 + " - 4096 "), "http_status is not a number S3"),
        ((" 200 - 4096 ", " 200 - " + "9" * 5000 + " "), "bytes_sent is not a number S3"),
        ((" 4096 4096 7 ", " 4096 " + "9" * 21 + " 7 "), "object_size is not a number S3"),
    ],
)
def test_a_time_or_number_that_does_not_convert_is_a_bad_line(
    change: tuple[str, str], problem: str
) -> None:
    """A time that does not exist, an offset no timezone has, a year that leaves datetime's
    range in UTC, a number longer than any S3 writes (past int's digit limit too): each is
    one bad line naming the field, the lines around it still records, and ``parse_line``
    raises ValueError, never another exception."""
    text = line()
    broken = text.replace(*change)
    assert broken != text
    found = parse_lines("logs/a", 1, [text, broken, text])
    assert found[0] == found[2] == parse_line(text)
    assert isinstance(found[1], BadLine)
    assert (found[1].line, found[1].problem.startswith(problem)) == (2, True), found[1]
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_line(broken)
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_line(bare(broken))


@pytest.mark.parametrize("flood", QUOTE_FLOODS, ids=range(len(QUOTE_FLOODS)))
def test_a_line_full_of_quotes_is_read_whole(flood: str) -> None:
    """A 64 KiB line of quotes after the status fields (where the Referer and User-Agent
    are split) is read or refused as one line, the same by the fast and the slow path. That
    its time grows with the line and not with its square (it once took 40 s of CPU) is
    measured side by side in ``make bench`` (bench/bench_floods.py), not timed here."""
    text = line().split(' "-" "curl')[0] + " " + flood
    assert len(text) > 60_000
    found = parse_lines("f", 1, [text, line()])
    assert len(found) == 2
    assert found[1] == parse_line(line())
    if isinstance(found[0], BadLine):
        with pytest.raises(ValueError, match=re.escape(found[0].problem)):
            parse_line(text)
    else:
        assert found[0] == parse_line(text)
