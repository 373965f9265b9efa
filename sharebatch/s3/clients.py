"""One aioboto3 client per bucket target, opened on first use, and the region each signs for.

The gateway owns the session; this is the client factory it hands to listing and preflight, so
each asks for a client instead of reaching into the gateway.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sharebatch.models import BucketTarget
from sharebatch.s3.retry import RetryPolicy


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


class Clients:
    """The S3 clients of one aioboto3 ``session``, closed together by ``aclose``."""

    def __init__(self, session: Any, *, retry: RetryPolicy, max_connections: int) -> None:
        self.session = session
        self.retry = retry
        self.max_connections = max_connections
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[BucketTarget, bool], Any] = {}
        self._regions: dict[BucketTarget, str] = {}

    async def aclose(self) -> None:
        await self._stack.aclose()

    def config(self, target: BucketTarget, max_connections: int) -> Config:
        """``client_config`` with this factory's retry policy."""
        return client_config(target, max_connections, self.retry)

    async def client(self, target: BucketTarget, *, first_try_spent: bool = False) -> Any:
        """The target's botocore client; with ``first_try_spent``, one that tries a request
        one time less (the direct lister's try was the first)."""
        key = (target, first_try_spent)
        if key not in self._clients:
            region = await self.region_of(target)
            policy = self.retry
            if first_try_spent:
                policy = replace(policy, attempts=policy.attempts - 1)
            self._clients[key] = await self._stack.enter_async_context(
                self.session.client(
                    "s3",
                    region_name=region,
                    endpoint_url=target.endpoint_url,
                    config=client_config(target, self.max_connections, policy),
                )
            )
        return self._clients[key]

    async def region_of(self, target: BucketTarget) -> str:
        """The region to sign for: configured, or asked of S3 (the bucket's own region)."""
        if target.region:
            return target.region
        configured = self.session.region_name
        if configured:
            return str(configured)
        if target not in self._regions:
            self._regions[target] = await self._discover_region(target)
        return self._regions[target]

    async def _discover_region(self, target: BucketTarget) -> str:
        # HeadBucket answers with the bucket's region in a header even on a redirect or 403.
        async with self.session.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=target.endpoint_url,
            config=self.config(target, 1),
        ) as probe:
            try:
                response = await probe.head_bucket(Bucket=target.bucket)
                headers = response["ResponseMetadata"]["HTTPHeaders"]
            except ClientError as exc:
                headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            except BotoCoreError:
                headers = {}
        return str(headers.get("x-amz-bucket-region") or "us-east-1")
