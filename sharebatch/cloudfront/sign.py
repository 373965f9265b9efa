"""CloudFront signed URLs: the URL of an object, its policy, and the signature over it.

What CloudFront documents, and so what this module writes (sources below):

* The URL is ``<base URL>&Expires=N&Signature=S&Key-Pair-Id=K`` for a canned policy and
  ``<base URL>&Policy=P&Signature=S&Key-Pair-Id=K`` for a custom one (``?`` instead of the
  first ``&`` when the base URL has no query), in that order, after the caller's own query
  parameters. With SHA-256, ``&Hash-Algorithm=SHA256`` follows ``Key-Pair-Id``; without the
  parameter CloudFront assumes SHA-1. ("Create a signed URL using a canned policy",
  https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-creating-signed-url-canned-policy.html
  shows ``...&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256``; "Code examples for creating a
  signature for a signed URL",
  https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/PrivateCFSignatureCodeAndExamples.html:
  "When you use SHA-256, include the Hash-Algorithm=SHA256 query parameter".)
* The base URL, the policy's ``Resource``, is the URL the viewer would request without
  signing, "including your own query string parameters, if any". So the download name
  (``response-content-disposition``) and the link id go into the query *before* signing and
  are covered by the signature: changing either refuses the link. CloudFront only forwards
  them to S3 when the distribution's origin request policy forwards those query strings
  (README, "Links longer than 7 days"); a cache policy that ignores them would also serve
  one recipient's download name to another.
* The signature is RSA PKCS#1 v1.5 (SHA-1 or SHA-256) or ECDSA over P-256 with SHA-256, DER
  encoded as ``cryptography`` and OpenSSL produce it. ECDSA keys cannot be used with SHA-1:
  the AWS CLI's ``cloudfront sign`` refuses it ("ECDSA keys always use SHA256"; aws-cli
  awscli/customizations/cloudfront/sign.py), so ``CloudFrontSigner`` does too. CloudFront
  accepts RSA 2048 and ECDSA 256 public keys only (API reference, PublicKeyConfig:
  https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_PublicKeyConfig.html).
* Policy and signature are base64 with CloudFront's URL-safe substitutions: ``+`` -> ``-``,
  ``=`` -> ``_``, ``/`` -> ``~`` (botocore/signers.py ``CloudFrontSigner._url_b64encode``; the
  docs' OpenSSL recipe pipes through ``tr '+=/' '-_~'``).
* The object key is percent-encoded like botocore encodes S3 keys: everything but RFC 3986's
  unreserved characters and ``/`` (``quote(key, safe="/~")``), so a space is ``%20``, ``+`` is
  ``%2B`` (a literal plus in a path, never a space), ``?`` ``%3F``, ``#`` ``%23``, ``%`` ``%25``
  and non-ASCII its UTF-8 bytes. The same bytes go into the policy's ``Resource``, because
  CloudFront compares the Resource with the URL as requested and then forwards that path to
  S3, which decodes it back to the key. Query names and values are encoded the same way with
  ``/`` encoded as well.
* CloudFront checks the URL as it arrives, so it must reach CloudFront byte for byte. Browsers,
  curl and ``http.client`` send it as written. yarl (aiohttp) re-quotes by default, decoding
  ``%21`` ``%2F`` ``%3A`` and the like into the characters, which breaks a canned link's
  signature and a custom link's Resource: fetch with ``yarl.URL(url, encoded=True)``.

The signer never shows its key: no repr with key material, and errors name the problem only.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sharebatch.cloudfront.policy import canned_policy, custom_policy
from sharebatch.models import CloudFrontHash

__all__ = [
    "SIGNING_PARAMS",
    "CloudFrontSigner",
    "PrivateKey",
    "base_url",
    "cf_b64",
    "cf_b64decode",
    "domain_origin",
    "encode_key",
    "sign_policy",
]

# The same union as cloudfront/keys.py's PrivateKey (helper B's module): written out here so
# that signing does not depend on how keys are loaded.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

SIGNING_PARAMS = ("Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm")
"""The query parameters CloudFront reads and strips; a caller's own may not use these names."""

_TO_CF = bytes.maketrans(b"+=/", b"-_~")
_FROM_CF = bytes.maketrans(b"-_~", b"+=/")
# A DNS host name: dot-separated LDH labels (what CloudFront accepts as a CNAME).
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"(?=.{{1,253}}\Z)(?:{_LABEL}\.)+{_LABEL}")
# Key pair ids (K..., APKA...) are upper-case letters and digits; anything else would need
# encoding in the URL and is certainly a typo.
_KEY_PAIR_ID = re.compile(r"[A-Z0-9]{1,128}")


def cf_b64(data: bytes) -> str:
    """``data`` in CloudFront's URL-safe base64 (``+=/`` written as ``-_~``)."""
    return base64.b64encode(data).translate(_TO_CF).decode("ascii")


