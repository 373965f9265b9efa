"""The test edge checks signed URLs as CloudFront does, and real downloads go through it.

Every link is signed by sharebatch's CloudFrontSigner for the edge's origin; the edge's clock
is fixed at ``NOW`` (2033), so no test depends on today's date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from sharebatch.cloudfront.read import read_cloudfront_url
from sharebatch.cloudfront.sign import CloudFrontSigner, cf_b64, cf_b64decode
from sharebatch.models import CloudFrontHash
from tests.support.cfkeys import KeyPair, ec_pair, public_keys, rsa_pair
from tests.support.cloudfront_edge import Edge, EdgeFactory, fetch
from tests.support.s3 import S3

NOW = 2_000_000_000
BUCKET = "cf-origin"
ODD_KEY = "reports/Q3 final+v2 ü #1 100%.pdf"
BODY = bytes(range(256)) * 40
FILES = {ODD_KEY: BODY, "plain.txt": b"plain text\n", "other.txt": b"another object\n"}


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@pytest.fixture
def edge(s3: S3, cloudfront_edges: EdgeFactory) -> Edge:
    """An edge trusting the first RSA and ECDSA test keys, clock at NOW, in front of FILES."""
    s3.bucket(BUCKET, FILES)
    return cloudfront_edges(BUCKET, public_keys(rsa_pair(), ec_pair()), clock=lambda: NOW)


def signer(edge: Edge, pair: KeyPair, hash: CloudFrontHash = "sha256") -> CloudFrontSigner:
    return CloudFrontSigner(
        domain=edge.origin, key_pair_id=pair.key_pair_id, key=pair.private, hash=hash
    )


KINDS = [(rsa_pair, "sha1"), (rsa_pair, "sha256"), (ec_pair, "sha256")]


@pytest.mark.parametrize(("pair", "hash"), KINDS, ids=["rsa-sha1", "rsa-sha256", "ecdsa"])
@pytest.mark.parametrize("custom", [False, True], ids=["canned", "custom"])
def test_a_signed_link_downloads_the_object(
    edge: Edge, pair: Callable[[], KeyPair], hash: CloudFrontHash, custom: bool
) -> None:
    """A real download through a signed URL (every key kind, canned and custom) returns the
    object's bytes, for a key with spaces, '+', '#', '%' and non-ASCII characters."""
    url = signer(edge, pair(), hash).sign(
        ODD_KEY, at(NOW + 3600), source_ip="127.0.0.0/8" if custom else None
    )
    answer = fetch(url)
    assert (answer.status, answer.body) == (200, BODY)
    assert edge.reasons == ["served"]


def test_range_and_download_name_pass_through(edge: Edge) -> None:
    """A Range request gets 206 and those bytes; response-content-disposition comes back as
    the Content-Disposition header (the name is part of the signed URL)."""
    name = 'attachment; filename="Q3 report.pdf"'
    url = signer(edge, rsa_pair()).sign(
        ODD_KEY, at(NOW + 60), query=[("response-content-disposition", name)]
    )
    answer = fetch(url, headers={"Range": "bytes=10-19"})
    assert (answer.status, answer.body) == (206, BODY[10:20])
    assert answer.headers["content-range"] == f"bytes 10-19/{len(BODY)}"
    assert answer.headers["content-disposition"] == name


def _refused(edge: Edge, url: str, reason: str, *, source: str = "127.0.0.1") -> None:
    answer = fetch(url, source=source)
    assert answer.status == 403
    assert answer.headers["x-edge-reason"] == reason
    assert edge.reasons[-1] == reason
    assert b"<Error><Code>" in answer.body


def test_a_tampered_policy_is_refused(edge: Edge) -> None:
    """A custom policy edited in the URL (a later expiry) no longer matches its signature."""
    url = signer(edge, rsa_pair()).sign("plain.txt", at(NOW + 60), not_before=at(NOW - 60))
    encoded = url.split("Policy=")[1].split("&")[0]
    policy = cf_b64decode(encoded)
    longer = policy.replace(str(NOW + 60).encode(), str(NOW + 86400 * 365).encode())
    assert longer != policy
    _refused(edge, url.replace(encoded, cf_b64(longer)), "signature")
    assert fetch(url).status == 200


@pytest.mark.parametrize("pair", [rsa_pair, ec_pair], ids=["rsa", "ecdsa"])
def test_a_tampered_signature_is_refused(edge: Edge, pair: Callable[[], KeyPair]) -> None:
    """One changed character of the signature and the link is refused."""
    url = signer(edge, pair()).sign("plain.txt", at(NOW + 60))
    signature = url.split("Signature=")[1].split("&")[0]
    flipped = ("B" if signature[5] == "A" else "A").join((signature[:5], signature[6:]))
    _refused(edge, url.replace(signature, flipped), "signature")


