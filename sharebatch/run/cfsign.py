"""CloudFront signed links for one route (``link: cloudfront``), beside ``sign.Signer``.

A module of its own because the rules differ from SigV4's in every respect ``sign`` owns: a
link is signed by a key pair of the distribution's key group, not by the run's credentials,
so no credential lifetime applies (``sign.check_lifetimes`` leaves these routes out) and its
window is 1 s up to the grant's ``cloudfront.max_expires_in`` instead of 7 days; it may carry
a start (``not_before``) and one network (``allow_ips``) in a custom policy. What stays the
same is what the recipient sees: the download name and content type as the S3 links send them
(``response-content-disposition``/``response-content-type`` in the query, covered by the
policy's Resource; CloudFront passes them to S3 only when the distribution's origin request
policy forwards query strings), and the link id as ``x-sharebatch-id``.

The URL bytes come from ``cloudfront.sign.CloudFrontSigner`` (given to the route signer as a
``UrlSigner``, its one call); ``CloudFrontKeys`` reads each private key once, when the run
starts, and makes one such signer per distinct domain, key pair, key and hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

from sharebatch.cloudfront.keys import KeyProblem, PrivateKey, load_private_key
from sharebatch.cloudfront.policy import source_ip_cidr
from sharebatch.cloudfront.sign import CloudFrontSigner
from sharebatch.errors import SigningError, UsageError
from sharebatch.manifest.load import Grant
from sharebatch.manifest.templates import render_object
from sharebatch.models import (
    LINK_ID_PARAM,
    CloudFrontLinks,
    Expiry,
    KeySource,
    Link,
    LinkKind,
    ObjectRef,
)
from sharebatch.run import link_ids
from sharebatch.run.sign import content_disposition
from sharebatch.times import iso

Query = Sequence[tuple[str, str]]
"""A link's own query parameters, in URL order, before CloudFront's signing parameters."""


class UrlSigner(Protocol):
    """``cloudfront.sign.CloudFrontSigner``'s signing call: one signed URL for one key."""

    def sign(
        self,
        key: str,
        expires: datetime,
        *,
        query: Query = (),
        not_before: datetime | None = None,
        source_ip: str | None = None,
    ) -> str:
        """The signed URL of ``key`` (a custom policy iff ``not_before`` or ``source_ip``)."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _second(moment: datetime) -> datetime:
    # CloudFront's times are whole epoch seconds: a link ends at the second its policy says.
    return moment.replace(microsecond=0)


class CloudFrontRouteSigner:
    """Signs GET links for one ``link: cloudfront`` route: its expiry, start, network,
    download name and content type.

    ``expiry`` is the grant's (``expires_in`` from the second of signing, or a fixed
    ``expires_at``); each batch is checked to end 1 s to ``settings.max_expires_in`` after it
    is signed and after ``settings.not_before``. ``allow_ips`` holds at most one CIDR (a
    CloudFront policy's ``AWS:SourceIp`` takes one; the manifest refuses more).
    """

    kind: ClassVar[LinkKind] = "cloudfront"
    # bench/bench_cfsign.py: an RSA-2048 signature costs ~0.5 ms a link (ECDSA P-256 ~0.1 ms)
    # against ~10 us for the S3 fast signer, and cryptography holds the GIL meanwhile: 8 links
    # between yields keep the event loop's pauses near those of 250 S3 links (~3 ms), so
    # listings go on while a route is signed.
    chunk: ClassVar[int] = 8

    def __init__(
        self,
        signer: UrlSigner,
        *,
        job: str,
        expiry: Expiry,
        settings: CloudFrontLinks,
        allow_ips: tuple[str, ...] = (),
        download_name: str = "{basename}",
        content_type: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        link_ids: bool = True,
    ) -> None:
        if len(allow_ips) > 1:
            raise SigningError(
                f"job {job}: a CloudFront policy takes one network in AWS:SourceIp, "
                f"not {len(allow_ips)}"
            )
        for network in allow_ips:
            # What the manifest refuses (host bits, IPv6, not a network), refused for a
            # caller's own Grant too: CloudFrontKeys.load makes it a UsageError.
            try:
                normal = source_ip_cidr(network)
            except ValueError as exc:
                raise SigningError(f"job {job}: allow_ips {network!r}: {exc}") from None
            if normal != network:
                raise SigningError(f"job {job}: allow_ips {network!r} is not written {normal}")
        self._signer = signer
        self._job = job
        self._expiry = expiry
        self._settings = settings
        self._source_ip = allow_ips[0] if allow_ips else None
        self._download_name = download_name
        self._content_type = content_type
        self._clock = clock
        self._link_ids = link_ids

    @property
    def clamped_to(self) -> datetime | None:
        """Always None: a key pair signs these links, and no credential expiry shortens them."""
        return None

    @property
    def settings(self) -> CloudFrontLinks:
        """The grant's ``cloudfront:`` setting these links are signed with."""
        return self._settings

    def query(self, key: str) -> list[tuple[str, str]]:
        """The response parameters of ``key``'s link, as the S3 links of the same grant
        carry them: download name, then content type."""
        query = [
            (
                "response-content-disposition",
                content_disposition(render_object(self._download_name, key)),
            )
        ]
        if self._content_type:
            query.append(("response-content-type", self._content_type))
        return query

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """(signed_at, expires_at) of links signed at ``now`` by the grant's expiry;
        ``SigningError`` when that window is outside 1 s..``max_expires_in`` or ends by
        ``not_before``."""
        signed_at = _second(now)
        if self._expiry.at is not None:
            expires_at = _second(self._expiry.at)
        elif self._expiry.seconds is not None:
            expires_at = signed_at + timedelta(seconds=self._expiry.seconds)
        else:
            raise SigningError(f"job {self._job}: no expiry given")
        self._check(signed_at, expires_at)
        return signed_at, expires_at

    def _check(self, signed_at: datetime, expires_at: datetime) -> None:
        seconds = int((expires_at - signed_at).total_seconds())
        limit = self._settings.max_expires_in
        if not 0 < seconds <= limit:
            raise SigningError(
                f"job {self._job}: a validity of {seconds}s is outside 1..{limit}s "
                "(cloudfront.max_expires_in)"
            )
        start = self._settings.not_before
        if start is not None and start >= expires_at:
            raise SigningError(
                f"job {self._job}: cloudfront.not_before {iso(start)} is not before the "
                f"links' end {iso(expires_at)}: no link would ever work"
            )

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        """One GET link per object for ``recipient``."""
        signed_at, expires_at = self.window(self._clock())
        return [
            self._sign(recipient, obj, self.query(obj.key), signed_at, expires_at)
            for obj in objects
        ]

    def sign_one(
        self,
        recipient: str,
        obj: ObjectRef,
        query: Query,
        expires_at: datetime | None = None,
    ) -> Link:
        """One GET link with explicit response parameters (a renewal keeps the old ones);
        ``expires_at``, when given, replaces the grant's end, held to the same window."""
        now = self._clock()
        if expires_at is None:
            signed_at, end = self.window(now)
        else:
            signed_at, end = _second(now), _second(expires_at)
            self._check(signed_at, end)
        return self._sign(recipient, obj, list(query), signed_at, end)

    def _sign(
        self,
        recipient: str,
        obj: ObjectRef,
        query: list[tuple[str, str]],
        signed_at: datetime,
        expires_at: datetime,
    ) -> Link:
        """``query`` is this call's own: the link id joins it, last, as on S3 links."""
        link_id = None
        if self._link_ids:
            link_id = link_ids.new_link_id()
            query.append((LINK_ID_PARAM, link_id))
        url = self._signer.sign(
            obj.key,
            expires_at,
            query=query,
            not_before=self._settings.not_before,
            source_ip=self._source_ip,
        )
        return Link(
            job=self._job,
            recipient=recipient,
            obj=obj,
            method="GET",
            signed_at=signed_at,
            expires_at=expires_at,
            url=url,
            link_id=link_id,
            kind="cloudfront",
        )


_Signing = tuple[str, str, KeySource, str]
"""(domain, key pair id, key source, hash): what one ``CloudFrontSigner`` is made of."""


class CloudFrontKeys:
    """The URL signers of a run's ``link: cloudfront`` grants, made when the run starts.

    Each distinct key source is read once (``cloudfront.keys.load_private_key``: the file's
    mode, the key's type), and each distinct (domain, key pair, key, hash) becomes one
    ``CloudFrontSigner``. The manifest checked all of it already, but a key file may have
    changed since: any problem is ``UsageError`` naming the job and recipient, before the
    run folder exists.
    """

    def __init__(self, signers: Mapping[_Signing, CloudFrontSigner]) -> None:
        self._signers = dict(signers)

    def __repr__(self) -> str:
        return f"CloudFrontKeys({len(self._signers)} signers)"

    @classmethod
    def load(
        cls,
        grants: Iterable[Grant],
        environ: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> CloudFrontKeys:
        """The signers of every ``link: cloudfront`` grant in ``grants``, each grant's window
        checked as at ``now`` (default: the clock's)."""
        keys: dict[KeySource, PrivateKey] = {}
        signers: dict[_Signing, CloudFrontSigner] = {}
        for grant in grants:
            settings = grant.cloudfront
            if grant.link != "cloudfront" or settings is None:
                continue
            where = f"job {grant.job}, recipient {grant.recipient.id}: cloudfront"
            source = settings.private_key
            if source not in keys:
                try:
                    keys[source] = load_private_key(source, environ)
                except KeyProblem as exc:  # its message names the file, never the key
                    raise UsageError(f"{where}.private_key: {exc}") from None
            which = _signing(settings)
            if which not in signers:
                try:
                    signers[which] = CloudFrontSigner(
                        domain=settings.domain,
                        key_pair_id=settings.key_pair_id,
                        key=keys[source],
                        hash=settings.hash,
                    )
                except (TypeError, ValueError) as exc:  # an ECDSA key with SHA-1, say
                    raise UsageError(f"{where}: {exc}") from None
            try:
                # A start at or after the links' end, or a window past max_expires_in by now,
                # would refuse the first link: bad input, said before anything exists.
                _route_signer(signers[which], grant, settings).window(now or datetime.now(UTC))
            except SigningError as exc:
                why = str(exc).removeprefix(f"job {grant.job}: ")
                raise UsageError(
                    f"job {grant.job}, recipient {grant.recipient.id}: {why}"
                ) from None
        return cls(signers)

    def route_signer(self, grant: Grant) -> CloudFrontRouteSigner:
        """The signer of one ``link: cloudfront`` grant (``pipeline.CloudFrontSigners``)."""
        settings = grant.cloudfront
        signer = None if settings is None else self._signers.get(_signing(settings))
        if settings is None or signer is None:
            raise SigningError(f"job {grant.job}: no CloudFront key was loaded for it")
        return _route_signer(signer, grant, settings)


def _route_signer(
    signer: CloudFrontSigner, grant: Grant, settings: CloudFrontLinks
) -> CloudFrontRouteSigner:
    return CloudFrontRouteSigner(
        signer,
        job=grant.job,
        expiry=grant.expiry,
        settings=settings,
        allow_ips=grant.allow_ips,
        download_name=grant.download_name,
        content_type=grant.content_type,
        link_ids=grant.link_ids,
    )


def _signing(settings: CloudFrontLinks) -> _Signing:
    return (settings.domain, settings.key_pair_id, settings.private_key, settings.hash)
