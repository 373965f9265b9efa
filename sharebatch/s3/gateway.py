"""The front of ``sharebatch.s3``, the only package that talks to S3 or builds boto clients.

``S3Gateway`` holds one aioboto3 session and is assembled from parts that are given what they
need: ``clients`` (one client per target and the region it signs for), ``listing`` (botocore
and the direct lister of ``fastlist``, answers read by ``listparse``), ``preflight`` (the
doctor's requests), ``signers`` (presigner set-up, ``presigners``), ``objects`` (tags,
copies and deletes of single objects) and ``uploads`` (``upload``: private, encrypted as the
bucket says, streamed uploads of local files). ``probe`` checks a
presigned link over plain HTTP.

It hands the rest of the program plain values: ``Credentials`` snapshots, pages of
``ObjectRef`` and a synchronous ``Presigner`` callable. Nothing outside this package sees a
boto response or a client.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime

import aioboto3
import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from sharebatch.errors import CredentialsError, S3ReadError
from sharebatch.models import Answer, BucketTarget, Connection, Credentials, LinkProbe, ObjectRef
from sharebatch.s3.clients import Clients
from sharebatch.s3.fastlist import direct_listing
from sharebatch.s3.listing import CREDENTIAL_ERRORS, Listing
from sharebatch.s3.listing import Level as Level
from sharebatch.s3.listparse import install as install_fast_list_parser
from sharebatch.s3.objects import Objects
from sharebatch.s3.preflight import Preflight, answer
from sharebatch.s3.presigners import Signers, system_clock
from sharebatch.s3.probe import browser_url as browser_url
from sharebatch.s3.probe import probe_link as probe_link
from sharebatch.s3.retry import RetryPolicy
from sharebatch.s3.upload import Uploads


class S3Gateway:
    """An aioboto3 session, its clients and the parts that use them; closed on exit.

    The ``connection``'s region and endpoint override the ones of every target (they come
    from the command line); otherwise the target's own apply, then the standard AWS chain
    (``AWS_REGION``, ``AWS_ENDPOINT_URL_S3``, the profile).
    """

    def __init__(
        self,
        connection: Connection = Connection(),
        *,
        max_connections: int = 16,
        clock: Callable[[], datetime] = system_clock,
        retry: RetryPolicy | None = None,
    ) -> None:
        # Read here, before anything is written: a bad SHAREBATCH_S3_* value is exit 2.
        retry = retry or RetryPolicy.from_env(os.environ)
        self.connection = connection
        profile = connection.profile
        try:
            self._session = aioboto3.Session(profile_name=profile)
            install_fast_list_parser(self._session._session)
        except BotoCoreError as exc:  # ProfileNotFound: its message names the profile
            raise CredentialsError(str(exc)) from None
        self.clients = Clients(self._session, retry=retry, max_connections=max_connections)
        self.listing = Listing(self.clients, direct=direct_listing(os.environ), clock=clock)
        self.preflight = Preflight(self.clients, connection)
        self.signers = Signers(self.clients.region_of, profile=profile, clock=clock)
        self.objects = Objects(self.clients)
        self.uploads = Uploads(self.clients)

    async def __aenter__(self) -> S3Gateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.listing.aclose()
        finally:
            await self.clients.aclose()

    def effective(self, target: BucketTarget) -> BucketTarget:
        """The target after command-line overrides."""
        return BucketTarget(
            bucket=target.bucket,
            region=self.connection.region or target.region,
            endpoint_url=self.connection.endpoint_url or target.endpoint_url,
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

    @property
    def default_region(self) -> str | None:
        """The AWS chain's region (``AWS_REGION``, the profile), used where a target has none."""
        region = self._session.region_name
        return str(region) if region else None

    async def head_object(self, target: BucketTarget, key: str) -> LinkProbe:
        """HeadObject with the gateway's credentials: is ``key`` there, and its size and ETag.

        Never raises for S3's answer: a 404 or 403 comes back as its status and code, a
        connection failure with ``status`` None, as ``probe_link`` reports a link's.
        """
        try:
            client = await self.clients.client(target)
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

    async def put_private(
        self,
        target: BucketTarget,
        key: str,
        body: bytes,
        *,
        content_type: str,
        cache_control: str | None = None,
    ) -> Answer:
        """PutObject of ``body`` at ``key``, private: no ACL is sent, so only the bucket's
        owner (and whom its policy names) may read it; others need a presigned link.

        (An explicit ``private`` ACL would be refused by buckets with ACLs disabled, and would
        need ``s3:PutObjectAcl``.) Never raises for S3's answer: a refusal comes back as the
        ``Answer``'s error, a connection failure too; ``facts`` holds the ``etag``.
        """
        extra = {"CacheControl": cache_control} if cache_control else {}

        async def put() -> dict[str, object]:
            client = await self.clients.client(target)
            found: dict[str, object] = await client.put_object(
                Bucket=target.bucket, Key=key, Body=body, ContentType=content_type, **extra
            )
            return found

        return await answer(put(), lambda r: {"etag": str(r.get("ETag", "")).strip('"')})

    async def list_objects(
        self, target: BucketTarget, prefix: str
    ) -> AsyncGenerator[ObjectRef, None]:
        """Every object under ``prefix`` in S3's order (by key), one page held at a time.

        Raises ``S3ListingError`` when the prefix cannot be listed, ``CredentialsError`` when
        S3 refuses the credentials.
        """
        async for page in self.listing.list_pages(target, prefix):
            for found in page:
                yield found

    async def read_object(
        self,
        target: BucketTarget,
        key: str,
        *,
        chunk_size: int = 1 << 20,
        if_match: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """GetObject of ``key``, streamed: chunks of at most ``chunk_size`` bytes, never the
        whole object in memory. With ``if_match``, only the object of that ETag (else
        ``S3ReadError`` PreconditionFailed): what is read is what was listed.

        Raises ``S3ReadError`` when S3 refuses the object or the connection breaks off (the
        chunks already given stay good), ``CredentialsError`` when S3 refuses the credentials.
        """
        try:
            client = await self.clients.client(target)
            extra = {"IfMatch": f'"{if_match}"'} if if_match else {}
            found = await client.get_object(Bucket=target.bucket, Key=key, **extra)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "ClientError")
            if code in CREDENTIAL_ERRORS:
                raise CredentialsError(f"S3 rejected the credentials: {code}") from None
            raise S3ReadError(code, str(error.get("Message") or "")) from None
        except BotoCoreError as exc:  # its message names the failure, never a signature
            raise S3ReadError(type(exc).__name__, str(exc)) from None
        body = found["Body"]
        try:
            while chunk := await body.read(chunk_size):
                yield chunk
        except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
            raise S3ReadError(type(exc).__name__, str(exc) or "the connection broke off") from None
        finally:
            body.close()
