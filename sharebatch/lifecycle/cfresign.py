"""Re-signing a CloudFront bundle's links as they were first signed (``renew``'s other signer).

A CloudFront link is re-signed from what its bundle's header records and its run vouched for
(``renew`` checks the header's sha256 in the run's audit log first): the same domain, key
pair, hash and IP range, with the private key read again from the header's ``private_key``
source, so a key rotated on disk signs the renewal and a key file grown readable by others is
refused as at the run. The old URL's own query parameters (the download name, the content
type) are kept in their order; only its ``x-sharebatch-id`` gets a new id. No credential
lifetime applies: the key pair does not expire, and the end is the header's expiry policy,
never past the header's ``max_expires_in``.

The start (``not_before``): one still ahead is kept, since a renewal must not open a link
before the grant meant it to work; one already passed is left out, because a
``DateGreaterThan`` in the past allows nothing it would not allow without it and only makes
the URL longer. A renewal of a grant without ``allow_ips`` may so carry a canned policy where
its source had a custom one; the header keeps the grant's settings as the run wrote them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from sharebatch.cloudfront.keys import KeyProblem, PrivateKey, load_private_key
from sharebatch.cloudfront.sign import SIGNING_PARAMS, CloudFrontSigner
from sharebatch.errors import LinkError, SigningError
from sharebatch.models import LINK_ID_PARAM, CloudFrontLinks, Expiry, KeySource, Link, ObjectRef
from sharebatch.run import link_ids
from sharebatch.times import iso
from sharebatch.visible import visible


def load_keys(
    wanted: Mapping[KeySource, str], environ: Mapping[str, str] | None = None
) -> dict[KeySource, PrivateKey]:
    """Each distinct key source loaded once; ``wanted`` names, for each, the bundle whose
    header asks for it. A missing, unreadable, world-readable or wrong key is ``LinkError``
    (exit 2) naming that bundle and the source (a path or a variable: never the key)."""
    keys: dict[KeySource, PrivateKey] = {}
    for source, where in wanted.items():
        try:
            keys[source] = load_private_key(source, environ)
        except KeyProblem as exc:
            named = f"file {source.file}" if source.file is not None else f"env {source.env}"
            raise LinkError(
                f"{where}: header: cloudfront.private_key ({named}): {exc}; renew signs with"
                " the key the run used"
            ) from None
    return keys


@dataclass
class CloudFrontResigner:
    """Signs renewed links of one bundle: ``sign_one`` keeps the old URL's own parameters.

    ``clamped_to`` is set when ``max_expires_in`` cut an end short (a fixed ``expires_at``
    further away than it), as the S3 signer records a credential clamp.
    """

    job: str
    settings: CloudFrontLinks
    allow_ips: tuple[str, ...]
    expiry: Expiry
    key: PrivateKey
    ids: bool = True
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    clamped_to: datetime | None = None

    def __post_init__(self) -> None:
        self._signer = CloudFrontSigner(
            domain=self.settings.domain,
            key_pair_id=self.settings.key_pair_id,
            key=self.key,
            hash=self.settings.hash,
        )

    def end(self, now: datetime) -> datetime:
        """When a link signed at ``now`` ends: the expiry policy, capped by ``max_expires_in``
        (CloudFront's Expires counts whole seconds)."""
        cap = now + timedelta(seconds=self.settings.max_expires_in)
        wanted = self.expiry.at or now + timedelta(seconds=self.expiry.seconds or 0)
        if wanted > cap:
            self.clamped_to = cap.replace(microsecond=0)
        return min(wanted, cap).replace(microsecond=0)

    def sign_one(self, recipient: str, obj: ObjectRef, old_url: str) -> Link:
        now = self.clock()
        expires = self.end(now)
        query, link_id = own_query(old_url, self.ids)
        start = self.settings.not_before
        start = start if start is not None and start > now else None
        if start is not None and start >= expires:
            raise SigningError(
                f"job {self.job}: a renewed link would end at {iso(expires)}, before its start"
                f" {iso(start)}; run the manifest again instead"
            )
        try:
            url = self._signer.sign(
                obj.key,
                expires,
                query=query,
                not_before=start,
                # The manifest allows one range for CloudFront (AWS:SourceIp takes one CIDR).
                source_ip=self.allow_ips[0] if self.allow_ips else None,
            )
        except ValueError as exc:  # an IP range or key CloudFront's policy cannot hold
            raise SigningError(
                f"job {self.job}: cannot re-sign {visible(obj.key)}: {exc}"
            ) from None
        return Link(
            job=self.job,
            recipient=recipient,
            obj=obj,
            method="GET",
            signed_at=now,
            expires_at=expires,
            url=url,
            link_id=link_id,
            kind="cloudfront",
        )


def own_query(url: str, ids: bool) -> tuple[list[tuple[str, str]], str | None]:
    """The caller's parameters of an old CloudFront URL (its download name, content type,
    link id) in their order, CloudFront's signing ones left out; with ``ids`` the link id is
    a new one, in the old one's place (or last, when the old URL had none)."""
    kept: list[tuple[str, str]] = []
    new_id = link_ids.new_link_id() if ids else None
    placed = False
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in SIGNING_PARAMS:
            continue
        if name == LINK_ID_PARAM:
            if new_id is not None and not placed:
                kept.append((name, new_id))
                placed = True
            continue
        kept.append((name, value))
    if new_id is not None and not placed:
        kept.append((LINK_ID_PARAM, new_id))
    return kept, new_id
