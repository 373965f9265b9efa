"""S3 and STS requests for ``sharebatch doctor``, for ``S3Gateway`` (its ``preflight``).

Each request returns an ``Answer`` and never raises, so one refused request does not hide
what the others would have said.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sharebatch.models import Answer, BucketTarget, Connection
from sharebatch.s3.clients import Clients

# The MD5 of a body the probe does not send (base64 of md5(b"x")).
_WRONG_MD5 = "ndTkYSaMgDT1yFZOFVxnpg=="


class Preflight:
    """The doctor's requests, with the gateway's ``clients`` and ``connection`` (its profile,
    and the region that overrides the AWS chain's)."""

    def __init__(self, clients: Clients, connection: Connection) -> None:
        self._clients = clients
        self._connection = connection

    def configured_endpoint(self, service: str) -> str | None:
        """The endpoint the AWS configuration sets for ``service`` (``AWS_ENDPOINT_URL_<SERVICE>``,
        ``AWS_ENDPOINT_URL``, the profile's ``services`` section), or None for AWS's own.

        Read from botocore itself: the endpoint of a client built with and without configured
        endpoints (unsigned, so no credential is looked up; no request is sent).
        """
        session = botocore.session.Session(profile=self._connection.profile)
        unsigned = Config(signature_version=UNSIGNED)

        def resolved(config: Config) -> str:
            client = session.create_client(service, region_name="us-east-1", config=config)
            try:
                return str(client.meta.endpoint_url)
            finally:
                client.close()

        found = resolved(unsigned)
        default = resolved(unsigned.merge(Config(ignore_configured_endpoint_urls=True)))
        return None if found == default else found

    async def caller_identity(self) -> Answer:
        """STS GetCallerIdentity: the ARN the credentials belong to (STS's configured endpoint,
        else AWS's; see ``configured_endpoint``)."""
        region = self._connection.region or self._clients.session.region_name or "us-east-1"
        async with self._clients.session.client("sts", region_name=region) as sts:
            return await answer(sts.get_caller_identity(), lambda r: {"arn": r["Arn"]})

    async def endpoint_probe(self, target: BucketTarget) -> Answer:
        """An unsigned HeadBucket (ListBuckets when ``target.bucket`` is empty).

        Unsigned on purpose: S3 answers it whatever the credentials or the clock, with its
        ``Date`` and, for a bucket, the ``x-amz-bucket-region`` header (on a 403 or 301 too).
        """
        config = self._clients.config(target, 1).merge(Config(signature_version=UNSIGNED))
        region = target.region or "us-east-1"
        async with self._clients.session.client(
            "s3", region_name=region, endpoint_url=target.endpoint_url, config=config
        ) as probe:
            bucket = target.bucket
            call = probe.head_bucket(Bucket=bucket) if bucket else probe.list_buckets()
            return await answer(call, lambda _: {})

    async def public_access_block(self, target: BucketTarget) -> Answer:
        """GetPublicAccessBlock: the bucket's four Block Public Access settings."""
        client = await self._clients.client(target)
        return await answer(
            client.get_public_access_block(Bucket=target.bucket),
            lambda r: dict(r["PublicAccessBlockConfiguration"]),
        )

    async def default_encryption(self, target: BucketTarget) -> Answer:
        """GetBucketEncryption: the default algorithm and KMS key of new objects."""
        client = await self._clients.client(target)

        def pick(response: Mapping[str, Any]) -> dict[str, str | bool | None]:
            rule = response["ServerSideEncryptionConfiguration"]["Rules"][0]
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            return {
                "algorithm": default.get("SSEAlgorithm"),
                "kms_key": default.get("KMSMasterKeyID"),
                "bucket_key": bool(rule.get("BucketKeyEnabled", False)),
            }

        return await answer(client.get_bucket_encryption(Bucket=target.bucket), pick)

    async def bucket_logging(self, target: BucketTarget) -> Answer:
        """GetBucketLogging: whether server access logging is on, and where the logs go.

        ``enabled`` is False when the bucket has no ``LoggingEnabled`` (logging off);
        ``key_format`` is ``partitioned`` (``PartitionedPrefix``) or ``simple``.
        """
        client = await self._clients.client(target)

        def pick(response: Mapping[str, Any]) -> dict[str, str | bool | None]:
            enabled = response.get("LoggingEnabled")
            if not enabled:
                return {"enabled": False}
            key_format = enabled.get("TargetObjectKeyFormat") or {}
            return {
                "enabled": True,
                "target_bucket": enabled.get("TargetBucket"),
                "target_prefix": enabled.get("TargetPrefix") or "",
                "key_format": "partitioned" if "PartitionedPrefix" in key_format else "simple",
            }

        return await answer(client.get_bucket_logging(Bucket=target.bucket), pick)

    async def bucket_policy(self, target: BucketTarget) -> Answer:
        """GetBucketPolicy: the policy's JSON text as ``policy``, None when the bucket has none.

        ``NoSuchBucketPolicy`` is an answer (no policy), not an error.
        """
        client = await self._clients.client(target)
        found = await answer(
            client.get_bucket_policy(Bucket=target.bucket), lambda r: {"policy": r["Policy"]}
        )
        if found.error == "NoSuchBucketPolicy":
            return Answer(facts={"policy": None}, date=found.date)
        return found

    async def put_probe(self, target: BucketTarget, key: str) -> Answer:
        """A PutObject at ``key`` that S3 judges but never stores: whether the credentials may
        write there.

        Its ``Content-MD5`` is not the empty body's, so S3, which checks permission before the
        body, answers ``AccessDenied`` where writing is refused and ``BadDigest`` where it is
        allowed. A store that does not check the digest stores the empty probe object.
        """
        client = await self._clients.client(target)
        return await answer(
            client.put_object(Bucket=target.bucket, Key=key, Body=b"", ContentMD5=_WRONG_MD5),
            lambda _: {"stored": True},
        )

    async def first_key(self, target: BucketTarget, prefix: str) -> Answer:
        """A one-key ListObjectsV2: whether listing ``prefix`` is allowed, and if it is empty."""
        client = await self._clients.client(target)
        return await answer(
            client.list_objects_v2(Bucket=target.bucket, Prefix=prefix, MaxKeys=1),
            lambda r: {"empty": not r.get("Contents")},
        )


async def answer(
    call: Awaitable[Mapping[str, Any]],
    pick: Callable[[Mapping[str, Any]], Mapping[str, str | bool | None]],
) -> Answer:
    try:
        response = await call
    except ClientError as exc:
        error = exc.response.get("Error", {})
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
        return Answer(
            facts={"region": region} if region else {},
            error=str(error.get("Code") or "ClientError"),
            message=str(error.get("Message") or ""),
            date=_http_date(headers.get("date")),
        )
    except BotoCoreError as exc:  # no credentials, no connection: its message says which
        return Answer(error=type(exc).__name__, message=str(exc))
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    facts = dict(pick(response))
    if headers.get("x-amz-bucket-region"):
        facts["region"] = headers["x-amz-bucket-region"]
    return Answer(facts=facts, date=_http_date(headers.get("date")))


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value).astimezone(UTC) if value else None
    except (TypeError, ValueError):
        return None
