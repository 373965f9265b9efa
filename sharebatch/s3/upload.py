"""Private uploads of local files, for ``S3Gateway`` (its ``uploads``): what publishing a run
folder to S3 needs (``sharebatch/remote``).

A file is streamed from disk: up to ``threshold`` bytes in one PutObject, larger ones as a
multipart upload of ``part_size`` parts read one at a time, so memory holds at most one part
per file in flight whatever the file's size. A multipart upload that fails is aborted, so no
parts are left billed (AbortMultipartUpload).

No ACL is ever sent: the object is private, readable by the bucket's owner and whom its policy
names (an explicit ``private`` ACL would be refused by buckets with ACLs disabled, the default
since April 2023, and would need ``s3:PutObjectAcl``).

Encryption: S3 encrypts every new object (SSE-S3 by default since January 2023), but a bucket
policy may refuse a PutObject that does not *say* which encryption it wants
(``s3:x-amz-server-side-encryption``). ``bucket_encryption`` reads the bucket's default once
(GetBucketEncryption) and each upload sends the same as headers: ``ServerSideEncryption``,
and for SSE-KMS its ``SSEKMSKeyId`` and ``BucketKeyEnabled``. Sources:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-bucket-encryption.html,
https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketEncryption.html.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from sharebatch.errors import CredentialsError, S3WriteError
from sharebatch.models import BucketTarget
from sharebatch.s3.clients import Clients
from sharebatch.s3.listing import CREDENTIAL_ERRORS

MIB = 1 << 20
# S3's multipart limits: parts of 5 MiB..5 GiB, at most 10,000 of them.
MIN_PART = 5 * MIB
MAX_PARTS = 10_000
DEFAULT_PART = 8 * MIB
_NO_CONFIG = "ServerSideEncryptionConfigurationNotFoundError"


@dataclass(frozen=True)
class Encryption:
    """What each upload asks of S3's encryption, as the bucket's default says.

    ``algorithm`` None sends nothing (the bucket's default still applies): only when the
    configuration could not be read (``source`` says why).
    """

    algorithm: str | None
    kms_key_id: str | None = None
    bucket_key: bool = False
    source: str = "bucket"

    def params(self) -> dict[str, object]:
        """The PutObject / CreateMultipartUpload parameters that ask for this encryption."""
        if self.algorithm is None:
            return {}
        found: dict[str, object] = {"ServerSideEncryption": self.algorithm}
        if self.algorithm.startswith("aws:kms"):
            if self.kms_key_id:
                found["SSEKMSKeyId"] = self.kms_key_id
            if self.bucket_key:
                found["BucketKeyEnabled"] = True
        return found

    def describe(self) -> dict[str, object]:
        """For the audit log and the publish report: never a secret, a key id is not one."""
        return {
            "algorithm": self.algorithm,
            "kms_key_id": self.kms_key_id,
            "bucket_key": self.bucket_key,
            "source": self.source,
        }


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or "ClientError"), str(error.get("Message") or "")


class Uploads:
    """GetBucketEncryption and private uploads with the gateway's ``clients``."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    async def bucket_encryption(self, target: BucketTarget) -> Encryption:
        """The bucket's default encryption (GetBucketEncryption), read once per publish.

        No configuration (S3-compatible stores; S3 itself always has one since 2023) is
        SSE-S3, S3's own default. A refusal (no ``s3:GetEncryptionConfiguration``) sends no
        header, leaving the bucket's default to apply; ``source`` records the refusal.
        """
        client = await self._clients.client(target)
        try:
            found = await client.get_bucket_encryption(Bucket=target.bucket)
        except ClientError as exc:
            code, _ = _error(exc)
            if code in CREDENTIAL_ERRORS:
                raise CredentialsError(f"S3 rejected the credentials: {code}") from None
            if code == _NO_CONFIG:
                return Encryption("AES256", source="s3-default")
            if code == "NoSuchBucket":
                raise S3WriteError(code, f"bucket {target.bucket} does not exist") from None
            return Encryption(None, source=f"unreadable: {code}")
        except BotoCoreError as exc:
            raise S3WriteError(type(exc).__name__, str(exc)) from None
        rules = found.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault")
            if default:
                return Encryption(
                    str(default["SSEAlgorithm"]),
                    kms_key_id=default.get("KMSMasterKeyID") or None,
                    bucket_key=bool(rule.get("BucketKeyEnabled")),
                )
        return Encryption("AES256", source="s3-default")

    async def upload_file(
        self,
        target: BucketTarget,
        key: str,
        path: Path,
        *,
        content_type: str,
        encryption: Encryption,
        if_none_match: bool = False,
        threshold: int = DEFAULT_PART,
        part_size: int = DEFAULT_PART,
    ) -> str:
        """Upload ``path`` to ``key``, private; return its ETag.

        ``if_none_match``: only if no object is at ``key`` (``If-None-Match: *``, S3's
        conditional write; ``S3WriteError`` PreconditionFailed otherwise). Raises
        ``S3WriteError`` when S3 refuses or the connection fails after botocore's retries,
        ``CredentialsError`` when S3 refuses the credentials.
        """
        extra: dict[str, Any] = {"ContentType": content_type, **encryption.params()}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        client = await self._clients.client(target)
        try:
            with path.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                if size <= threshold:
                    body = await asyncio.to_thread(source.read, size)
                    found = await client.put_object(
                        Bucket=target.bucket, Key=key, Body=body, **extra
                    )
                    return str(found.get("ETag", "")).strip('"')
                part = max(part_size, MIN_PART, -(-size // MAX_PARTS))
                return await self._multipart(client, target, key, source, part, extra)
        except ClientError as exc:
            code, message = _error(exc)
            if code in CREDENTIAL_ERRORS:
                raise CredentialsError(f"S3 rejected the credentials: {code}") from None
            raise S3WriteError(code, f"{key}: {message}") from None
        except BotoCoreError as exc:  # its message names the failure, never a signature
            raise S3WriteError(type(exc).__name__, f"{key}: {exc}") from None

    async def _multipart(
        self,
        client: Any,
        target: BucketTarget,
        key: str,
        source: BinaryIO,
        part_size: int,
        extra: Mapping[str, Any],
    ) -> str:
        conditional = {"IfNoneMatch": extra["IfNoneMatch"]} if "IfNoneMatch" in extra else {}
        started = {k: v for k, v in extra.items() if k != "IfNoneMatch"}
        created = await client.create_multipart_upload(Bucket=target.bucket, Key=key, **started)
        upload_id = created["UploadId"]
        parts: list[dict[str, object]] = []
        try:
            number = 1
            while chunk := await asyncio.to_thread(source.read, part_size):
                sent = await client.upload_part(
                    Bucket=target.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                )
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
                number += 1
            done = await client.complete_multipart_upload(
                Bucket=target.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **conditional,
            )
        except BaseException:
            # Parts of an unfinished upload are stored (and billed) until aborted.
            with contextlib.suppress(ClientError, BotoCoreError):
                await client.abort_multipart_upload(
                    Bucket=target.bucket, Key=key, UploadId=upload_id
                )
            raise
        return str(done.get("ETag", "")).strip('"')
