"""Signed URLs: byte-identical to botocore's CloudFrontSigner for SHA-1 RSA, and for every kind
(RSA SHA-1, RSA SHA-256, ECDSA P-256) a signature that the public key verifies over the exact
policy bytes, with ``cryptography`` and with the ``openssl`` command line."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import yarl
from botocore.signers import CloudFrontSigner as BotocoreSigner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sharebatch.cloudfront.policy import canned_policy, custom_policy
from sharebatch.cloudfront.sign import (
    CloudFrontSigner,
    base_url,
    cf_b64,
    cf_b64decode,
    domain_origin,
    encode_key,
    sign_policy,
)
from sharebatch.models import CloudFrontHash
from tests.support.cfkeys import KeyPair, ec_pair, pool, rsa_pair

DOMAIN = "d111111abcdef8.cloudfront.net"
AT = datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC)
START = datetime(2027, 1, 1, tzinfo=UTC)
ODD_KEYS = [
    "reports/Q3 final+v2.pdf",
    "a?b#c%d&e=f",
    "ünïcødé/東京/😀.txt",
    "100% sure/+plus+/~tilde~",
    "spaces  and\ttabs",
    "/leading/slash",
]


def botocore_signer(pair: KeyPair) -> BotocoreSigner:
    """botocore's signer with the RSA SHA-1 function its docstring asks for."""
    private = pair.private
    assert not isinstance(private, ec.EllipticCurvePrivateKey)

    def rsa_signer(message: bytes) -> bytes:
        return private.sign(message, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303

    return BotocoreSigner(pair.key_pair_id, rsa_signer)


def ours(pair: KeyPair, hash: CloudFrontHash = "sha1", domain: str = DOMAIN) -> CloudFrontSigner:
    return CloudFrontSigner(
        domain=domain, key_pair_id=pair.key_pair_id, key=pair.private, hash=hash
    )


@pytest.mark.parametrize("key", ODD_KEYS)
def test_canned_sha1_equals_botocore(key: str) -> None:
    """A canned link is byte-identical to botocore's for the same base URL and expiry."""
    pair = rsa_pair()
    query = [("response-content-disposition", 'attachment; filename="Q3 report.pdf"')]
    url = ours(pair).sign(key, AT, query=query)
    resource = base_url(f"https://{DOMAIN}", key, query)
    assert url == botocore_signer(pair).generate_presigned_url(resource, date_less_than=AT)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_custom_sha1_equals_botocore(key: str) -> None:
    """A custom link (start and IP range) is byte-identical to botocore's build_policy and
    generate_presigned_url(policy=...)."""
    pair = rsa_pair(1)
    url = ours(pair).sign(key, AT, not_before=START, source_ip="203.0.113.0/24")
    resource = base_url(f"https://{DOMAIN}", key)
    theirs = botocore_signer(pair)
    policy = theirs.build_policy(resource, AT, date_greater_than=START, ip_address="203.0.113.0/24")
    assert url == theirs.generate_presigned_url(resource, policy=policy)


object_keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)
instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
queries = st.lists(
    st.tuples(
        st.sampled_from(["response-content-disposition", "x-sharebatch-id", "color"]),
        st.text(st.characters(codec="utf-8"), max_size=30),
    ),
    max_size=2,
    unique_by=lambda kv: kv[0],
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, 2),
    key=object_keys,
    expires=instants,
    start=st.one_of(st.none(), st.timedeltas(timedelta(seconds=1), timedelta(days=400))),
    ip=st.one_of(st.none(), st.ip_addresses(v=4).map(str)),
    query=queries,
)
@example(index=0, key="a b+c", expires=AT, start=None, ip="127.0.0.1", query=[])
def test_any_sha1_link_equals_botocore(
    index: int,
    key: str,
    expires: datetime,
    start: timedelta | None,
    ip: str | None,
    query: list[tuple[str, str]],
) -> None:
    """For keys of the pool, any object key, expiry, start, IP and query, canned or custom,
    our SHA-1 URL equals botocore's byte for byte."""
    pair = pool("rsa")[index]
    not_before = None if start is None else expires - start
    url = ours(pair).sign(key, expires, query=query, not_before=not_before, source_ip=ip)
    resource = base_url(f"https://{DOMAIN}", key, query)
    theirs = botocore_signer(pair)
    if not_before is None and ip is None:
        assert url == theirs.generate_presigned_url(resource, date_less_than=expires)
    else:
        policy = theirs.build_policy(resource, expires, date_greater_than=not_before, ip_address=ip)
        assert url == theirs.generate_presigned_url(resource, policy=policy)


