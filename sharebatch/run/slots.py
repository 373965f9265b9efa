"""Issuing upload slots: presigned PUT URLs for named files, POST forms for open folders.

A slot with ``keys`` gets one PUT URL per key, signed with the one Content-Type the key may
have (``manifest.upload.key_content_type``) and never with a checksum: botocore's default CRC
would be baked into the URL and plain ``curl -T`` uploads would fail. A slot without keys gets
one POST form per allowed content type (a policy can fix a field to one value, not to a list),
whose policy restricts the key to the slot's folder, the size to ``max_size`` and the type; S3
refuses any form field no condition covers, so every field put in the form has one.

Every link comes with the ``curl`` command that uses it as is. The audit log records each as
``upload_slot_issued`` with its link id and a sha256 of the URL (PUT) or of the policy (POST),
never the signature.

Each link carries an ``x-sharebatch-id`` (unless the manifest says ``link_ids: false``): signed
into a PUT URL; on a POST form's action URL unsigned, since a form's signature covers its
policy, not its URL (S3 logs the id all the same, and the key prefix names the recipient).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sharebatch.audit import get_logger, url_digest
from sharebatch.errors import SigningError
from sharebatch.manifest.upload import key_content_type
from sharebatch.models import (
    LINK_ID_PARAM,
    BucketTarget,
    Credentials,
    Expiry,
    PostSigner,
    Presigner,
    SlotSummary,
    UploadLink,
    UploadSlot,
)
from sharebatch.run import link_ids
from sharebatch.run.plan import Plan, Route
from sharebatch.run.sign import (
    CredentialLimit,
    Lifetime,
    Wanted,
    credential_limit,
    signed_window,
)
from sharebatch.times import iso

if TYPE_CHECKING:  # the AWS SDK is imported when a gateway opens, not with this module
    from sharebatch.s3.gateway import S3Gateway

log = get_logger()

ANY_TYPE = "application/octet-stream"
"""The Content-Type field of a form that allows any type, until the recipient changes it."""

FILENAME = "${filename}"
"""In a POST form's key field, S3 puts the uploaded file's name here."""

# Fields S3 never wants a policy condition for; every other field needs one.
_EXEMPT = frozenset({"policy", "x-amz-signature", "file"})
_TYPES = mimetypes.MimeTypes()  # built-in table only: the same curl command on every host


def post_policy(slot: UploadSlot, content_type: str | None) -> tuple[dict[str, str], list[Any]]:
    """The form fields and policy conditions of one POST form, beyond botocore's own.

    botocore adds the bucket, the key (``starts-with`` the slot prefix) and its ``x-amz-*``
    fields. Without a content type the form says ``application/octet-stream`` and the policy
    lets the recipient put any other.
    """
    conditions: list[Any] = [["content-length-range", 0, slot.max_size]]
    if content_type is None:
        # A condition is checked against the form, so the field is there, with a neutral value
        # the recipient may change.
        conditions.append(["starts-with", "$Content-Type", ""])
        return {"Content-Type": ANY_TYPE}, conditions
    conditions.append({"Content-Type": content_type})
    return {"Content-Type": content_type}, conditions


def uncovered_fields(fields: Iterable[str], conditions: Sequence[Any]) -> list[str]:
    """Form fields that no policy condition names (S3 answers "Extra input fields")."""
    named: set[str] = set()
    for condition in conditions:
        if isinstance(condition, dict):
            named.update(str(name).lower() for name in condition)
        elif isinstance(condition, list | tuple) and len(condition) == 3:
            name = condition[1]
            if isinstance(name, str) and name.startswith("$"):
                named.add(name[1:].lower())
    return [
        name
        for name in fields
        if name.lower() not in named | _EXEMPT and not name.lower().startswith("x-ignore-")
    ]


def read_policy(fields: Mapping[str, str]) -> dict[str, Any]:
    """The policy document of a POST form (base64 JSON in its ``policy`` field)."""
    try:
        policy = json.loads(base64.b64decode(fields["policy"], validate=True))
    except (KeyError, ValueError, binascii.Error):
        raise SigningError("the POST form has no readable policy; refusing it") from None
    if not isinstance(policy, dict):
        raise SigningError("the POST policy is not a JSON object; refusing it")
    return policy


def sample_file(content_type: str | None) -> str:
    """The placeholder file name in a POST command: ``your-file`` with a fitting extension."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return "your-file" + ((_TYPES.guess_extension(base) or "") if base else "")


