"""The gateway lists and streams objects (access logs in a bucket), on moto; read_logs reads an
s3://bucket/prefix/ source through it."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta

import pytest

from sharebatch.errors import S3ReadError
from sharebatch.models import BucketTarget, Connection
from sharebatch.receipts.accesslog import AccessRecord, BadLine
from sharebatch.receipts.sources import parse_source, read_logs
from sharebatch.s3.gateway import S3Gateway
from tests.support.accesslog import log_line
from tests.support.faultproxy import fault_proxy
from tests.support.s3 import S3

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def record(n: int) -> bytes:
    """Record ``n`` of a GET through link ``n``, with its newline."""
    return (
        log_line(
            bucket="q3-share",
            time=AT + timedelta(seconds=n),
            request_uri=f"GET /q3-share/f{n}.pdf?x-sharebatch-id={n:016x} HTTP/1.1",
            key=f"f{n}.pdf",
            bytes_sent=n,
        )
        + "\n"
    ).encode()


def test_list_objects_gives_every_key_under_the_prefix_in_order(s3: S3) -> None:
    """Keys under the prefix come in S3's order (by key), nothing from beside it."""
    s3.bucket(
        "log-bucket",
        {"logs/b": b"2", "logs/a": b"1", "logs/sub/c": b"3", "other/x": b"4", "logsx": b"5"},
    )

    async def keys() -> list[str]:
        async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
            target = gateway.effective(BucketTarget("log-bucket", None, None))
            return [o.key async for o in gateway.list_objects(target, "logs/")]

    assert asyncio.run(keys()) == ["logs/a", "logs/b", "logs/sub/c"]


def test_read_object_streams_in_bounded_chunks(s3: S3) -> None:
    """An object comes back in chunks no larger than asked for, and the bytes are exact."""
    body = b"".join(record(n) for n in range(200))
    s3.bucket("log-bucket", {"logs/a": body})

    async def chunks() -> list[bytes]:
        async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
            target = gateway.effective(BucketTarget("log-bucket", None, None))
            return [c async for c in gateway.read_object(target, "logs/a", chunk_size=4096)]

    got = asyncio.run(chunks())
    assert b"".join(got) == body
    assert len(got) > 1
    assert max(len(c) for c in got) <= 4096


def test_a_missing_object_is_an_s3_read_error_naming_the_code(s3: S3) -> None:
    """A key that is gone since the listing raises S3ReadError with S3's code."""
    s3.bucket("log-bucket", {})

    async def read() -> None:
        async with S3Gateway(Connection(endpoint_url=s3.endpoint)) as gateway:
            target = gateway.effective(BucketTarget("log-bucket", None, None))
            async for _ in gateway.read_object(target, "logs/gone"):
                pass

    with pytest.raises(S3ReadError) as caught:
        asyncio.run(read())
    assert caught.value.code == "NoSuchKey"


def _read_source(endpoint: str, text: str) -> tuple[list[AccessRecord | BadLine], list[str]]:
    files: list[str] = []

    async def collect() -> list[AccessRecord | BadLine]:
        async with S3Gateway(Connection(endpoint_url=endpoint)) as gateway:
            return [
                item async for item in read_logs(parse_source(text), gateway, on_file=files.append)
            ]

    return asyncio.run(collect()), files


def test_an_s3_source_is_read_object_by_object(s3: S3) -> None:
    """s3://bucket/prefix/ reads each object under the prefix in key order, line by line;
    a gzip object is one bad line named by its s3:// address, the others still count."""
    s3.bucket(
        "log-bucket",
        {
            "logs/2026-12-02-09-00-00-A": record(1) + record(2),
            "logs/2026-12-02-09-05-00-B": record(3) + b"not a record\n" + record(4),
            "logs/archive.gz": gzip.compress(record(5)),
            "elsewhere/2026-12-02-09-00-00-C": record(6),
        },
    )
    items, files = _read_source(s3.endpoint, "s3://log-bucket/logs/")
    records = [i for i in items if isinstance(i, AccessRecord)]
    assert [r.link_id for r in records] == [f"{n:016x}" for n in (1, 2, 3, 4)]
    assert [(b.file, b.line) for b in items if isinstance(b, BadLine)] == [
        ("s3://log-bucket/logs/2026-12-02-09-05-00-B", 2),
        ("s3://log-bucket/logs/archive.gz", 0),
    ]
    assert files == [
        "s3://log-bucket/logs/2026-12-02-09-00-00-A",
        "s3://log-bucket/logs/2026-12-02-09-05-00-B",
        "s3://log-bucket/logs/archive.gz",
    ]


def test_a_bucket_that_cannot_be_listed_is_a_bad_line(s3: S3) -> None:
    """A missing log bucket gives one bad line naming the source and S3's code; nothing else."""
    items, files = _read_source(s3.endpoint, "s3://no-such-log-bucket/logs/")
    assert files == []
    [only] = items
    assert isinstance(only, BadLine)
    assert (only.file, only.line) == ("s3://no-such-log-bucket/logs/", 0)
    assert only.problem.startswith("cannot list: NoSuchBucket")


def test_a_connection_dropped_mid_object_keeps_what_was_read(s3: S3) -> None:
    """When the connection resets halfway through an object, the records before the break
    count, the break is a bad line of that object, and the next object is read."""
    first = b"".join(record(n) for n in range(1, 401))
    s3.bucket("log-bucket", {"logs/a": first, "logs/b": record(500)})
    with fault_proxy(s3.endpoint) as proxy:
        proxy.add("reset", path="/log-bucket/logs/a", times=None)
        items, _ = _read_source(proxy.url, "s3://log-bucket/logs/")
    records = [i for i in items if isinstance(i, AccessRecord)]
    [broken] = [i for i in items if isinstance(i, BadLine)]
    assert broken.file == "s3://log-bucket/logs/a"
    assert broken.line == len(records)
    assert 0 < len(records) - 1 < 400
    assert [r.link_id for r in records[:-1]] == [f"{n:016x}" for n in range(1, len(records))]
    assert records[-1].link_id == f"{500:016x}"