def test_an_expired_link_is_refused_from_its_expiry_on(edge: Edge) -> None:
    """DateLessThan: served one second before, refused at the second itself and after."""
    url = signer(edge, rsa_pair()).sign("plain.txt", at(NOW + 60))
    edge.clock = lambda: NOW + 59
    assert fetch(url).status == 200
    edge.clock = lambda: NOW + 60
    _refused(edge, url, "expired")
    edge.clock = lambda: NOW + 86400 * 400
    _refused(edge, url, "expired")


def test_a_link_used_before_not_before_is_refused(edge: Edge) -> None:
    """DateGreaterThan: refused before the start, served from it on."""
    url = signer(edge, ec_pair()).sign("plain.txt", at(NOW + 3600), not_before=at(NOW + 600))
    edge.clock = lambda: NOW + 599
    _refused(edge, url, "not yet valid")
    edge.clock = lambda: NOW + 600
    assert fetch(url).body == FILES["plain.txt"]


def test_the_ip_rule_uses_the_connecting_address(edge: Edge) -> None:
    """A link for 127.0.0.1/32 is refused from 127.0.0.2 and served from 127.0.0.1."""
    url = signer(edge, rsa_pair()).sign("plain.txt", at(NOW + 60), source_ip="127.0.0.1/32")
    _refused(edge, url, "source ip", source="127.0.0.2")
    assert edge.log[-1][0] == "127.0.0.2"
    answer = fetch(url, source="127.0.0.1")
    assert (answer.status, answer.body) == (200, FILES["plain.txt"])


def test_an_edge_on_another_loopback_address_checks_the_same(
    s3: S3, cloudfront_edges: EdgeFactory
) -> None:
    """The edge binds 127.0.0.2 too; a link signed for that origin is served from there."""
    s3.bucket(BUCKET, FILES)
    edge = cloudfront_edges(BUCKET, public_keys(rsa_pair()), host="127.0.0.2", clock=lambda: NOW)
    url = signer(edge, rsa_pair()).sign("other.txt", at(NOW + 60), source_ip="127.0.0.2/32")
    assert url.startswith("http://127.0.0.2:")
    assert fetch(url, source="127.0.0.2").body == FILES["other.txt"]
    _refused(edge, url, "source ip", source="127.0.0.1")


@pytest.mark.parametrize("custom", [False, True], ids=["canned", "custom"])
def test_a_changed_path_or_download_name_is_refused(edge: Edge, custom: bool) -> None:
    """Another object's key, or another download name, in a signed URL: canned links fail
    their rebuilt policy's signature, custom links their policy's Resource."""
    name = quote('attachment; filename="a.txt"', safe="~")
    url = signer(edge, rsa_pair()).sign(
        "plain.txt",
        at(NOW + 60),
        query=[("response-content-disposition", 'attachment; filename="a.txt"')],
        not_before=at(NOW - 60) if custom else None,
    )
    assert fetch(url).status == 200
    reason = "resource" if custom else "signature"
    _refused(edge, url.replace("/plain.txt?", "/other.txt?"), reason)
    _refused(edge, url.replace(name, name.replace("a.txt", "b.exe")), reason)
    dropped = url.replace(f"response-content-disposition={name}&", "")
    _refused(edge, dropped, reason)


def test_unknown_keys_and_missing_parameters_are_refused(edge: Edge) -> None:
    """A key pair id outside the key group, a URL without Key-Pair-Id, and a malformed
    Hash-Algorithm get CloudFront's refusals."""
    stranger = rsa_pair(2)
    url = signer(edge, stranger).sign("plain.txt", at(NOW + 60))
    _refused(edge, url, "unknown key pair id")
    good = signer(edge, rsa_pair()).sign("plain.txt", at(NOW + 60))
    without = good.replace(f"&Key-Pair-Id={rsa_pair().key_pair_id}", "")
    answer = fetch(without)
    assert answer.status == 403
    assert b"<Code>MissingKey</Code>" in answer.body
    _refused(
        edge,
        good.replace("SHA256", "SHA512"),
        "malformed: Hash-Algorithm must be SHA256 when present",
    )


def test_sha1_signature_presented_as_sha256_is_refused(edge: Edge) -> None:
    """The hash is part of what is checked: a SHA-1 signature with Hash-Algorithm=SHA256
    added does not verify."""
    url = signer(edge, rsa_pair(), "sha1").sign("plain.txt", at(NOW + 60))
    assert read_cloudfront_url(url).hash == "sha1"
    _refused(edge, url + "&Hash-Algorithm=SHA256", "signature")


def test_a_valid_link_to_a_missing_object_gets_the_origins_404(edge: Edge) -> None:
    """The checks pass, S3 has no such key: the edge passes S3's 404 on, as CloudFront does
    (what `verify` reports as a missing object, not a refused link)."""
    url = signer(edge, ec_pair()).sign("gone.pdf", at(NOW + 60))
    answer = fetch(url)
    assert answer.status == 404
    assert b"NoSuchKey" in answer.body
    assert edge.reasons == ["served"]
