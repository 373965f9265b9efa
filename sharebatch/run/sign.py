"""Turning listed objects into presigned links, with the expiry rules enforced at signing time.

The URL bytes come from a ``Presigner`` (built by ``s3``); this module owns the policy around
it: only SigV4, at most 7 days, never past the temporary credentials that sign a link (unless
the manifest says ``warn``), and an ``expires_at`` read back from the signed URL itself so a
bundle states the real moment each link stops working. ``RouteSigner`` is what staging asks
of a route's signer of either kind (``cfsign`` signs ``link: cloudfront`` routes).
"""

from __future__ import annotations

import functools
import math
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol, TypeVar, cast
from urllib.parse import quote

from sharebatch import audit
from sharebatch.errors import CredentialsError, SigningError
from sharebatch.manifest.templates import object_renderer
from sharebatch.models import (
    LINK_ID_PARAM,
    MAX_EXPIRES_IN,
    Credentials,
    Expiry,
    Link,
    LinkKind,
    ObjectRef,
    Presigner,
    ShortCredentials,
)
from sharebatch.run import link_ids
from sharebatch.times import iso
from sharebatch.visible import without_hidden

if TYPE_CHECKING:
    from sharebatch.run.bundles import PartFile

# RFC 5987 attr-char: what may stand unencoded in filename*=UTF-8''...
_ATTR_CHARS = string.ascii_letters + string.digits + "!#$&+-.^_`|~"
_PLAIN_NAME = frozenset(string.ascii_letters + string.digits + " !#$%&'()*+,-.;=@[]^_`{}~")


def _query_value(url: str, name: str) -> str | None:
    # Cheaper than a full parse per link, and the names searched never occur in an encoded key.
    start = url.find(f"{name}=", url.find("?"))
    if start < 0:
        return None
    start += len(name) + 1
    end = url.find("&", start)
    return url[start:] if end < 0 else url[start:end]


def signed_window(url: str) -> tuple[datetime, datetime]:
    """(signed_at, expires_at) of a SigV4 presigned URL; SigV2 URLs are refused."""
    stamp = _query_value(url, "X-Amz-Date")
    expires = _query_value(url, "X-Amz-Expires")
    if stamp is None or expires is None:
        raise SigningError("the signer produced a URL without SigV4 parameters; refusing it")
    signed_at = _parse_stamp(stamp)
    return signed_at, signed_at + timedelta(seconds=int(expires))