def curl_command(link: UploadLink, file: str | None = None) -> str:
    """A POSIX shell command that uploads ``file`` through ``link`` with plain curl.

    PUT: ``curl -T`` with exactly the signed headers (default file: the key's own name).
    POST: every form field with ``--form-string`` (taken literally: ``-F`` would read a value
    starting with ``@`` or ``<`` as a file), then the file, which S3 wants last.
    ``--globoff`` keeps ``[]{}`` in names literal; ``--fail-with-body`` (curl 7.76+) exits
    non-zero on a refusal and still shows S3's reason.
    """
    args = ["curl", "--fail-with-body", "--globoff"]
    if link.method == "PUT":
        args += ["-T", file or posixpath.basename(link.key)]
        for name, value in link.headers.items():
            args += ["-H", f"{name}: {value}"]
    else:
        for name, value in link.fields.items():
            args += ["--form-string", f"{name}={value}"]
        args += ["-F", f"file=@{file or sample_file(link.content_type)}"]
    return shlex.join([*args, link.url])


def upload_row(link: UploadLink) -> dict[str, Any]:
    """One row of ``uploads.csv`` / the ``uploads`` section of ``links.json``."""
    return {
        "recipient": link.recipient,
        "bucket": link.bucket,
        "method": link.method,
        "key": link.key,
        "content_type": link.content_type or "",
        "max_size": link.max_size,
        "expires_at": iso(link.expires_at),
        "link_id": link.link_id,
        "url": link.url,
        "fields": dict(link.fields),
        "headers": dict(link.headers),
        "curl": curl_command(link),
    }


def slot_summary(row: dict[str, Any]) -> SlotSummary:
    """What the summary and the review page say of an issued upload slot (a row of
    ``uploads.csv``): never its URL, form fields or command, which are bearer secrets."""
    return {
        "method": row["method"],
        "key": row["key"],
        "content_type": row["content_type"],
        "max_size": row["max_size"],
        "expires_at": row["expires_at"],
    }


def _parse_moment(text: object, pattern: str) -> datetime:
    if not isinstance(text, str):
        raise SigningError("the POST form has no signing time or expiration; refusing it")
    return datetime.strptime(text, pattern).replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _signed_put(
    presign: Presigner, bucket: str, key: str, params: Mapping[str, str], seconds: int
) -> tuple[str, datetime, datetime]:
    """A PUT URL valid ``seconds``, with the window S3 will judge it by."""
    url = presign("PUT", bucket, key, seconds, params)
    return (url, *signed_window(url))


def _signed_post(
    sign_post: PostSigner,
    bucket: str,
    key: str,
    fields: Mapping[str, str],
    conditions: Sequence[object],
    seconds: int,
) -> tuple[tuple[str, dict[str, str]], datetime, datetime]:
    """A POST form valid ``seconds``: (URL, fields), its signing time and policy expiration."""
    url, form = sign_post(bucket, key, fields, conditions, seconds)
    policy = read_policy(form)
    extra = uncovered_fields(form, policy.get("conditions", []))
    if extra:  # S3 would refuse every upload: better no slot than a broken one
        raise SigningError(f"POST form fields without a policy condition: {extra}")
    signed_at = _parse_moment(form.get("x-amz-date"), "%Y%m%dT%H%M%SZ")
    return (url, form), signed_at, _parse_moment(policy.get("expiration"), "%Y-%m-%dT%H:%M:%SZ")


SlotKey = tuple[str, str, str]
"""(method, key, content type or "") of an upload link: what a renewal re-issues alike."""


def slot_key(method: str, key: str, content_type: str | None) -> SlotKey:
    """The identity of an upload link within its slot, for ``issue_slot``'s ``replaces``."""
    return (method, key, content_type or "")


