"""The only module that talks to S3 (through aioboto3) or builds boto clients.

It hands the rest of the program plain values: ``Credentials`` snapshots, pages of
``ObjectRef`` and a synchronous ``Presigner`` callable. Nothing outside this module sees a boto
response or a client.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aioboto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .audit import get_logger
from .errors import CredentialsError, SharebatchError
from .models import BucketTarget, Credentials, ObjectRef, Presigner
from .sigv4 import SigV4Presigner, Unsupported

# S3 answers these when the credentials themselves are bad, whatever the bucket or prefix:
# carrying on with other prefixes would only repeat the failure.
_CREDENTIAL_ERRORS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)

_CLIENT_METHOD = {"GET": "get_object", "PUT": "put_object", "HEAD": "head_object"}

log = get_logger()


class S3ListingError(SharebatchError):
    """Listing one prefix failed; the pipeline records it and the other prefixes go on."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


def client_config(target: BucketTarget, max_connections: int) -> Config:
    """The one client configuration, shared by listing and presigning clients."""
    return Config(
        # botocore still presigns S3 with SigV2 in some regions unless told otherwise.
        signature_version="s3v4",
        s3={"addressing_style": target.addressing_style},
        max_pool_connections=max_connections,
        retries={"mode": "adaptive", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        # Default CRC checksums would be baked into presigned PUTs and break plain curl uploads.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3Gateway:
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
    ) -> None:
        self._profile = profile
        self._region = region
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._clock = clock  # the fast signer's; botocore reads its own
        try:
            self._session = aioboto3.Session(profile_name=profile)
        except BotoCoreError as exc:  # ProfileNotFound: its message names the profile
            raise CredentialsError(str(exc)) from None
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[BucketTarget, Any] = {}
        self._regions: dict[BucketTarget, str] = {}

    async def __aenter__(self) -> S3Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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

    async def _client(self, target: BucketTarget) -> Any:
        if target not in self._clients:
            region = await self.region_of(target)
            self._clients[target] = await self._stack.enter_async_context(
                self._session.client(
                    "s3",
                    region_name=region,
                    endpoint_url=target.endpoint_url,
                    config=client_config(target, self._max_connections),
                )
            )
        return self._clients[target]

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
        probe_config = client_config(target, 1)
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

    async def list_pages(self, target: BucketTarget, prefix: str) -> AsyncIterator[list[ObjectRef]]:
        """Yield every page of objects under ``prefix``, skipping folder markers."""
        try:
            client = await self._client(target)
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=target.bucket, Prefix=prefix):
                yield [
                    _object_ref(target.bucket, item)
                    for item in page.get("Contents", ())
                    if not (item["Key"].endswith("/") and item["Size"] == 0)
                ]
        except NoCredentialsError:
            raise CredentialsError("no AWS credentials found") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "ClientError"))
            message = str(error.get("Message", ""))
            if code in _CREDENTIAL_ERRORS:
                raise CredentialsError(f"S3 rejected the credentials: {code}") from None
            raise S3ListingError(code, message) from None
        except BotoCoreError as exc:
            raise S3ListingError(type(exc).__name__, str(exc)) from None

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
        client = session.create_client(
            "s3",
            region_name=region,
            endpoint_url=target.endpoint_url,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            config=client_config(target, 1),
        )

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


def _object_ref(bucket: str, item: Mapping[str, Any]) -> ObjectRef:
    modified = item["LastModified"]
    return ObjectRef(
        bucket=bucket,
        key=str(item["Key"]),
        size=int(item["Size"]),
        etag=str(item.get("ETag", "")).strip('"'),
        last_modified=modified.astimezone(UTC),
    )