def test_sha256_adds_hash_algorithm_after_key_pair_id() -> None:
    """The documented order: own query, Expires, Signature, Key-Pair-Id, Hash-Algorithm."""
    pair = rsa_pair()
    url = ours(pair, "sha256").sign("a.pdf", AT, query=[("x-sharebatch-id", "L1")])
    query = url.split("?", 1)[1].split("&")
    names = [piece.split("=", 1)[0] for piece in query]
    assert names == ["x-sharebatch-id", "Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"]
    assert query[-1] == "Hash-Algorithm=SHA256"
    assert query[1] == f"Expires={int(AT.timestamp())}"


def test_sha1_has_no_hash_algorithm_and_custom_starts_with_policy() -> None:
    """SHA-1 is CloudFront's default, named by leaving the parameter out; a custom policy
    travels in Policy= where a canned one has Expires=."""
    url = ours(rsa_pair()).sign("a.pdf", AT, source_ip="10.0.0.0/8")
    names = [piece.split("=", 1)[0] for piece in url.split("?", 1)[1].split("&")]
    assert names == ["Policy", "Signature", "Key-Pair-Id"]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a b", "a%20b"),
        ("a+b", "a%2Bb"),
        ("what?.pdf", "what%3F.pdf"),
        ("#1.pdf", "%231.pdf"),
        ("100%.pdf", "100%25.pdf"),
        ("dir/sub/ü.pdf", "dir/sub/%C3%BC.pdf"),
        ("keep-_.~", "keep-_.~"),
        ("a&b=c;d", "a%26b%3Dc%3Bd"),
    ],
)
def test_object_keys_are_percent_encoded_like_s3_keys(key: str, path: str) -> None:
    """Everything but unreserved characters and '/' is encoded: S3 decodes the path back to
    the key, and a '+' stays a plus (never a space)."""
    assert encode_key(key) == path
    url = ours(rsa_pair(), "sha256").sign(key, AT)
    assert url.startswith(f"https://{DOMAIN}/{path}?Expires=")


def test_query_values_are_encoded_and_signed() -> None:
    """The caller's parameters sit in the URL before signing, encoded, and are in Resource."""
    query = [("response-content-disposition", 'attachment; filename="a b/ü.pdf"')]
    url = ours(rsa_pair(), "sha256").sign("k", AT, query=query, not_before=START)
    encoded = quote('attachment; filename="a b/ü.pdf"', safe="~")
    assert url.startswith(f"https://{DOMAIN}/k?response-content-disposition={encoded}&Policy=")
    policy = cf_b64decode(url.split("Policy=", 1)[1].split("&", 1)[0])
    assert (
        f'"Resource":"https://{DOMAIN}/k?response-content-disposition={encoded}"'.encode() in policy
    )


def test_cf_b64_uses_cloudfronts_substitutions() -> None:
    """'+' '=' '/' become '-' '_' '~' and decode back."""
    data = bytes([0xFB, 0xFF, 0xBF, 0xFE])  # base64 "+/+/" then "/g==": all three characters
    assert cf_b64(data) == "-~-~~g__"
    assert cf_b64decode(cf_b64(data)) == data
    with pytest.raises(ValueError, match="base64"):
        cf_b64decode("+/==")


@pytest.mark.parametrize(
    ("domain", "origin"),
    [
        ("D111111ABCDEF8.cloudfront.net", "https://d111111abcdef8.cloudfront.net"),
        ("files.example.com", "https://files.example.com"),
        ("http://127.0.0.2:8443", "http://127.0.0.2:8443"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
    ],
)
def test_domains_and_loopback_origins(domain: str, origin: str) -> None:
    """A host name means https://host; an origin with a scheme is kept, loopback only."""
    assert domain_origin(domain) == origin


@pytest.mark.parametrize(
    "domain",
    [
        "https://d111111abcdef8.cloudfront.net",
        "http://192.0.2.1:80",
        "host/path",
        "-bad-.com",
        "http://127.0.0.1:80/path",
        "ftp://127.0.0.1",
        "http://127.0.0.1:99999",
        "single",
    ],
)
def test_other_domains_are_refused(domain: str) -> None:
    """No scheme on a real host (it is always https), no path, no non-loopback origin."""
    with pytest.raises(ValueError, match="CloudFront"):
        domain_origin(domain)


def test_signer_refusals() -> None:
    """ECDSA with SHA-1, a curve CloudFront does not take, naive datetimes, a query that
    would shadow a signing parameter, and a bad key pair id are refused."""
    with pytest.raises(ValueError, match="SHA-256 only"):
        ours(ec_pair(), "sha1")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="P-256"):
        CloudFrontSigner(domain=DOMAIN, key_pair_id="K1", key=p384)
    with pytest.raises(ValueError, match="key pair id"):
        CloudFrontSigner(domain=DOMAIN, key_pair_id="k 1", key=rsa_pair().private)
    signer = ours(rsa_pair(), "sha256")
    with pytest.raises(ValueError, match="aware"):
        signer.sign("k", datetime(2027, 1, 1))
    with pytest.raises(ValueError, match="CloudFront's own"):
        signer.sign("k", AT, query=[("Expires", "1")])