def with_link_id(url: str, link_id: str) -> str:
    """A POST form's action URL carrying the id (unsigned: the policy is what is signed)."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{LINK_ID_PARAM}={link_id}"


def issue_slot(
    job: str,
    recipient: str,
    bucket: str,
    slot: UploadSlot,
    presign: Presigner,
    sign_post: PostSigner,
    *,
    limit: CredentialLimit | None = None,
    clock: Callable[[], datetime] = _utcnow,
    ids: bool = True,
    replaces: Mapping[SlotKey, str | None] | None = None,
) -> list[UploadLink]:
    """The upload links of one recipient's slot, each logged as ``upload_slot_issued``.

    Held to the recipient's ``on_short_credentials`` (``limit``) as its download links are:
    ``clamp`` ends each PUT URL and POST policy by the credential expiry, ``warn`` keeps them
    and states the credential expiry as their ``expires_at``, ``fail`` refuses. With ``ids``
    each link gets its own id. ``replaces`` (a renewal's) gives the link id of the link each
    new one replaces, by ``slot_key``; its event then says ``replaces``.
    """
    lifetime = Lifetime(job, Expiry(seconds=slot.expires_in), limit, "an upload slot")
    link = partial(UploadLink, job=job, recipient=recipient, bucket=bucket, max_size=slot.max_size)
    links: list[UploadLink] = []
    for name in slot.keys:
        content_type = key_content_type(name, slot.content_types)
        params = {"ContentType": content_type} if content_type else {}
        link_id = link_ids.new_link_id() if ids else None
        if link_id is not None:
            params[LINK_ID_PARAM] = link_id
        key = slot.prefix + name
        put = partial(_signed_put, presign, bucket, key, params)
        url, signed_at, expires_at = lifetime.sign(recipient, put, lifetime.expires_in(clock()))
        links.append(
            link(
                method="PUT",
                key=key,
                content_type=content_type,
                signed_at=signed_at,
                expires_at=expires_at,
                url=url,
                headers={"Content-Type": content_type} if content_type else {},
                link_id=link_id,
            )
        )
    for content_type in () if slot.keys else slot.content_types or (None,):
        fields, conditions = post_policy(slot, content_type)
        post = partial(_signed_post, sign_post, bucket, slot.prefix + FILENAME, fields, conditions)
        (url, form), signed_at, expires_at = lifetime.sign(
            recipient, post, lifetime.expires_in(clock())
        )
        link_id = link_ids.new_link_id() if ids else None
        if link_id is not None:
            url = with_link_id(url, link_id)
        links.append(
            link(
                method="POST",
                key=slot.prefix + FILENAME,
                content_type=content_type,
                signed_at=signed_at,
                expires_at=expires_at,
                url=url,
                fields=form,
                link_id=link_id,
            )
        )
    for issued in links:
        digest: dict[str, str | None] = (
            {"url_sha256": url_digest(issued.url)}
            if issued.method == "PUT"
            else {"policy_sha256": url_digest(issued.fields["policy"])}
        )
        if replaces is not None:
            digest["replaces"] = replaces.get(
                slot_key(issued.method, issued.key, issued.content_type)
            )
        log.info(
            "upload_slot_issued",
            job=job,
            recipient=recipient,
            bucket=bucket,
            method=issued.method,
            key=issued.key,
            content_type=issued.content_type,
            max_size=issued.max_size,
            expires_at=iso(issued.expires_at),
            link_id=issued.link_id,
            **digest,
        )
    return links


def slot_lifetimes(plan: Plan) -> list[Wanted]:
    """(job, recipient, expiry, policy) of every upload slot, for ``sign.check_lifetimes``."""
    return [
        (
            r.job,
            r.recipient,
            Expiry(seconds=r.grant.upload.expires_in),
            r.grant.on_short_credentials,
        )
        for r in plan.routes
        if r.grant.upload is not None
    ]


class Uploads:
    """Signs the upload slots of a plan's routes: one PUT and one POST signer per target."""

    def __init__(
        self,
        signers: Mapping[int, tuple[Presigner, PostSigner]],
        credentials: Credentials | None = None,
    ) -> None:
        self._signers = signers  # by route index
        self._credentials = credentials

    @classmethod
    async def prepare(cls, plan: Plan, gateway: S3Gateway, credentials: Credentials) -> Uploads:
        by_target: dict[BucketTarget, tuple[Presigner, PostSigner]] = {}
        signers: dict[int, tuple[Presigner, PostSigner]] = {}
        for route in plan.routes:
            if route.grant.upload is None:
                continue
            target = gateway.effective(route.target)
            if target not in by_target:
                by_target[target] = (
                    await gateway.signers.presigner(target, credentials),
                    await gateway.signers.post_signer(target, credentials),
                )
            signers[route.index] = by_target[target]
        return cls(signers, credentials)

    def issue(self, route: Route) -> list[UploadLink]:
        """The route's upload links, signed now (none when its grant has no slot)."""
        slot = route.grant.upload
        if slot is None:
            return []
        presign, sign_post = self._signers[route.index]
        credentials = self._credentials
        limit = (
            credential_limit(credentials, route.grant.on_short_credentials) if credentials else None
        )
        return issue_slot(
            route.job,
            route.recipient,
            route.target.bucket,
            slot,
            presign,
            sign_post,
            limit=limit,
            ids=route.grant.link_ids,
        )