@functools.lru_cache(maxsize=64)
def _parse_stamp(stamp: str) -> datetime:
    # strptime costs ~20 us; a run signs a whole batch within the same second.
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def content_disposition(filename: str) -> str:
    """``attachment`` with the name in both RFC 6266 forms where it is not plain ASCII.

    Browsers that understand ``filename*`` (all current ones) take the UTF-8 name; the
    ``filename`` fallback is the same name folded to ASCII, so old clients still get a
    sensible one. Controls, bidi overrides and invisible characters are dropped first: a
    saved ``\u202egnp.exe.pdf`` would show as ``fdp.exe.png``. A name left empty or dots only
    is no file name, so it becomes ``download``.
    """
    if _PLAIN_NAME.issuperset(filename) and filename.strip(". "):
        # The common case, said at once: nothing hidden to drop (every plain character is
        # printable ASCII) and a name that is not empty or dots only.
        return f'attachment; filename="{filename}"'
    name = without_hidden(filename)
    if not name.strip(". "):
        name = "download"
    if _PLAIN_NAME.issuperset(name):
        return f'attachment; filename="{name}"'
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c in _PLAIN_NAME else "_" for c in folded).strip() or "download"
    encoded = quote(name, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CredentialLimit:
    """Temporary signing credentials: no link they sign works after ``expiry``."""

    expiry: datetime
    source: str
    policy: ShortCredentials


def credential_limit(credentials: Credentials, policy: ShortCredentials) -> CredentialLimit | None:
    """The limit the credentials put on links, or None when their expiry is unknown."""
    if credentials.expiry is None:
        return None
    return CredentialLimit(credentials.expiry, credentials.method, policy)


def credential_kind(credentials: Credentials) -> str:
    """``session`` for temporary credentials (they carry a token), else ``long-term``."""
    return "session" if credentials.session_token else "long-term"


def policy_end(expiry: Expiry, now: datetime) -> datetime:
    """When links signed at ``now`` would stop working by their expiry policy alone."""
    if expiry.at is not None:
        return expiry.at
    return now + timedelta(seconds=expiry.seconds or 0)


@dataclass(frozen=True, slots=True)
class Outliving:
    """The links (or upload slots) of one (job, recipient) would outlive the credentials that
    sign them."""

    job: str
    recipient: str
    policy: ShortCredentials
    links_end: datetime
    credentials_end: datetime
    source: str
    what: str = "links"

    @property
    def event(self) -> str:
        """The audit event that records it."""
        return {
            "links": "links_outlive_credentials",
            "recipient page links": "page_outlives_credentials",
        }.get(self.what, "uploads_outlive_credentials")


Wanted = tuple[str, str, Expiry, ShortCredentials]
"""(job, recipient, expiry, policy) of what one recipient is to be given."""


def check_lifetimes(
    credentials: Credentials,
    wanted: Iterable[Wanted],
    now: datetime,
    *,
    slots: Iterable[Wanted] = (),
    pages: Iterable[Wanted] = (),
) -> list[Outliving]:
    """Compare each recipient's links (``wanted``), upload slots (``slots``) and recipient
    page links (``pages``) with the credentials, before signing.

    Only what the credentials sign belongs here: CloudFront links (a key pair signs them) do
    not, the S3 links of their recipient pages do (``pages.page_lifetimes``).

    Raises ``CredentialsError`` when the credentials have expired, or when any recipient
    whose policy is ``fail`` would get links or slots that die early; returns the ``clamp``
    and ``warn`` cases, for the caller to record.
    """
    end = credentials.expiry
    if end is None:
        return []
    source = credentials.method
    if end <= now:
        raise CredentialsError(
            f"the temporary credentials from {source} expired at {iso(end)}; "
            "no link signed with them would work"
        )
    found = [
        Outliving(job, recipient, policy, policy_end(expiry, now), end, source, what)
        for what, given in (
            ("links", wanted),
            ("upload slots", slots),
            ("recipient page links", pages),
        )
        for job, recipient, expiry, policy in given
        if policy_end(expiry, now) > end
    ]
    failing = [o for o in found if o.policy == "fail"]
    if failing:
        first = failing[0]
        others = len({(o.job, o.recipient) for o in failing} - {(first.job, first.recipient)})
        more = f" (and {others} more recipients)" if others else ""
        raise CredentialsError(
            f"job {first.job}, recipient {first.recipient}{more}: {first.what} would work until "
            f"{iso(first.links_end)}, but the temporary credentials signing them (source "
            f"{source}) expire at {iso(end)}; nothing was issued. Use longer-lived "
            "credentials or a shorter expiry, or set on_short_credentials: clamp or warn"
        )
    return found


# A presigner stamps its own second: when that second ticks between computing a validity and
# signing, the link would end one second past its bound, so it is signed again, shorter.
_RESIGN_ATTEMPTS = 3


_Signed = TypeVar("_Signed")


class Lifetime:
    """One expiry policy under one credential limit, for download links and upload slots alike.

    With a ``limit`` (temporary credentials of known expiry), each signature is held to its
    policy: ``clamp`` shortens it to end when the credentials do, ``fail`` refuses it, ``warn``
    keeps it but reports the credential expiry as its end: the moment it really dies.
    ``clamped_to`` is set once anything was shortened.
    """

    def __init__(
        self, job: str, expiry: Expiry, limit: CredentialLimit | None, what: str = "a link"
    ) -> None:
        if expiry.seconds is not None:
            _check_window(job, expiry.seconds)
        self._job = job
        self._expiry = expiry
        self._limit = limit
        self._what = what
        self.clamped_to: datetime | None = None

    def _bound(self) -> tuple[datetime | None, bool]:
        """The latest end a signature may have, and whether that bound is the credentials'."""
        limit = self._limit
        at = self._expiry.at
        if limit is not None and limit.policy == "clamp" and (at is None or limit.expiry < at):
            return limit.expiry, True
        return at, False

    def expires_in(self, now: datetime) -> int:
        """The validity to ask of a signer at ``now``."""
        seconds = self._expiry.seconds
        if seconds is None:
            if self._expiry.at is None:
                raise SigningError(f"job {self._job}: no expiry given")
            # A fixed end: each batch gets what is left, so every link dies at that moment.
            seconds = int((self._expiry.at - now).total_seconds())
        seconds = _check_window(self._job, seconds)
        bound, by_credentials = self._bound()
        if by_credentials and bound is not None:
            left = int((bound - now).total_seconds())
            if left <= 0:
                raise CredentialsError(self._expired_message())
            seconds = min(seconds, left)
        return seconds

    def _expired_message(self) -> str:
        limit = self._limit
        assert limit is not None
        return (
            f"job {self._job}: the temporary credentials from {limit.source} expired at "
            f"{iso(limit.expiry)} during the run; nothing signed now would work"
        )

    def sign(
        self,
        recipient: str,
        sign: Callable[[int], tuple[_Signed, datetime, datetime]],
        expires_in: int,
    ) -> tuple[_Signed, datetime, datetime]:
        """``sign(seconds)`` gives (what was signed, its start, its end as S3 will judge it);
        returns them with the end it really has: re-signed shorter while past its bound."""
        bound, by_credentials = self._bound()
        for _ in range(_RESIGN_ATTEMPTS):
            signed, signed_at, expires_at = sign(expires_in)
            # What S3 will judge is checked, not what was asked.
            _check_window(self._job, int((expires_at - signed_at).total_seconds()))
            if bound is None or expires_at <= bound:
                break
            expires_in -= math.ceil((expires_at - bound).total_seconds())
            if expires_in <= 0:
                raise CredentialsError(self._expired_message())
        else:
            raise SigningError(
                f"job {self._job}: could not sign {self._what} that ends by its bound"
            )
        if by_credentials and policy_end(self._expiry, signed_at) > expires_at:
            self.clamped_to = bound
        limit = self._limit
        if limit is not None and expires_at > limit.expiry:
            if limit.policy == "fail":
                raise CredentialsError(
                    f"job {self._job}, recipient {recipient}: {self._what} signed now would work "
                    f"until {iso(expires_at)}, but the temporary credentials signing it "
                    f"(source {limit.source}) expire at {iso(limit.expiry)}; the run stops"
                )
            expires_at = limit.expiry  # warn: it dies with the credentials
        return signed, signed_at, expires_at

    def keeps(self, signed_at: datetime, expires_at: datetime) -> bool:
        """Whether ``sign`` would take a signature ending at ``expires_at`` as it is: no
        credential limit, and within the policy's own end. (Its window was checked by
        ``expires_in``.) A batch signed in one second is then accepted as a whole."""
        at = self._expiry.at
        return self._limit is None and (at is None or expires_at <= at)


class BatchPresigner(Protocol):
    """A presigner that also signs a batch of GETs in one call (``workersign.FastPresigner``)."""

    def get_many(
        self, bucket: str, expires_in: int, requests: Iterable[tuple[str, Mapping[str, str]]]
    ) -> tuple[list[str], datetime] | None:
        """The URLs and the moment they were signed at, or None: sign them one by one."""
        ...


class RouteSigner(Protocol):
    """What staging asks of one route's signer, whichever kind of link the grant issues:
    ``Signer`` (S3 presigned, here) or ``cfsign.CloudFrontRouteSigner`` (CloudFront signed)."""

    kind: ClassVar[LinkKind]
    """The kind of every link it signs."""
    chunk: ClassVar[int]
    """How many links to sign between two yields to the event loop (``pipeline._deliver``)."""

    @property
    def clamped_to(self) -> datetime | None:
        """The credential expiry, once a link was shortened to end by it."""
        ...

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        """One GET link per object for ``recipient``."""
        ...


class Columns(NamedTuple):
    """A chunk of links signed at once (``Signer.sign_columns``): the URLs and link ids (None
    when the manifest turned ids off) in the objects' order, and the expiry they share."""

    urls: list[str]
    ids: list[str] | None
    signed_at: datetime
    expires_at: datetime


class Signer:
    """Signs GET links for one route: its expiry, download name and content type.

    Each link is held to the route's ``Lifetime`` (``limit``: temporary credentials of known
    expiry and the manifest's policy for them); ``clamped_to`` is set once any link was
    shortened. With ``link_ids`` (the manifest's default) each link carries its own signed
    ``x-sharebatch-id``.
    """

    kind: ClassVar[LinkKind] = "s3"
    # The fast signer takes microseconds a link: 250 of them keep the loop's pauses short.
    chunk: ClassVar[int] = 250

    def __init__(
        self,
        presign: Presigner,
        *,
        job: str,
        expiry: Expiry,
        download_name: str = "{basename}",
        content_type: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        limit: CredentialLimit | None = None,
        link_ids: bool = True,
    ) -> None:
        self._lifetime = Lifetime(job, expiry, limit)
        self._link_ids = link_ids
        self._presign = presign
        # A chunk goes to get_many when the presigner has it (workersign.FastPresigner).
        self._many = cast(BatchPresigner, presign) if hasattr(presign, "get_many") else None
        self._job = job
        self._download_name = download_name
        self._name_of = object_renderer(download_name)
        self._content_type = content_type
        self._clock = clock

    @property
    def job(self) -> str:
        """The job whose links this signer signs."""
        return self._job

    @property
    def clamped_to(self) -> datetime | None:
        """The credential expiry, once a link was shortened to end by it."""
        return self._lifetime.clamped_to

    @clamped_to.setter
    def clamped_to(self, value: datetime) -> None:
        # A signing worker's copy of this signer shortened a link (``pipeline._Pending``).
        self._lifetime.clamped_to = value

    def params(self, key: str) -> dict[str, str]:
        """The signed response parameters of ``key``'s link: download name, content type."""
        params = {"ResponseContentDisposition": content_disposition(self._name_of(key))}
        if self._content_type:
            params["ResponseContentType"] = self._content_type
        return params

    def sign_get(self, recipient: str, objects: Iterable[ObjectRef]) -> list[Link]:
        """One GET link per object for ``recipient``."""
        objects = list(objects)
        expires_in, requests = self._requests(objects)
        batch = self._sign_batch(objects, requests, expires_in)
        if batch is not None:
            urls, signed_at, expires_at = batch
            job, new = self._job, Link
            return [
                new(
                    job,
                    recipient,
                    obj,
                    "GET",
                    signed_at,
                    expires_at,
                    url,
                    params.get(LINK_ID_PARAM),
                )
                for obj, (_, params), url in zip(objects, requests, urls, strict=True)
            ]
        return [
            self._sign(recipient, obj, params, expires_in, params.get(LINK_ID_PARAM))
            for obj, (_, params) in zip(objects, requests, strict=True)
        ]

    def sign_columns(self, recipient: str, objects: list[ObjectRef]) -> Columns | list[Link]:
        """``sign_get``'s links as columns (``Columns``: URLs, ids, one expiry) when the chunk
        is signed in one call of the presigner's ``get_many``: staging and the audit lines
        then build each row's text from them without a ``Link`` per object
        (``bundles.PartFile.write_columns``, ``audit.link_issued_columns``). Otherwise (a link
        to shorten, a key only botocore signs, no ``get_many``) the ``Link`` list that
        ``sign_get`` gives, the same ids in it."""
        if self._many is None or not objects:
            return self.sign_get(recipient, objects)
        expires_in, requests = self._requests(objects)
        batch = self._sign_batch(objects, requests, expires_in)
        if batch is None:
            return [
                self._sign(recipient, obj, params, expires_in, params.get(LINK_ID_PARAM))
                for obj, (_, params) in zip(objects, requests, strict=True)
            ]
        ids = [params[LINK_ID_PARAM] for _, params in requests] if self._link_ids else None
        return Columns(batch[0], ids, batch[1], batch[2])

    def _requests(self, objects: list[ObjectRef]) -> tuple[int, list[tuple[str, dict[str, str]]]]:
        expires_in = self._lifetime.expires_in(self._clock())
        name_of = self._name_of
        # The parameters as params() makes them, the id after them, as _sign adds it.
        if self._link_ids and not self._content_type:
            new_id = link_ids.new_link_id
            requests = [
                (
                    obj.key,
                    {
                        "ResponseContentDisposition": content_disposition(name_of(obj.key)),
                        LINK_ID_PARAM: new_id(),
                    },
                )
                for obj in objects
            ]
        else:
            requests = [(obj.key, self.params(obj.key)) for obj in objects]
            if self._link_ids:
                for _, params in requests:
                    params[LINK_ID_PARAM] = link_ids.new_link_id()
        return expires_in, requests

    def _sign_batch(
        self,
        objects: list[ObjectRef],
        requests: list[tuple[str, dict[str, str]]],
        expires_in: int,
    ) -> tuple[list[str], datetime, datetime] | None:
        """The URLs signed in one call of the presigner's ``get_many``, their signing moment
        and expiry, when it has one and the batch is one bucket's; None when they must be
        signed one by one (a link to shorten, a key only botocore signs): ``_sign`` then
        does what it always did."""
        if self._many is None or not objects:
            return None
        bucket = objects[0].bucket
        if any(obj.bucket != bucket for obj in objects):
            return None
        signed = self._many.get_many(bucket, expires_in, requests)
        if signed is None:
            return None
        urls, signed_at = signed
        # What signed_window reads back from each URL: the X-Amz-Date and X-Amz-Expires.
        expires_at = signed_at + timedelta(seconds=expires_in)
        if not self._lifetime.keeps(signed_at, expires_at):
            return None
        return urls, signed_at, expires_at

    def sign_one(
        self,
        recipient: str,
        obj: ObjectRef,
        params: Mapping[str, str],
        expires_in: int | None = None,
    ) -> Link:
        """One GET link with explicit response parameters (renewal keeps the old ones)."""
        if expires_in is None:
            expires_in = self._lifetime.expires_in(self._clock())
        return self._sign(recipient, obj, dict(params), expires_in)

    def _sign(
        self,
        recipient: str,
        obj: ObjectRef,
        params: dict[str, str],
        expires_in: int,
        drawn: str | None = None,
    ) -> Link:
        """``params`` is this call's own: the link id joins it (``drawn``: one drawn already)."""
        link_id = None
        if self._link_ids:
            link_id = params[LINK_ID_PARAM] = drawn or link_ids.new_link_id()

        def presign(seconds: int) -> tuple[str, datetime, datetime]:
            url = self._presign("GET", obj.bucket, obj.key, seconds, params)
            return (url, *signed_window(url))

        url, signed_at, expires_at = self._lifetime.sign(recipient, presign, expires_in)
        return Link(
            job=self._job,
            recipient=recipient,
            obj=obj,
            method="GET",
            signed_at=signed_at,
            expires_at=expires_at,
            url=url,
            link_id=link_id,
        )


def stage_chunk(signer: Signer, part: PartFile, recipient: str, objects: list[ObjectRef]) -> None:
    """Sign a chunk, stage its rows and log its ``link_issued`` lines: from columns when it
    was signed at once (no ``Link`` per object), else from its links. A one-process run and
    a signing worker (``run/worker``) both call it, so both write the same bytes."""
    signed = signer.sign_columns(recipient, objects)
    if isinstance(signed, Columns):
        urls, ids, signed_at, expires_at = signed
        job = signer.job
        part.write_columns(job, recipient, objects, urls, ids, signed_at, expires_at)
        audit.link_issued_columns(job, recipient, objects, urls, ids, signed_at, expires_at)
    else:
        part.write(signed)
        audit.link_issued(signed, signer.kind)


def _check_window(job: str, seconds: int) -> int:
    if not 0 < seconds <= MAX_EXPIRES_IN:
        raise SigningError(
            f"job {job}: a validity of {seconds}s is outside 1..{MAX_EXPIRES_IN}s "
            "(the SigV4 limit for presigned URLs)"
        )
    return seconds
