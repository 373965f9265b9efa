"""Object tags, copies and deletes, for ``S3Gateway`` (its ``objects``): what scanning needs.

``sharebatch inbox --scan`` records each verdict as object tags and moves infected uploads
to a quarantine folder. Each request returns an ``Answer`` and never raises for S3's answer
(a refusal is its error code, a broken connection its exception's name), so one object that
cannot be tagged or moved is reported and the others go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sharebatch.models import Answer, BucketTarget
from sharebatch.s3.clients import Clients
from sharebatch.s3.preflight import answer

MAX_TAGS = 10
"""S3 keeps at most 10 tags on an object."""


class Objects:
    """Tagging, copying and deleting single objects with the gateway's ``clients``."""

    def __init__(self, clients: Clients) -> None:
        self._clients = clients

    async def get_tags(self, target: BucketTarget, key: str) -> Answer:
        """GetObjectTagging: ``facts`` are the object's tags, key to value."""
        client = await self._clients.client(target)

        def pick(response: Mapping[str, Any]) -> dict[str, str | bool | None]:
            return {str(t["Key"]): str(t["Value"]) for t in response.get("TagSet", [])}

        return await answer(client.get_object_tagging(Bucket=target.bucket, Key=key), pick)

    async def put_tags(self, target: BucketTarget, key: str, tags: Mapping[str, str]) -> Answer:
        """PutObjectTagging: ``tags`` become the object's whole tag set (at most ``MAX_TAGS``)."""
        if len(tags) > MAX_TAGS:
            return Answer(error="TooManyTags", message=f"{len(tags)} tags; S3 keeps {MAX_TAGS}")
        client = await self._clients.client(target)
        tag_set = [{"Key": k, "Value": v} for k, v in tags.items()]
        return await answer(
            client.put_object_tagging(Bucket=target.bucket, Key=key, Tagging={"TagSet": tag_set}),
            lambda _: {},
        )

    async def copy(self, target: BucketTarget, key: str, dest: str, *, if_match: str) -> Answer:
        """CopyObject of ``key`` to ``dest`` in the same bucket, its tags kept
        (``TaggingDirective=COPY``), only while its ETag is still ``if_match``: what was
        judged is what moves. ``facts`` holds the copy's ``etag``."""
        client = await self._clients.client(target)
        return await answer(
            client.copy_object(
                Bucket=target.bucket,
                Key=dest,
                CopySource={"Bucket": target.bucket, "Key": key},
                CopySourceIfMatch=f'"{if_match}"',
                TaggingDirective="COPY",
                MetadataDirective="COPY",
            ),
            lambda r: {"etag": str(r.get("CopyObjectResult", {}).get("ETag", "")).strip('"')},
        )

    async def delete(self, target: BucketTarget, key: str, *, if_match: str) -> Answer:
        """DeleteObject of ``key``, only while its ETag is still ``if_match`` (S3's conditional
        delete; ``PreconditionFailed`` otherwise): a fresh upload that replaced the judged
        object since is not deleted with it."""
        client = await self._clients.client(target)
        return await answer(
            client.delete_object(Bucket=target.bucket, Key=key, IfMatch=f'"{if_match}"'),
            lambda _: {},
        )
