"""A CloudFront signed URL read back: what it grants, until when, from where, signed how.

``inspect``, ``verify`` and ``renew`` read links from bundles; this module tells a CloudFront
link from a SigV4 one and takes it apart the way CloudFront does (see ``sign.py``'s sources):

* The signing parameters are ``Expires`` or ``Policy``, ``Signature``, ``Key-Pair-Id`` and,
  for SHA-256, ``Hash-Algorithm=SHA256`` (absent: SHA-1). Each at most once; any other
  ``Hash-Algorithm`` value is not one CloudFront knows.
* Removing them, in place, from the URL leaves the base URL: the policy's ``Resource``
  (the caller's own query parameters stay, in their order).
* A canned policy is not in the URL: it is rebuilt from the base URL and ``Expires``, byte for
  byte as the signer wrote it (``policy.canned_policy``). A custom policy is the decoded
  ``Policy`` parameter, whose ``Resource`` may differ from the base URL (CloudFront allows
  wildcards there; we never write them, and ``resource`` here is always the base URL).

Errors (``NotCloudFrontUrl``, a ``ValueError`` that callers turn into ``LinkError`` with file
and line) never quote the URL: it is a bearer credential.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sharebatch.cloudfront.policy import canned_policy, parse_policy
from sharebatch.cloudfront.sign import SIGNING_PARAMS, cf_b64decode
from sharebatch.models import CloudFrontHash

__all__ = [
    "CloudFrontFacts",
    "NotCloudFrontUrl",
    "PublicKey",
    "is_cloudfront_url",
    "read_cloudfront_url",
    "split_signing_params",
    "verify_signature",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class NotCloudFrontUrl(ValueError):
    """A URL that is not a well-formed CloudFront signed URL; never quotes the URL."""


@dataclass(frozen=True, slots=True)
class CloudFrontFacts:
    """What a CloudFront signed URL says. ``signature`` is a credential: not in the repr."""

    resource: str
    expires: datetime
    not_before: datetime | None
    source_ip: str | None
    key_pair_id: str
    hash: CloudFrontHash
    canned: bool
    policy: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    policy_resource: str = ""

    @property
    def kind(self) -> str:
        return "canned" if self.canned else "custom"

    @property
    def object_key(self) -> str:
        """The S3 key the link serves: its path, percent-decoded (``+`` stays a plus)."""
        return unquote(urlsplit(self.resource).path[1:])

    @property
    def query(self) -> tuple[tuple[str, str], ...]:
        """The caller's own parameters (download name, link id), decoded, in URL order:
        ``CloudFrontSigner.sign(facts.object_key, ..., query=facts.query)`` signs the same
        resource again (``renew``)."""
        query = urlsplit(self.resource).query
        pairs = (piece.partition("=") for piece in query.split("&")) if query else ()
        return tuple((unquote(name), unquote(value)) for name, _, value in pairs)


def split_signing_params(url: str) -> tuple[str, dict[str, list[str]]]:
    """The base URL (signing parameters removed, the rest in order) and the signing
    parameters' raw values by name."""
    head, sep, query = url.partition("?")
    if not sep:
        return url, {}
    kept: list[str] = []
    found: dict[str, list[str]] = {}
    for piece in query.split("&"):
        name, _, value = piece.partition("=")
        if name in SIGNING_PARAMS:
            found.setdefault(name, []).append(value)
        else:
            kept.append(piece)
    return (f"{head}?{'&'.join(kept)}" if kept else head), found


def is_cloudfront_url(url: str) -> bool:
    """Whether ``url`` carries CloudFront's signing parameters (not whether it is valid)."""
    if not url.startswith(("https://", "http://")):
        return False
    _, found = split_signing_params(url)
    has_policy = "Expires" in found or "Policy" in found
    return has_policy and "Signature" in found and "Key-Pair-Id" in found


def _one(found: dict[str, list[str]], name: str) -> str | None:
    values = found.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise NotCloudFrontUrl(f"the link holds {name} more than once")
    return values[0]


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def read_cloudfront_url(url: str) -> CloudFrontFacts:
    """Take a CloudFront signed URL apart; ``NotCloudFrontUrl`` if it is not one."""
    if not url.startswith(("https://", "http://")) or "#" in url:
        raise NotCloudFrontUrl("not an http(s) URL without a fragment")
    parts = urlsplit(url)
    if not parts.hostname:
        raise NotCloudFrontUrl("the link has no host")
    resource, found = split_signing_params(url)
    expires_text, policy_text = _one(found, "Expires"), _one(found, "Policy")
    signature_text, key_pair_id = _one(found, "Signature"), _one(found, "Key-Pair-Id")
    algorithm = _one(found, "Hash-Algorithm")
    if signature_text is None or key_pair_id is None:
        raise NotCloudFrontUrl("the link has no Signature or no Key-Pair-Id")
    if (expires_text is None) == (policy_text is None):
        raise NotCloudFrontUrl("the link must hold exactly one of Expires and Policy")
    if not key_pair_id.isalnum() or not key_pair_id.isascii():
        raise NotCloudFrontUrl("the Key-Pair-Id is not a key pair id")
    if algorithm not in (None, "SHA256"):
        raise NotCloudFrontUrl("Hash-Algorithm must be SHA256 when present")
    hash_name: CloudFrontHash = "sha1" if algorithm is None else "sha256"
    try:
        signature = cf_b64decode(unquote(signature_text))
    except ValueError as exc:
        raise NotCloudFrontUrl("the Signature is not CloudFront base64") from exc
    if expires_text is not None:
        if not expires_text.isdigit() or not expires_text.isascii():
            raise NotCloudFrontUrl("Expires is not whole seconds since 1970")
        try:
            policy = canned_policy(resource, int(expires_text))
        except ValueError as exc:
            raise NotCloudFrontUrl(f"the link cannot hold a canned policy: {exc}") from exc
        return CloudFrontFacts(
            resource=resource,
            expires=_utc(int(expires_text)),
            not_before=None,
            source_ip=None,
            key_pair_id=key_pair_id,
            hash=hash_name,
            canned=True,
            policy=policy,
            signature=signature,
            policy_resource=resource,
        )
    assert policy_text is not None
    try:
        policy = cf_b64decode(unquote(policy_text))
        facts = parse_policy(policy)
    except ValueError as exc:
        raise NotCloudFrontUrl(f"the Policy cannot be read: {exc}") from exc
    return CloudFrontFacts(
        resource=resource,
        expires=_utc(facts.expires),
        not_before=None if facts.not_before is None else _utc(facts.not_before),
        source_ip=facts.source_ip,
        key_pair_id=key_pair_id,
        hash=hash_name,
        canned=False,
        policy=policy,
        signature=signature,
        policy_resource=facts.resource,
    )


def verify_signature(facts: CloudFrontFacts, public_key: PublicKey) -> bool:
    """Whether ``facts.signature`` is the key's signature over ``facts.policy``'s bytes
    with the link's hash (ECDSA: P-256 and SHA-256 only, as CloudFront accepts)."""
    digest: hashes.HashAlgorithm = (
        hashes.SHA256() if facts.hash == "sha256" else hashes.SHA1()  # noqa: S303 - the link's own
    )
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(facts.signature, facts.policy, padding.PKCS1v15(), digest)
            return True
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if facts.hash != "sha256" or not isinstance(public_key.curve, ec.SECP256R1):
                return False
            public_key.verify(facts.signature, facts.policy, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False
