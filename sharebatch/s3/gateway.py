"""The only module that talks to S3 (through aioboto3) or builds boto clients.

Private parts belong to it: ``_s3_listing`` and ``_s3_preflight`` (listing, and the doctor's
requests, both mixed into ``S3Gateway``), ``_s3_fastlist`` (listing requests sent without
botocore while all goes well), ``_listparse`` (reading listing answers) and ``_s3_links``
(checking a presigned link over plain HTTP).

It hands the rest of the program plain values: ``Credentials`` snapshots, pages of
``ObjectRef`` and a synchronous ``Presigner`` callable. Nothing outside this module sees a boto
response or a client.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aioboto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sharebatch.audit import get_logger
from sharebatch.errors import CredentialsError
from sharebatch.models import BucketTarget, Credentials, LinkProbe, PostSigner, Presigner
from sharebatch.s3.fastlist import FastLister, direct_listing
from sharebatch.s3.listing import Level as Level
from sharebatch.s3.listing import ListingCalls
from sharebatch.s3.listparse import install as install_fast_list_parser
from sharebatch.s3.preflight import PreflightCalls
from sharebatch.s3.probe import browser_url as browser_url
from sharebatch.s3.probe import probe_link as probe_link
from sharebatch.s3.retry import RetryPolicy
from sharebatch.s3.sigv4 import SigV4Presigner, Unsupported

_CLIENT_METHOD = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}

log = get_logger()


def client_config(
    target: BucketTarget, max_connections: int, policy: RetryPolicy | None = None
) -> Config:
    """The one client configuration, shared by listing and presigning clients."""
    policy = policy or RetryPolicy()
    return Config(
        # botocore still presigns S3 with SigV2 in some regions unless told otherwise.
        signature_version="s3v4",
        s3={"addressing_style": target.addressing_style},
        max_pool_connections=max_connections,
        # botocore's "max_attempts" counts retries only; "total_max_attempts" counts every try.
        retries={"mode": "adaptive", "total_max_attempts": policy.attempts},
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        # Default CRC checksums would be baked into presigned PUTs and break plain curl uploads.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Gateway(PreflightCalls, ListingCalls):
    """An aioboto3 session with one client per bucket target, opened on first use.

    ``region`` and ``endpoint_url`` given here override the ones of every target (they come
    from the command line); otherwise the target's own apply, then the standard AWS chain
    (``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, the profile).
    """

    def __init__(
        self,
        *,
        profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry: RetryPolicy | None = None,
    ) -> None:
        # Read here, before anything is written: a bad SHAREBATCH_S3_* value is exit 2.
        self._retry = retry or RetryPolicy.from_env(os.environ)
        self._profile = profile
        self._region = region
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._clock = clock  # the fast signer's; botocore reads its own
        self._direct = direct_listing(os.environ)
        self._listers: dict[BucketTarget, FastLister | None] = {}
        self._provider: Any = None
        try:
            self._session = aioboto3.Session(profile_name=profile)
            install_fast_list_parser(self._session._session)
        except BotoCoreError as exc:  # ProfileNotFound: its message names the profile
            raise CredentialsError(str(exc)) from None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[BucketTarget, bool], Any] = {}
        self._regions: dict[BucketTarget, str] = {}

    async def __aenter__(self) -> S3Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            for lister in self._listers.values():
                if lister is not None:
                    await lister.close()
        finally:
            await self._stack.aclose()

    def effective(self, target: BucketTarget) -> BucketTarget:
        """The target after command-line overrides."""
        return BucketTarget(
            bucket=target.bucket,
            region=self._region or target.region,
            endpoint_url=self._endpoint_url or target.endpoint_url,
            addressing_style=target.addressing_style,
        )

    async def credentials(self) -> Credentials:
        """Resolve the signing credentials once, or fail with exit code 3."""
        try:
            found = await self._session.get_credentials()
            if found is None:
                raise CredentialsError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                    "AWS_PROFILE or --profile, or run where an instance or container role "
                    "is available"
                )
            frozen = await found.get_frozen_credentials()
        except (BotoCoreError, RuntimeError) as exc:
            # botocore's messages name the profile or provider, never a key or token.
            raise CredentialsError(f"cannot load AWS credentials: {exc}") from None
        expiry = getattr(found, "_expiry_time", None)
        if isinstance(expiry, datetime):
            expiry = expiry.astimezone(UTC)
        return Credentials(
            access_key_id=frozen.access_key,
            secret_access_key=frozen.secret_key,
            session_token=frozen.token,
            expiry=expiry if isinstance(expiry, datetime) else None,
            method=str(getattr(found, "method", "unknown")),
        )

    def _config(self, target: BucketTarget, max_connections: int) -> Config:
        return client_config(target, max_connections, self._retry)

    async def _client(self, target: BucketTarget, *, first_try_spent: bool = False) -> Any:
        """The target's botocore client; with ``first_try_spent``, one that tries a request
        one time less (the direct lister's try was the first)."""
        key = (target, first_try_spent)
        if key not in self._clients:
            region = await self.region_of(target)
            policy = self._retry
            if first_try_spent:
                policy = replace(policy, attempts=policy.attempts - 1)
            self._clients[key] = await self._stack.enter_async_context(
                self._session.client(
                    "s3",
                    region_name=region,
                    endpoint_url=target.endpoint_url,
                    config=client_config(target, self._max_connections, policy),
                )
            )
        return self._clients[key]

    @property
    def default_region(self) -> str | None:
        """The AWS chain's region (``AWS_REGION``, the profile), used where a target has none."""
        region = self._session.region_name
        return str(region) if region else None

    async def region_of(self, target: BucketTarget) -> str:
        """The region to sign for: configured, or asked of S3 (the bucket's own region)."""
        if target.region:
            return target.region
        configured = self._session.region_name
        if configured:
            return str(configured)
        if target not in self._regions:
            self._regions[target] = await self._discover_region(target)
        return self._regions[target]

    async def _discover_region(self, target: BucketTarget) -> str:
        # HeadBucket answers with the bucket's region in a header even on a redirect or 403.
        probe_config = client_config(target, 1, self._retry)
        async with self._session.client(
            "s3", region_name="us-east-1", endpoint_url=target.endpoint_url, config=probe_config
        ) as probe:
            try:
                response = await probe.head_bucket(Bucket=target.bucket)
                headers = response["ResponseMetadata"]["HTTPHeaders"]
            except ClientError as exc:
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            except BotoCoreError:
                headers = {}
        return str(headers.get("x-amz-bucket-region") or "us-east-1")

    async def head_object(self, target: BucketTarget, key: str) -> LinkProbe:
        """HeadObject with the gateway's credentials: is ``key`` there, and its size and ETag.

        Never raises for S3's answer: a 404 or 403 comes back as its status and code, a
        connection failure with ``status`` None, as ``probe_link`` reports a link's.
        """
        try:
            client = await self._client(target)
            found = await client.head_object(Bucket=target.bucket, Key=key)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code") or "")
            return LinkProbe(
                status=status,
                # A HEAD answer has no body: botocore names the error by its status.
                error=None if code.isdigit() else code,
                message=str(error.get("Message") or ""),
            )
        except BotoCoreError as exc:  # its message names the failure, never a signature
            return LinkProbe(status=None, error=type(exc).__name__, message=str(exc))
        return LinkProbe(
            status=int(found["ResponseMetadata"]["HTTPStatusCode"]),
            size=int(found["ContentLength"]),
            etag=str(found.get("ETag", "")).strip('"') or None,
        )

    async def presigner(self, target: BucketTarget, credentials: Credentials) -> Presigner:
        """A synchronous presigner for ``target``: signing is CPU work with no network call.

        The fast signer where it is proven identical to botocore, botocore itself otherwise
        (never a guess). Both sign with the run's frozen credentials, so every link of a run
        is signed by the same key whatever the credential provider does meanwhile.
        """
        region = await self.region_of(target)
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
        else:
            log.info("signer_selected", bucket=target.bucket, signer="sigv4")
            slow: list[Presigner] = []

            def presign(
                method: str, bucket: str, key: str, expires_in: int, params: Mapping[str, str]
            ) -> str:
                try:
                    return fast(method, bucket, key, expires_in, params)
                except Unsupported:
                    # A rare key or parameter outside what the fast signer was proven on.
                    if not slow:
                        slow.append(self._botocore_presigner(session, target, region, credentials))
                    return slow[0](method, bucket, key, expires_in, params)

            return presign
        return self._botocore_presigner(session, target, region, credentials)

    @staticmethod
    def _botocore_presigner(
        session: Any, target: BucketTarget, region: str, credentials: Credentials
    ) -> Presigner:
        client = _signing_client(session, target, region, credentials)

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

    async def post_signer(self, target: BucketTarget, credentials: Credentials) -> PostSigner:
        """A synchronous POST-policy signer for ``target``: botocore's, SigV4, frozen credentials.

        botocore adds the conditions on the bucket, the key (``starts-with`` when the key ends
        in ``${filename}``) and its own ``x-amz-*`` fields; the caller's ``conditions`` must
        cover every other field it puts in the form, or S3 refuses the upload.
        """
        region = await self.region_of(target)
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