def cf_b64decode(text: str) -> bytes:
    """The inverse of ``cf_b64``; ``ValueError`` on anything that is not its output."""
    if any(c in text for c in "+/="):
        # Never in CloudFront's alphabet: a link that passed through something that "fixed" it.
        raise ValueError("not CloudFront base64")
    try:
        raw = text.encode("ascii").translate(_FROM_CF)
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, ValueError) as exc:
        raise ValueError("not CloudFront base64") from exc


def domain_origin(domain: str) -> str:
    """``https://<domain>`` for a host name; a loopback origin (``http://127.0.0.x:PORT``,
    for test verifiers) as it is. ``ValueError`` for anything else."""
    if "://" not in domain:
        if not _HOST.fullmatch(domain):
            raise ValueError("the CloudFront domain must be a host name (no scheme, no path)")
        return f"https://{domain.lower()}"
    parts = urlsplit(domain)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("the CloudFront origin has a bad port") from exc
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme not in ("http", "https") or not loopback or parts.path not in ("", "/"):
        raise ValueError("a CloudFront origin with a scheme must be http(s)://<loopback>:PORT")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("a CloudFront origin may not hold a query, fragment or user")
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")


def encode_key(key: str) -> str:
    """An S3 object key as the path of a CloudFront URL (see the module's notes)."""
    return quote(key, safe="/~")


def base_url(origin: str, key: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """The URL a viewer would request without signing: the policy's ``Resource``."""
    url = f"{origin}/{encode_key(key)}"
    if query:
        url += "?" + "&".join(f"{quote(n, safe='~')}={quote(v, safe='~')}" for n, v in query)
    return url


def _hash(name: CloudFrontHash) -> hashes.HashAlgorithm:
    return hashes.SHA256() if name == "sha256" else hashes.SHA1()  # noqa: S303 - CloudFront's default, the caller's choice


def sign_policy(key: PrivateKey, policy: bytes, hash: CloudFrontHash) -> bytes:
    """The raw signature CloudFront checks over ``policy``'s exact bytes."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(policy, padding.PKCS1v15(), _hash(hash))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if hash != "sha256":
            raise ValueError("ECDSA keys sign with SHA-256 only (hash: sha256)")
        return key.sign(policy, ec.ECDSA(hashes.SHA256()))
    raise TypeError("an RSA or ECDSA private key is needed")


def _epoch(moment: datetime, name: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC)")
    # Whole seconds, rounded down like botocore's int(datetime2timestamp(...)).
    return int(moment.timestamp())


class CloudFrontSigner:
    """Signs object keys into CloudFront URLs for one distribution and one key pair."""

    __slots__ = ("_hash", "_key", "_key_pair_id", "_origin")

    def __init__(
        self, *, domain: str, key_pair_id: str, key: PrivateKey, hash: CloudFrontHash = "sha256"
    ) -> None:
        if not _KEY_PAIR_ID.fullmatch(key_pair_id):
            raise ValueError("a key pair id is upper-case letters and digits (K2JCJMDEHXQW5F)")
        if hash not in ("sha256", "sha1"):
            raise ValueError("hash must be sha256 or sha1")
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("CloudFront accepts ECDSA keys on P-256 (secp256r1) only")
            if hash != "sha256":
                raise ValueError("ECDSA keys sign with SHA-256 only (hash: sha256)")
        elif not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("an RSA or ECDSA private key is needed")
        self._origin = domain_origin(domain)
        self._key_pair_id = key_pair_id
        self._key = key
        self._hash: CloudFrontHash = hash

    def __repr__(self) -> str:
        # The key object's own repr shows no material, but nothing here needs to show it.
        return f"CloudFrontSigner({self._origin!r}, key_pair_id={self._key_pair_id!r})"

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def key_pair_id(self) -> str:
        return self._key_pair_id

    @property
    def hash(self) -> CloudFrontHash:
        return self._hash

    def sign(
        self,
        key: str,
        expires: datetime,
        *,
        query: Sequence[tuple[str, str]] = (),
        not_before: datetime | None = None,
        source_ip: str | None = None,
    ) -> str:
        """The signed URL of object ``key``; a custom policy iff ``not_before`` or
        ``source_ip`` is given, a canned one otherwise. ``query`` (the caller's own
        parameters) is part of the signed resource."""
        taken = [name for name, _ in query if name in SIGNING_PARAMS]
        if taken:
            raise ValueError(f"query parameter {taken[0]} is CloudFront's own")
        resource = base_url(self._origin, key, query)
        until = _epoch(expires, "expires")
        if not_before is None and source_ip is None:
            policy = canned_policy(resource, until)
            params = [f"Expires={until}"]
        else:
            start = None if not_before is None else _epoch(not_before, "not_before")
            policy = custom_policy(resource, until, not_before=start, source_ip=source_ip)
            params = [f"Policy={cf_b64(policy)}"]
        params.append(f"Signature={cf_b64(sign_policy(self._key, policy, self._hash))}")
        params.append(f"Key-Pair-Id={self._key_pair_id}")
        if self._hash == "sha256":
            params.append("Hash-Algorithm=SHA256")
        return resource + ("&" if query else "?") + "&".join(params)
