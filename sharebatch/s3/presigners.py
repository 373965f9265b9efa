"""Signing set-up: a synchronous ``Presigner`` or ``PostSigner`` for one bucket target.

Signing is CPU work with no network call; only the region may need asking S3 first (the
``region_of`` lookup given here). Every signer signs with the run's frozen credentials, so
every link of a run is signed by the same key whatever the credential provider does meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import botocore.session

from sharebatch.audit import get_logger
from sharebatch.models import LINK_ID_PARAM, BucketTarget, Credentials, PostSigner, Presigner
from sharebatch.s3.clients import client_config
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported
from sharebatch.s3.workersign import FastPresigner, FastSpec

_CLIENT_METHOD = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}
_LINK_ID_CONTEXT = "sharebatch_link_id"

log = get_logger()


def system_clock() -> datetime:
    """The system's UTC clock: the default, and the only one a signing worker reads."""
    return datetime.now(UTC)


class Signers:
    """Builds signers for targets, with the profile's botocore configuration.

    ``clock`` is the fast signer's; botocore reads its own.
    """

    def __init__(
        self,
        region_of: Callable[[BucketTarget], Awaitable[str]],
        *,
        profile: str | None = None,
        clock: Callable[[], datetime] = system_clock,
    ) -> None:
        self._region_of = region_of
        self._profile = profile
        self._clock = clock

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        """The fast signer where it is proven identical to botocore, botocore itself otherwise
        (never a guess)."""
        region = await self._region_of(target)
        session = botocore.session.Session(profile=self._profile)
        try:
            fast = SigV4Presigner(
                credentials,
                region=region,
                endpoint_url=target.endpoint_url,
                addressing_style=target.addressing_style,
                clock=self._clock,
                environ=os.environ,
                profile_config=session.get_scoped_config(),
            )
        except Unsupported as exc:
            log.info("signer_selected", bucket=target.bucket, signer="botocore", reason=str(exc))
            return botocore_presigner(session, target, region, credentials)
        log.info("signer_selected", bucket=target.bucket, signer="sigv4")
        return FastPresigner(fast, lambda: botocore_presigner(session, target, region, credentials))

    async def worker_spec(self, target: BucketTarget, credentials: Credentials) -> FastSpec | None:
        """What a signing worker needs to sign for ``target`` as ``presigner`` would, or None
        where ``presigner`` would be botocore's (workers never run botocore's signer) or where
        a clock was given (a worker reads the system's)."""
        if self._clock is not system_clock:
            return None
        region = await self._region_of(target)
        session = botocore.session.Session(profile=self._profile)
        try:
            SigV4Presigner(
                credentials,
                region=region,
                endpoint_url=target.endpoint_url,
                addressing_style=target.addressing_style,
                environ=os.environ,
                profile_config=session.get_scoped_config(),
            )
        except Unsupported:
            return None
        return FastSpec(target, region, self._profile)

    async def post_signer(self, target: BucketTarget, credentials: Credentials) -> PostSigner:
        """A POST-policy signer for ``target``: botocore's, SigV4.

        botocore adds the conditions on the bucket, the key (``starts-with`` when the key ends
        in ``${filename}``) and its own ``x-amz-*`` fields; the caller's ``conditions`` must
        cover every other field it puts in the form, or S3 refuses the upload.
        """
        region = await self._region_of(target)
        session = botocore.session.Session(profile=self._profile)
        client = _signing_client(session, target, region, credentials)

        def sign_post(
            bucket: str,
            key: str,
            fields: Mapping[str, str],
            conditions: Sequence[object],
            expires_in: int,
        ) -> tuple[str, dict[str, str]]:
            found = client.generate_presigned_post(
                bucket, key, Fields=dict(fields), Conditions=list(conditions), ExpiresIn=expires_in
            )
            return str(found["url"]), {str(k): str(v) for k, v in found["fields"].items()}

        return sign_post


def botocore_presigner(
    session: Any, target: BucketTarget, region: str, credentials: Credentials
) -> Presigner:
    """botocore's own presigner: what the fast signer is held to, and its fallback.

    botocore's model knows no ``x-sharebatch-id``, so a link id takes two of its documented
    hooks: ``provide-client-params`` moves it from the call's parameters into the request's
    context (per call, so threads sharing the client never mix ids), and ``before-sign`` puts
    it on the request's URL. botocore's own ``S3SigV4QueryAuth`` then signs it with the rest,
    after the operation's parameters, as the fast signer does.
    """
    client = _signing_client(session, target, region, credentials)
    client.meta.events.register("provide-client-params.s3", _take_link_id)
    client.meta.events.register("before-sign.s3", _put_link_id)

    def presign(
        method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
    ) -> str:
        return str(
            client.generate_presigned_url(
                _CLIENT_METHOD[method],
                Params={"Bucket": bucket, "Key": key, **params},
                ExpiresIn=expires_in,
                HttpMethod=method,
            )
        )

    return presign


def _take_link_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Before botocore validates the parameters: the id leaves them for the context."""
    if LINK_ID_PARAM in params:
        context[_LINK_ID_CONTEXT] = params.pop(LINK_ID_PARAM)


def _put_link_id(request: Any, **_: Any) -> None:
    """Before botocore signs: the id joins the operation's parameters in the URL's query."""
    link_id = request.context.get(_LINK_ID_CONTEXT)
    if link_id is not None:
        separator = "&" if "?" in request.url else "?"
        request.url += f"{separator}{LINK_ID_PARAM}={quote(link_id, safe='-_.~')}"


def _signing_client(
    session: Any, target: BucketTarget, region: str, credentials: Credentials
) -> Any:
    """A botocore client that only signs, with the run's frozen credentials."""
    return session.create_client(
        "s3",
        region_name=region,
        endpoint_url=target.endpoint_url,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token,
        config=client_config(target, 1),
    )
