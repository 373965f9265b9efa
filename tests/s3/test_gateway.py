"""The gateway's connection: the profile, region and endpoint given reach its S3 clients."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sharebatch.models import BucketTarget, Connection
from sharebatch.s3.gateway import S3Gateway
from tests.support.s3 import S3


def test_a_connection_reaches_the_s3_client(s3: S3) -> None:
    """Region and endpoint override the target's; the client built with them lists on moto."""
    s3.bucket("conn-bucket", {"a.txt": b"a"})
    connection = Connection(region="eu-central-1", endpoint_url=s3.endpoint)

    async def ask() -> tuple[str, str, list[str]]:
        async with S3Gateway(connection) as gateway:
            target = gateway.effective(BucketTarget("conn-bucket", "eu-west-1", "http://x:1"))
            client = await gateway.clients.client(target)
            answer = await client.list_objects_v2(Bucket="conn-bucket")
            keys = [o["Key"] for o in answer["Contents"]]
            return client.meta.endpoint_url, client.meta.region_name, keys

    assert asyncio.run(ask()) == (s3.endpoint, "eu-central-1", ["a.txt"])


def test_a_connections_profile_reaches_the_s3_client(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target without a region is signed for the region of the connection's profile."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    Path(os.environ["AWS_CONFIG_FILE"]).write_text("[profile elsewhere]\nregion = ap-south-1\n")

    async def ask() -> str:
        async with S3Gateway(Connection(profile="elsewhere", endpoint_url=s3.endpoint)) as gateway:
            client = await gateway.clients.client(gateway.effective(BucketTarget("b", None, None)))
            return str(client.meta.region_name)

    assert asyncio.run(ask()) == "ap-south-1"
