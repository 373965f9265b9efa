"""Policy statements: the exact bytes CloudFront specifies, and reading them back strictly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebatch.cloudfront.policy import (
    PolicyFacts,
    canned_policy,
    custom_policy,
    parse_policy,
    source_ip_cidr,
)

RESOURCE = "https://d111111abcdef8.cloudfront.net/image.jpg?color=red&size=medium"


def test_canned_policy_is_the_documented_bytes() -> None:
    """No whitespace, Resource before Condition, the epoch a JSON number: CloudFront rebuilds
    exactly these bytes from the URL, so any other spelling is a refused link."""
    assert canned_policy(RESOURCE, 1767290400) == (
        b'{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/image.jpg?color=red'
        b'&size=medium","Condition":{"DateLessThan":{"AWS:EpochTime":1767290400}}}]}'
    )


def test_custom_policy_orders_its_conditions_like_botocore() -> None:
    """DateLessThan, IpAddress, DateGreaterThan: botocore's order, so the bytes match its."""
    policy = custom_policy(RESOURCE, 1767290400, not_before=1767200000, source_ip="192.0.2.0/24")
    assert policy == (
        b'{"Statement":[{"Resource":"' + RESOURCE.encode() + b'","Condition":{'
        b'"DateLessThan":{"AWS:EpochTime":1767290400},'
        b'"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"},'
        b'"DateGreaterThan":{"AWS:EpochTime":1767200000}}}]}'
    )


def test_custom_policy_without_optional_conditions_leaves_them_out() -> None:
    """Only the conditions given appear; a start alone gives no IpAddress member."""
    policy = custom_policy(RESOURCE, 1767290400, not_before=1767200000, source_ip=None)
    assert b"IpAddress" not in policy
    assert b'"DateGreaterThan":{"AWS:EpochTime":1767200000}' in policy


@pytest.mark.parametrize(
    ("given_ip", "written"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_a_source_ip_is_one_ipv4_cidr(given_ip: str, written: str) -> None:
    """A bare address means /32 (as botocore writes it); ranges stay as they are."""
    assert source_ip_cidr(given_ip) == written


@pytest.mark.parametrize(
    "bad", ["2001:db8::/32", "::1", "203.0.113.7/24", "10.0.0.0/8,192.0.2.0/24", "any", ""]
)
def test_source_ips_cloudfront_cannot_match_are_refused(bad: str) -> None:
    """IPv6 (CloudFront matches IPv4 only), host bits set, lists and words are refused."""
    with pytest.raises(ValueError, match=r"IPv|CIDR"):
        custom_policy(RESOURCE, 1767290400, not_before=None, source_ip=bad)


@pytest.mark.parametrize(
    "resource",
    [
        "https://x.example/a b",
        'https://x.example/a"b',
        "https://x.example/a\\b",
        "https://x.example/ü",
        "https://x.example/a\nb",
        "",
    ],
)
def test_resources_that_would_need_json_escapes_are_refused(resource: str) -> None:
    """A Resource must already be a percent-encoded URL: nothing JSON would escape."""
    with pytest.raises(ValueError, match="printable ASCII"):
        canned_policy(resource, 1767290400)


@pytest.mark.parametrize("expires", [0, -5, 2**32, 1.5, True, 1767290400000])
def test_expiry_must_be_whole_seconds(expires: object) -> None:
    """Zero, negative, fractional, boolean and millisecond epochs are refused."""
    with pytest.raises(ValueError, match="whole seconds"):
        canned_policy(RESOURCE, expires)  # type: ignore[arg-type]


def test_a_start_after_the_expiry_is_refused() -> None:
    """A link whose window is empty is a mistake, not a policy."""
    with pytest.raises(ValueError, match="before expires"):
        custom_policy(RESOURCE, 1767290400, not_before=1767290400, source_ip=None)


epochs = st.integers(1, 2**32 - 2)
resources = st.from_regex(r"https://[a-z0-9.]{1,20}/[A-Za-z0-9%/._~?&=+-]{0,40}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(
    resource=resources,
    expires=epochs,
    start=st.one_of(st.none(), st.integers(1, 2**31)),
    ip=st.one_of(st.none(), st.ip_addresses(v=4).map(str)),
)
def test_parse_policy_reads_back_what_we_write(
    resource: str, expires: int, start: int | None, ip: str | None
) -> None:
    """Every policy written (canned or custom) reads back to the facts that made it."""
    if start is not None and start >= expires:
        start = None
    if start is None and ip is None:
        raw = canned_policy(resource, expires)
    else:
        raw = custom_policy(resource, expires, not_before=start, source_ip=ip)
    want_ip = None if ip is None else f"{ip}/32"
    assert parse_policy(raw) == PolicyFacts(resource, expires, start, want_ip)


HEAD = b'{"Statement":[{"Resource":"https://a.b/c","Condition":{"DateLessThan":'


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"Statement":[]}', "exactly one statement"),
        (b'{"Statement":[{"Resource":"https://a.b/c","Condition":{}}]}', "no DateLessThan"),
        (HEAD + b'{"AWS:EpochTime":"1767290400"}}}]}', "whole seconds"),
        (HEAD + b'{"AWS:EpochTime":1767290400},"StringLike":{"x":"y"}}}]}', "other than"),
        (HEAD + b'{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":["1.2.3.4/32"]}}}]}', "one IPv4"),
        (HEAD + b'{"AWS:EpochTime":1}}},{"Resource":"*","Condition":{}}]}', "exactly one"),
        (HEAD + b'{"AWS:EpochTime":1767290400}}}],"Extra":1}', "Statement only"),
        (b'{"Statement":[{"Resource":"a b","Condition":{}}]}', "Resource"),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "no-statement",
        "no-date",
        "string-epoch",
        "unknown-condition",
        "ip-list",
        "two-statements",
        "extra-member",
        "bad-resource",
    ],
)
def test_parse_policy_refuses_what_cloudfront_would_not_read(raw: bytes, message: str) -> None:
    """Strict reading: one statement, DateLessThan required, only the three conditions; the
    message names the problem and never quotes the policy's resource."""
    with pytest.raises(ValueError, match=message) as caught:
        parse_policy(raw)
    assert "https://a.b/c" not in str(caught.value)