def test_timezones_are_honoured_and_seconds_round_down() -> None:
    """An aware time in any zone is its UTC instant; fractions of a second round down."""
    signer = ours(rsa_pair(), "sha256")
    local = AT.astimezone(timezone(timedelta(hours=5, minutes=30))) + timedelta(microseconds=999)
    assert f"Expires={int(AT.timestamp())}&" in signer.sign("k", local)


def test_repr_shows_no_key_material() -> None:
    """The signer's repr names the origin and key pair id, nothing of the key."""
    pair = rsa_pair()
    text = repr(ours(pair))
    assert text == f"CloudFrontSigner('https://{DOMAIN}', key_pair_id='{pair.key_pair_id}')"


KINDS: list[tuple[str, CloudFrontHash]] = [("rsa", "sha1"), ("rsa", "sha256"), ("ecdsa", "sha256")]


def _pair(kind: str) -> KeyPair:
    return rsa_pair() if kind == "rsa" else ec_pair()


def _verify(pair: KeyPair, signature: bytes, policy: bytes, hash: CloudFrontHash) -> None:
    digest = hashes.SHA256() if hash == "sha256" else hashes.SHA1()  # noqa: S303
    public = pair.public
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, policy, ec.ECDSA(digest))
    else:
        public.verify(signature, policy, padding.PKCS1v15(), digest)


@pytest.mark.parametrize(("kind", "hash"), KINDS)
def test_signature_verifies_over_the_exact_policy_with_cryptography(
    kind: str, hash: CloudFrontHash
) -> None:
    """The URL's signature verifies with the public key over the policy bytes CloudFront
    will check (canned: rebuilt; custom: the decoded Policy); one changed byte fails."""
    pair = _pair(kind)
    signer = ours(pair, hash)
    for custom in (False, True):
        url = signer.sign("dir/a b.pdf", AT, source_ip="192.0.2.0/24" if custom else None)
        signature = cf_b64decode(url.split("Signature=", 1)[1].split("&", 1)[0])
        resource = base_url(f"https://{DOMAIN}", "dir/a b.pdf")
        policy = (
            custom_policy(resource, int(AT.timestamp()), not_before=None, source_ip="192.0.2.0/24")
            if custom
            else canned_policy(resource, int(AT.timestamp()))
        )
        _verify(pair, signature, policy, hash)
        tampered = policy.replace(b"a%20b", b"a%20c")
        with pytest.raises(InvalidSignature):
            _verify(pair, signature, tampered, hash)


@pytest.mark.parametrize(("kind", "hash"), KINDS)
def test_signature_verifies_with_the_openssl_command_line(
    kind: str, hash: CloudFrontHash, tmp_path: Path
) -> None:
    """``openssl dgst -<hash> -verify pub.pem -signature sig.bin policy.json`` says
    "Verified OK" for the exact policy bytes, and fails once a byte is changed. (ECDSA: the
    signature is DER, which openssl reads as it is.)"""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command on this machine")
    pair = _pair(kind)
    _, public = pair.write(tmp_path)
    resource = base_url(f"https://{DOMAIN}", "q3/report.pdf")
    policy = custom_policy(resource, int(AT.timestamp()), not_before=1, source_ip=None)
    (tmp_path / "policy.json").write_bytes(policy)
    (tmp_path / "sig.bin").write_bytes(sign_policy(pair.private, policy, hash))
    signature = str(tmp_path / "sig.bin")
    command = [openssl, "dgst", f"-{hash}", "-verify", str(public), "-signature", signature]
    good = subprocess.run(
        [*command, str(tmp_path / "policy.json")], capture_output=True, check=False
    )
    assert (good.returncode, good.stdout.strip()) == (0, b"Verified OK")
    (tmp_path / "tampered.json").write_bytes(
        policy.replace(b'"AWS:EpochTime":1', b'"AWS:EpochTime":2')
    )
    bad = subprocess.run(
        [*command, str(tmp_path / "tampered.json")], capture_output=True, check=False
    )
    assert bad.returncode == 1
    assert b"Verification failure" in bad.stdout + bad.stderr


def test_links_survive_yarl_only_when_marked_encoded() -> None:
    """aiohttp's yarl re-quotes a URL by default (decoding %21, %2F, %3A...), which would
    change what CloudFront checks; with ``encoded=True`` the link goes out byte for byte."""
    name = 'attachment; filename="a/b:c@d!.pdf"'
    url = ours(rsa_pair(), "sha256").sign(
        "odd!$&'()*,;=:@ key.pdf", AT, query=[("response-content-disposition", name)]
    )
    assert str(yarl.URL(url, encoded=True)) == url
    assert str(yarl.URL(url)) != url
