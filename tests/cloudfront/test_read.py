"""Reading CloudFront links back: everything sign.py makes reads back to what made it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sharebatch.cloudfront.policy import canned_policy
from sharebatch.cloudfront.read import (
    NotCloudFrontUrl,
    is_cloudfront_url,
    read_cloudfront_url,
    verify_signature,
)
from sharebatch.cloudfront.sign import CloudFrontSigner, base_url, cf_b64
from sharebatch.models import CloudFrontHash
from tests.support.cfkeys import KeyPair, ec_pair, pool, rsa_pair

AT = datetime(2028, 6, 30, 12, tzinfo=UTC)
SIGV4 = (
    "https://bucket.s3.eu-west-1.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20260101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "ab" * 32
)

signers = st.sampled_from(
    [
        (kind, i, h)
        for kind in ("rsa", "ecdsa")
        for i in range(3)
        for h in ("sha1", "sha256")
        if not (kind == "ecdsa" and h == "sha1")
    ]
)


networks = st.builds(
    lambda address, length: (
        ipaddress.ip_network(f"{address}/{length}", strict=False).with_prefixlen
    ),
    st.ip_addresses(v=4),
    st.integers(0, 32),
)


def _signer(pair: KeyPair, hash: CloudFrontHash, domain: str) -> CloudFrontSigner:
    return CloudFrontSigner(
        domain=domain, key_pair_id=pair.key_pair_id, key=pair.private, hash=hash
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=signers,
    domain=st.sampled_from(["d111111abcdef8.cloudfront.net", "http://127.0.0.3:8080"]),
    key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    expires=st.datetimes(
        min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    start=st.one_of(st.none(), st.timedeltas(timedelta(seconds=1), timedelta(days=3650))),
    ip=st.one_of(st.none(), networks),
    query=st.lists(
        st.tuples(
            st.sampled_from(["response-content-disposition", "x-sharebatch-id"]),
            st.text(st.characters(codec="utf-8"), max_size=20),
        ),
        max_size=2,
        unique_by=lambda kv: kv[0],
    ),
)
def test_every_link_we_sign_reads_back(
    which: tuple[str, int, CloudFrontHash],
    domain: str,
    key: str,
    expires: datetime,
    start: timedelta | None,
    ip: str | None,
    query: list[tuple[str, str]],
) -> None:
    """Resource, expiry (whole seconds), start, IP range, key pair id, hash and kind read back
    from any link of any key kind, its signature verifies with the public key, and signing
    its object key, query and conditions again gives the same policy (what renew does)."""
    kind, index, hash = which
    pair = pool("rsa" if kind == "rsa" else "ecdsa")[index]
    signer = _signer(pair, hash, domain)
    not_before = None if start is None else expires - start
    url = signer.sign(key, expires, query=query, not_before=not_before, source_ip=ip)
    assert is_cloudfront_url(url)
    facts = read_cloudfront_url(url)
    assert facts.resource == base_url(signer.origin, key, query)
    assert (facts.object_key, facts.query) == (key, tuple(query))
    assert facts.expires == expires.replace(microsecond=0)
    assert facts.not_before == (None if not_before is None else not_before.replace(microsecond=0))
    assert facts.source_ip == ip
    assert (facts.key_pair_id, facts.hash) == (pair.key_pair_id, hash)
    assert facts.canned == (not_before is None and ip is None)
    assert verify_signature(facts, pair.public)
    again = signer.sign(
        facts.object_key,
        facts.expires,
        query=facts.query,
        not_before=facts.not_before,
        source_ip=facts.source_ip,
    )
    assert read_cloudfront_url(again).policy == facts.policy
    assert not verify_signature(facts, pool("rsa")[(index + 1) % 3].public)


def test_canned_links_rebuild_the_signed_policy() -> None:
    """A canned link's policy is rebuilt from its base URL and Expires, as CloudFront does."""
    signer = _signer(rsa_pair(), "sha256", "d111111abcdef8.cloudfront.net")
    facts = read_cloudfront_url(signer.sign("a b", AT, query=[("x-sharebatch-id", "L-1")]))
    resource = "https://d111111abcdef8.cloudfront.net/a%20b?x-sharebatch-id=L-1"
    assert facts.policy == canned_policy(resource, int(AT.timestamp()))
    assert facts.kind == "canned"


def test_repr_of_facts_hides_the_signature() -> None:
    """The signature is a credential: a repr (a log line, a traceback) never shows it."""
    url = _signer(ec_pair(), "sha256", "d111111abcdef8.cloudfront.net").sign("k", AT)
    facts = read_cloudfront_url(url)
    signature = url.split("Signature=")[1].split("&")[0]
    assert signature not in repr(facts)
    assert "signature" not in repr(facts)


@pytest.mark.parametrize(
    "url",
    [
        SIGV4,
        "https://d111111abcdef8.cloudfront.net/k",
        "ftp://x/k?Expires=1&Signature=a&Key-Pair-Id=K",
        "https://x/k?Expires=1&Key-Pair-Id=K",
        "https://x/k?Signature=a&Key-Pair-Id=K",
    ],
)
def test_other_urls_are_not_cloudfront_links(url: str) -> None:
    """SigV4 links, plain URLs and URLs missing a signing parameter are not CloudFront's."""
    assert not is_cloudfront_url(url)


def _good() -> str:
    return _signer(rsa_pair(), "sha256", "d111111abcdef8.cloudfront.net").sign("k", AT)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda u: u + "&Policy=" + cf_b64(b"{}"), "exactly one of Expires and Policy"),
        (lambda u: u + "&Signature=AAAA", "more than once"),
        (lambda u: u.replace("SHA256", "MD5"), "Hash-Algorithm"),
        (lambda u: u.replace("Signature=", "Signature=+"), "base64"),
        (lambda u: u.replace("Expires=", "Expires=x"), "whole seconds"),
        (lambda u: u.replace("Key-Pair-Id=", "Key-Pair-Id=%20"), "key pair id"),
        (lambda u: u + "#frag", "fragment"),
        (
            lambda u: u.split("Expires=")[0] + "Policy=" + cf_b64(b"[]") + "&" + u.split("&", 1)[1],
            "Policy cannot be read",
        ),
    ],
    ids=["both", "twice", "hash", "b64", "expires", "kpid", "fragment", "policy"],
)
def test_malformed_links_are_refused_without_quoting_them(
    change: Callable[[str], str], message: str
) -> None:
    """Each malformation is named; the message never holds the URL or its signature."""
    url = change(_good())
    with pytest.raises(NotCloudFrontUrl, match=message) as caught:
        read_cloudfront_url(url)
    signature = _good().split("Signature=")[1].split("&")[0]
    assert signature[:12] not in str(caught.value)
    assert "https://" not in str(caught.value)
